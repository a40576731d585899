"""Size, LiteRT latency and parity of the four conversion modes, for EfficientNetB4 at 380x380 or the starter model.

    .venv/bin/python -m benchmarks.quantization_modes [--model efficientnetb4|starter] [--validation-images 60]

The B4 weights here are randomly initialised (Keras' ImageNet weights cannot be downloaded on the development
machine): size and speed do not depend on the weights, parity does, so its parity columns describe this
initialisation only and the `distinct top-1` column says how varied its answers were. The starter model has real
ImageNet weights (Lite0), so its parity figures are real. All modes are measured in one run, one after the other,
so the latency ratios are comparable even on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from conversion.convert import ConversionOptions, Mode, convert
from conversion.starter_model import DEFAULT_OUT as STARTER_PATH
from conversion.starter_model import build_starter_keras
from conversion.untrained_model import BREEDS_FILE, PHOTOS_DIR, read_labels
from lambda_function.datapath.model_contract import InputSpec, ModelCard, load_sidecar, write_sidecar
from training.cat_gate import CatCalibration
from training.model import build_classifier
from training.starter_head import STARTER_LABELS

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="efficientnetb4",
        choices=["efficientnetb4", "starter"],
        help="B4 at 380 (random weights) or the starter model (real weights)",
    )
    parser.add_argument("--validation-images", type=int, default=60, help="shared photos to measure parity on")
    parser.add_argument("--calibration-images", type=int, default=60, help="representative images for full-int8")
    parser.add_argument("--latency-runs", type=int, default=20, help="timed runs per thread count (median)")
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(0)
    if args.model == "starter":
        calibration = load_sidecar(STARTER_PATH).provenance["calibration"]
        model = build_starter_keras(CatCalibration(calibration["weight"], calibration["bias"]))
        labels = list(STARTER_LABELS)
    else:
        labels = read_labels(BREEDS_FILE)
        model = build_classifier(len(labels), backbone=args.model, weights=None)
    size_px = model.input_shape[1]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        keras_path = Path(work) / "model.keras"
        model.save(keras_path)
        write_sidecar(
            keras_path,
            ModelCard(
                name=args.model,
                version="0",
                labels=tuple(labels),
                input=InputSpec(size_px, size_px),
            ),
        )
        for mode in Mode:
            options = ConversionOptions(
                mode=mode,
                validation_dir=PHOTOS_DIR,
                validation_images=args.validation_images,
                calibration_images=args.calibration_images,
                latency_runs=args.latency_runs,
                min_top1_agreement=0.0,
            )
            card = convert(keras_path, Path(work) / f"{mode}.tflite", options)
            rows.append(card.provenance["conversion"])
            print(f"measured {mode}", flush=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"quantization_modes_{args.model}.json"
    out.write_text(
        json.dumps(
            {
                "model": args.model,
                "input_px": size_px,
                "machine": platform.processor() or platform.machine(),
                "modes": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(markdown_table(rows, size_px, args.model))


def markdown_table(rows: list[dict], size_px: int, backbone: str) -> str:
    float32_2t = next(r for r in rows if r["mode"] == "float32")["latency_ms"]["2_threads"]
    lines = [
        f"| {backbone} {size_px}x{size_px} | size (MB) | 1 thread (ms) | 2 threads (ms) | vs float32 at 2 threads "
        "| top-1 agreement | top-5 overlap | max prob. diff | distinct top-1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        p, lat = r["parity"], r["latency_ms"]
        lines.append(
            f"| {r['mode']} | {r['size_bytes'] / 1e6:.1f} | {lat['1_threads']:.1f} | {lat['2_threads']:.1f} "
            f"| {lat['2_threads'] / float32_2t:.2f}x | {p['top1_agreement']:.1%} | {p['top5_overlap']:.1%} "
            f"| {p['max_probability_difference']:.4f} | {p['distinct_top1_labels']} of {p['images']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
