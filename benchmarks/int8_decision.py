"""The default model as float16 against full int8, side by side in one run: what the int8 decision rests on.

    .venv/bin/python -m benchmarks.int8_decision build/int8/float16.tflite build/int8/int8.tflite

Both files come from the same Keras model (`make bench-int8` converts them, the int8 one calibrated on the
training split, and fits each one's coat rule). On the held-back test photos and the shared photos it scores each
through the serving runtime as `training.evaluate` does, and counts how often the two agree (top-1,
`breed_identified`, coat length); then it times the serving path: the load (a cold start's model part) and a
request on a 12-megapixel photo, in interleaved rounds so that the ratio holds on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lambda_function.datapath.inference import Classifier, breed_identified, coat_of
from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from training.evaluate import coat_figures, identified_figures, labelled_photos, model_pixels, score, split_images

FIGURES = (
    "cat_breed_top1",
    "cat_breed_top3",
    "not_cats_answered_no_cat",
    "cats_breed_identified",
    "coat_right_of_answered",
    "coat_unclear",
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_DIR = Path(__file__).resolve().parent.parent


def compared(models: list[Path], pixels: np.ndarray, truth: np.ndarray) -> dict:
    """Each model's figures on these photos (as `training.evaluate` scores them) and how often the two agree."""
    figures, answers = {}, []
    for model in models:
        classifier = Classifier(model, num_threads=2)
        probabilities = np.stack([classifier.probabilities(p) for p in pixels])
        card = classifier.card
        scored = score(probabilities, truth, list(card.labels)) | identified_figures(probabilities, truth, card)
        scored |= coat_figures(probabilities, truth, card)
        figures[model.name] = {k: scored[k] for k in FIGURES if k in scored}
        answers.append(
            [
                (row.argmax(), breed_identified(row, card), getattr(coat_of(row, card), "length", None))
                for row in probabilities
            ]
        )
    pairs = list(zip(*answers, strict=True))
    return {
        "photos": len(pixels),
        "figures": figures,
        "top1_agreement": round(float(np.mean([a[0] == b[0] for a, b in pairs])), 4),
        "breed_identified_agreement": round(float(np.mean([a[1] == b[1] for a, b in pairs])), 4),
        "coat_length_agreement": round(float(np.mean([a[2] == b[2] for a, b in pairs])), 4),
    }


def speed(models: list[Path], photo: bytes, rounds: int) -> dict:
    limits = DecodeLimits(max_pixels=50_000_000)
    load_ms: dict[str, list[float]] = {m.name: [] for m in models}
    request_ms: dict[str, list[float]] = {m.name: [] for m in models}
    classifiers = {m.name: Classifier(m, num_threads=1) for m in models}
    for _ in range(rounds):
        for model in models:
            started = time.perf_counter()
            Classifier(model, num_threads=1)
            load_ms[model.name].append((time.perf_counter() - started) * 1000)
            classifier = classifiers[model.name]
            started = time.perf_counter()
            classifier.classify(prepare_image(photo, classifier.input_size_px, limits), 5)
            request_ms[model.name].append((time.perf_counter() - started) * 1000)
    return {
        name: {
            "load_ms_p50": round(statistics.median(load_ms[name]), 1),
            "request_ms_p50": round(statistics.median(request_ms[name]), 1),
        }
        for name in load_ms
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_decision", description=__doc__.split("\n\n")[0])
    parser.add_argument("float16", type=Path)
    parser.add_argument("int8", type=Path)
    parser.add_argument("--data", type=Path, default=REPO_DIR / "build" / "breed-model" / "data")
    parser.add_argument("--photos", type=Path, default=REPO_DIR.parent / "shared" / "photos")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    models = [args.float16, args.int8]
    card = Classifier(args.float16, num_threads=1).card
    labels = list(card.labels)
    test_images, test_truth = split_images(args.data, "test", labels)
    shared_images, shared_truth = labelled_photos(args.photos, labels, "No cat")
    big = Image.open(sorted((args.photos / "cats").glob("*.jpg"))[0]).convert("RGB").resize((4000, 3000))
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    result = {
        "held_back_test": compared(models, model_pixels(test_images, card, prepared=True), test_truth),
        "shared_photos": compared(models, model_pixels(shared_images, card, prepared=False), shared_truth),
        "speed_1_thread": speed(models, buffer.getvalue(), args.rounds),
        "size_bytes": {m.name: m.stat().st_size for m in models},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "int8_decision.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
