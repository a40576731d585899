"""A tiny, untrained (randomly initialised, seeded) classifier over the project's 68 labels.

It exists to exercise the whole serving path with a real TFLite model where no trained one is at hand: the test
suite builds it once per session, and `make demo` uses it until the starter model lands. Its predictions mean
nothing; its sidecar says so.

    python -m conversion.untrained_model --out build/untrained.tflite
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from conversion.export import export_tflite
from lambda_function.preprocessing import DecodeLimits, prepare_image
from lambda_function.settings import DEFAULT_MAX_IMAGE_PIXELS

REPO_DIR = Path(__file__).resolve().parent.parent
BREEDS_FILE = REPO_DIR.parent / "shared" / "breeds.txt"
PHOTOS_DIR = REPO_DIR.parent / "shared" / "photos"


def read_labels(path: Path = BREEDS_FILE) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_untrained_model(
    num_classes: int, input_size_px: int = 128, seed: int = 7, calibration_pixels: np.ndarray | None = None
) -> keras.Model:
    """Two strided convolutions, pooling and a softmax head: milliseconds per image, deterministic per seed.

    Random features of different photos are nearly identical after pooling, so every photo would get the same
    answer; standardising them with statistics from `calibration_pixels` (uint8 NHWC, e.g. the shared photos)
    makes the answers differ from photo to photo, which is what tests of equivalence need. No label is learnt.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size_px, input_size_px, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(16, 5, strides=4, activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    normalization = keras.layers.Normalization(name="feature_standardisation")
    if calibration_pixels is not None:
        normalization.adapt(keras.Model(inputs, features).predict(calibration_pixels.astype("float32"), verbose=0))
    else:
        normalization.adapt(np.random.default_rng(seed).normal(size=(8, features.shape[-1])).astype("float32"))
    x = normalization(features)
    # A wide initialisation spreads the logits, so that different photos get clearly different top answers.
    logits = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.5))(x)
    outputs = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="untrained_smoke_model")


def load_calibration_pixels(folder: Path, input_size_px: int) -> np.ndarray:
    """Every photo under `folder`, through the serving preprocessing, as one uint8 batch."""
    limits = DecodeLimits(max_pixels=DEFAULT_MAX_IMAGE_PIXELS)
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return np.stack([prepare_image(p.read_bytes(), (input_size_px, input_size_px), limits) for p in photos])


def write_untrained_model(
    out_path: Path, labels: list[str], input_size_px: int = 128, seed: int = 7, calibration_folder: Path | None = None
) -> Path:
    calibration = load_calibration_pixels(calibration_folder, input_size_px) if calibration_folder else None
    model = build_untrained_model(len(labels), input_size_px, seed, calibration)
    return export_tflite(
        model,
        out_path,
        labels=labels,
        name="untrained-smoke-model",
        version=f"0.0.0+seed{seed}",
        provenance={
            "note": "randomly initialised, never trained: predictions are meaningless; "
            "for exercising the serving path only"
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the .tflite (sidecar beside it)")
    parser.add_argument("--labels", type=Path, default=BREEDS_FILE, help="one label per line (default: breeds.txt)")
    parser.add_argument("--size", type=int, default=128, help="input height and width in pixels")
    parser.add_argument("--calibration", type=Path, default=PHOTOS_DIR, help="photos to standardise features on")
    args = parser.parse_args(argv)
    path = write_untrained_model(args.out, read_labels(args.labels), args.size, calibration_folder=args.calibration)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
