"""A tiny, untrained (randomly initialised, seeded) classifier over the project's 68 labels.

It exercises the whole path (Keras model and sidecar, the converter, LiteRT, the API) with 68 labels, as a trained
breed model has and the starter does not: the test suite builds it once per session. Its predictions mean
nothing; its sidecar says so.

    python -m conversion.untrained_model --out build/untrained.tflite
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import replace
from pathlib import Path

import keras

from conversion.convert import ConversionOptions, Mode, convert
from lambda_function.datapath.model_contract import CoatRule, InputSpec, ModelCard, write_sidecar
from training.coat import coat_lengths, coat_rule

REPO_DIR = Path(__file__).resolve().parent.parent
BREEDS_FILE = REPO_DIR.parent / "shared" / "breeds.txt"
PHOTOS_DIR = REPO_DIR.parent / "shared" / "photos"
# An untrained model's coat answers mean nothing; a middling threshold lets both kinds of answer (a length, and
# unclear) appear in the tests.
UNTRAINED_MIN_COAT_PROBABILITY = 0.5
DEFAULT_INPUT_SIZE_PX = 128  # small: the smoke model exercises the serving path, it is not meant to be accurate


def read_labels(path: Path = BREEDS_FILE) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_untrained_model(num_classes: int, input_size_px: int = DEFAULT_INPUT_SIZE_PX, seed: int = 7) -> keras.Model:
    """A thumbnail, one strided convolution and a small dense head: under a millisecond per image.

    Random convolution features averaged over a whole photo are nearly the same for every photo, so such a model
    gives every photo the same answer, and standardising those features to force differences made it collapse
    under int8 quantization (25% top-1 agreement). Pooling to a coarse grid first keeps the features' differences
    large: different photos get different answers, and int8 conversion keeps about 98% of them (measured on 60
    shared photos), which is what tests of parity and equivalence need. No label is learnt.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size_px, input_size_px, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.AveragePooling2D(4)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer="he_normal")(x)
    x = keras.layers.AveragePooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal")(x)
    logits = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))(x)
    outputs = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="untrained_smoke_model")


def write_untrained_keras_model(
    keras_path: Path, labels: list[str], input_size_px: int = DEFAULT_INPUT_SIZE_PX, seed: int = 7
) -> Path:
    """Save the model as training saves its output: `model.keras` with its sidecar `model.json`."""
    model = build_untrained_model(len(labels), input_size_px, seed)
    keras_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(keras_path)
    card = ModelCard(
        name="untrained-smoke-model",
        version=f"0.0.0+seed{seed}",
        labels=tuple(labels),
        input=InputSpec(height_px=input_size_px, width_px=input_size_px),
        provenance={
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "created_by": "conversion/untrained_model.py",
            "note": "randomly initialised, never trained: predictions are meaningless; for exercising the "
            "serving path only",
        },
    )
    write_sidecar(keras_path, replace(card, coat_rule=_coat_rule_if_known(labels)))
    return keras_path


def _coat_rule_if_known(labels: list[str]) -> CoatRule | None:
    """The coat table's rule for labels it covers (breeds.txt's), so that the serving path's coat and description
    are exercised; none for other labels."""
    if not set(labels) <= set(coat_lengths()):
        return None
    return coat_rule(labels, UNTRAINED_MIN_COAT_PROBABILITY)


def write_untrained_model(
    out_path: Path,
    labels: list[str],
    input_size_px: int = DEFAULT_INPUT_SIZE_PX,
    seed: int = 7,
    photos: Path | None = None,
) -> Path:
    """The untrained model as a float32 `.tflite` with sidecar, made by the project's converter."""
    keras_path = write_untrained_keras_model(out_path.with_suffix(".keras"), labels, input_size_px, seed)
    convert(keras_path, out_path, ConversionOptions(mode=Mode.FLOAT32, validation_dir=photos, latency_runs=3))
    return out_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the .tflite (sidecar beside it)")
    parser.add_argument("--labels", type=Path, default=BREEDS_FILE, help="one label per line (default: breeds.txt)")
    parser.add_argument(
        "--size", type=int, default=DEFAULT_INPUT_SIZE_PX, help="input height and width in pixels (default %(default)s)"
    )
    parser.add_argument("--photos", type=Path, default=PHOTOS_DIR, help="photos to validate the conversion on")
    args = parser.parse_args(argv)
    path = write_untrained_model(args.out, read_labels(args.labels), args.size, photos=args.photos)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
