"""Convert a trained Keras model and its sidecar into a TFLite model and sidecar, with measured parity.

    python -m conversion.convert runs/b4/model.keras --out models/b4.tflite --mode float16 \\
        --validation-dir data/prepared/val [--calibration-dir data/prepared/train]

Modes (docs/conversion.md has the measurements behind the default):
- float32: no quantization; the reference.
- float16: weights stored as float16 (half the size); XNNPACK computes in float32, so accuracy and speed stay.
- dynamic-int8: int8 weights, activations quantized on the fly.
- full-int8: int8 weights and activations, calibrated on a representative dataset. Input and output stay float32:
  the model contract (raw RGB 0-255 in, probabilities out) is then the same for every mode, the quantize and
  dequantize steps at the edges cost nothing measurable next to the network, and float probabilities keep a
  top-5 ranking that an int8 softmax (1/256 resolution) would blur into ties.

Validation (on by default) runs the Keras model and the converted model, through the serving runtime, on N
images and refuses a conversion whose top-1 agreement falls below the mode's threshold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from conversion.parity import Parity, measure_parity, median_latency_ms
from lambda_function.datapath.inference import Classifier
from lambda_function.datapath.model_contract import ModelCard, ModelContractError, load_sidecar, write_sidecar
from lambda_function.settings import available_cpus
from training import (
    cat_gate,  # noqa: F401 - registers the cat gate's layers, so gated .keras files load
    starter_head,  # noqa: F401 - registers the starter head layer, so its .keras files load
)
from training.image_folder import load_pixels, sample_images


class Mode(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC_INT8 = "dynamic-int8"
    FULL_INT8 = "full-int8"


DEFAULT_MODE = Mode.FLOAT16

# Lowest top-1 agreement with the Keras model accepted per mode. Float modes only flip near-ties (float16 keeps
# about 3 significant digits), so more than 1 flip in 100 means something broke. Int8 modes may flip a few more
# near-ties; the failure they must catch is the known EfficientNet collapse under int8 (squeeze-and-excitation
# with swish: about 20 points of ImageNet top-1 lost), far below 97%.
MIN_TOP1_AGREEMENT = {Mode.FLOAT32: 0.99, Mode.FLOAT16: 0.99, Mode.DYNAMIC_INT8: 0.97, Mode.FULL_INT8: 0.97}


class ConversionError(RuntimeError):
    """The conversion cannot be done or its result does not follow the Keras model closely enough."""


@dataclass(frozen=True)
class ConversionOptions:
    mode: Mode = DEFAULT_MODE
    validation_dir: Path | None = None
    validation_images: int = 100
    calibration_dir: Path | None = None
    calibration_images: int = 100
    min_top1_agreement: float | None = None  # None: the mode's default threshold
    latency_runs: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode is Mode.FULL_INT8 and not (self.calibration_dir or self.validation_dir):
            raise ConversionError("full-int8 needs representative images: give --calibration-dir")

    @property
    def threshold(self) -> float:
        return MIN_TOP1_AGREEMENT[self.mode] if self.min_top1_agreement is None else self.min_top1_agreement


def load_keras_model(keras_path: Path) -> tuple[Any, ModelCard]:
    """Load a `.keras` model and its sidecar, and check that they agree.

    Raises:
        ModelContractError: the sidecar is missing or malformed, or disagrees with the model.
    """
    import keras

    card = load_sidecar(keras_path)
    if not keras_path.is_file():
        raise ModelContractError(f"Keras model {keras_path} not found")
    model = keras.saving.load_model(keras_path, compile=False)
    _, height, width, channels = model.input_shape
    expected = (card.input.height_px, card.input.width_px, card.input.channels)
    if (height, width, channels) != expected:
        raise ModelContractError(
            f"{keras_path}: the sidecar says input {expected}, the model takes {(height, width, channels)}"
        )
    if model.output_shape[-1] != len(card.labels):
        raise ModelContractError(
            f"{keras_path}: the sidecar lists {len(card.labels)} labels, the model outputs {model.output_shape[-1]}"
        )
    return model, card


def convert(keras_path: Path, out_path: Path, options: ConversionOptions) -> ModelCard:
    """Convert, validate, and only then write `out_path` and its sidecar.

    Returns:
        The written model card, whose provenance holds the conversion record (mode, parity, size, latency).

    Raises:
        ModelContractError: the input model and sidecar are missing, malformed or disagree.
        ConversionError: parity is below the threshold (nothing is written then).
    """
    model, card = load_keras_model(keras_path)
    size_px = (card.input.width_px, card.input.height_px)
    validation = _validation_pixels(options, size_px)
    calibration = _calibration_pixels(options, size_px) if options.mode is Mode.FULL_INT8 else None
    tflite_bytes = to_tflite(model, options.mode, calibration)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as staging:
        staged = Path(staging) / out_path.name
        staged.write_bytes(tflite_bytes)
        record = _conversion_record(keras_path, options, len(tflite_bytes), calibration)
        write_sidecar(staged, replace(card, provenance={**card.provenance, "conversion": record}))
        if validation is not None:
            reference = model.predict(validation.astype(np.float32), batch_size=16, verbose=0)
            try:
                parity = measure_parity(reference, Classifier(staged, num_threads=available_cpus()), validation)
            except RuntimeError as exc:
                raise ConversionError(f"the {options.mode} model does not run in LiteRT: {exc}") from None
            record["parity"] = parity.as_dict()
            record["latency_ms"] = {
                f"{threads}_threads": median_latency_ms(staged, threads, validation[0], options.latency_runs)
                for threads in (1, 2)
            }
            _check_parity(parity, options)
        final_card = replace(card, provenance={**card.provenance, "conversion": record})
        out_path.write_bytes(tflite_bytes)
        write_sidecar(out_path, final_card)
    return final_card


def to_tflite(model: Any, mode: Mode, calibration: np.ndarray | None = None) -> bytes:
    """The TFLite flatbuffer of `model` in `mode` (full-int8 needs `calibration`, uint8 NHWC pixels)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode is Mode.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode is Mode.DYNAMIC_INT8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode is Mode.FULL_INT8:
        if calibration is None or not len(calibration):
            raise ConversionError("full-int8 needs representative images")

        def representative() -> Iterator[list[np.ndarray]]:
            for image in calibration:
                yield [image[np.newaxis].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def _validation_pixels(options: ConversionOptions, size_px: tuple[int, int]) -> np.ndarray | None:
    if options.validation_dir is None:
        return None
    paths = sample_images(options.validation_dir, options.validation_images, seed=options.seed)
    return load_pixels(paths, size_px)


def _calibration_pixels(options: ConversionOptions, size_px: tuple[int, int]) -> np.ndarray:
    folder = options.calibration_dir or options.validation_dir
    assert folder is not None  # guaranteed by ConversionOptions.__post_init__
    # Sharing a folder with validation: take the images after the validation sample, so the two do not overlap.
    skip = options.validation_images if folder == options.validation_dir else 0
    paths = sample_images(folder, options.calibration_images, seed=options.seed, skip=skip)
    if not paths:
        paths = sample_images(folder, options.calibration_images, seed=options.seed + 1)
    return load_pixels(paths, size_px)


def _conversion_record(keras_path: Path, options: ConversionOptions, size_bytes: int, calibration: Any) -> dict:
    import tensorflow as tf

    return {
        "mode": str(options.mode),
        "source": keras_path.name,
        "converter": f"tensorflow {tf.__version__}",
        "converted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "size_bytes": size_bytes,
        "calibration_images": None if calibration is None else len(calibration),
        "min_top1_agreement": options.threshold,
        "parity": None,
        "latency_ms": None,
    }


def _check_parity(parity: Parity, options: ConversionOptions) -> None:
    if parity.top1_agreement < options.threshold:
        raise ConversionError(
            f"{options.mode} conversion refused: top-1 agreement with the Keras model is "
            f"{parity.top1_agreement:.1%} on {parity.images} images, below the {options.threshold:.1%} required "
            f"(top-5 overlap {parity.top5_overlap:.1%}, largest probability difference "
            f"{parity.max_probability_difference:.3f}). Try float16, or lower --min-top1-agreement knowingly."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conversion.convert", description=__doc__.splitlines()[0])
    parser.add_argument("keras_model", type=Path, help="a .keras model with its .json sidecar beside it")
    parser.add_argument("--out", type=Path, required=True, help="the .tflite to write (its sidecar goes beside it)")
    parser.add_argument("--mode", type=Mode, choices=list(Mode), default=DEFAULT_MODE, help="default: %(default)s")
    parser.add_argument("--validation-dir", type=Path, help="images to measure parity on (e.g. the validation split)")
    parser.add_argument(
        "--validation-images",
        type=int,
        default=ConversionOptions.validation_images,
        help="how many (default %(default)s)",
    )
    parser.add_argument("--calibration-dir", type=Path, help="representative images for full-int8")
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=ConversionOptions.calibration_images,
        help="how many (default %(default)s)",
    )
    parser.add_argument("--min-top1-agreement", type=float, help="override the mode's parity threshold (0-1)")
    parser.add_argument("--no-validate", action="store_true", help="skip parity and latency measurement")
    args = parser.parse_args(argv)
    if not args.no_validate and args.validation_dir is None:
        parser.error("give --validation-dir (for example the prepared validation split), or --no-validate")
    try:
        options = ConversionOptions(
            mode=args.mode,
            validation_dir=None if args.no_validate else args.validation_dir,
            validation_images=args.validation_images,
            calibration_dir=args.calibration_dir,
            calibration_images=args.calibration_images,
            min_top1_agreement=args.min_top1_agreement,
        )
        card = convert(args.keras_model, args.out, options)
    except (ModelContractError, ConversionError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = card.provenance["conversion"]
    print(f"wrote {args.out} ({record['size_bytes'] / 1e6:.1f} MB, {record['mode']})")
    if record["parity"]:
        parity = record["parity"]
        print(
            f"parity on {parity['images']} images: top-1 agreement {parity['top1_agreement']:.1%}, "
            f"top-5 overlap {parity['top5_overlap']:.1%}, max probability difference "
            f"{parity['max_probability_difference']:.4f}; latency {record['latency_ms']} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
