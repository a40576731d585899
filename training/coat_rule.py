"""Write a model's coat rule into its sidecar: each label's length from the breed-standard table, and the threshold
chosen on the validation split, through the serving runtime (as the model answers requests).

    python -m training.coat_rule models/cat-breeds-34.tflite --data build/breed-model/data

The threshold is the judged P(length | cat) under which `UNCLEAR_SHARE` of the validation split's cats of a known
length fall (`training.coat`); `training.coat_study` says why the breeds' probability mass was chosen over a coat
head of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from lambda_function.datapath.model_contract import ModelContractError, load_sidecar, write_sidecar
from training.coat import UNCLEAR_SHARE, coat_rule, unclear_threshold
from training.evaluate import model_pixels, predict, split_images


def fitted_coat_rule(model_path: Path, data_dir: Path) -> dict:
    """Fit the rule on the validation split and write it into the sidecar; what was written."""
    card = load_sidecar(model_path)
    labels = list(card.labels)
    unfitted = coat_rule(labels, 0.0)
    images, truth = split_images(data_dir, "val", labels)
    known = np.array([unfitted.label_lengths[t] is not None for t in truth])
    images = [image for image, keep in zip(images, known, strict=True) if keep]
    probabilities = predict(model_path, model_pixels(images, card, prepared=True))
    threshold = round(unclear_threshold(np.stack([unfitted.length_shares(row) for row in probabilities])), 4)
    write_sidecar(model_path, replace(card, coat_rule=replace(unfitted, min_probability=threshold)))
    return {"min_probability": threshold, "validation_cats": len(images), "unclear_share": UNCLEAR_SHARE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.coat_rule", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a .tflite model with its .json sidecar")
    parser.add_argument("--data", type=Path, required=True, help="the folder training.prepare_dataset wrote for it")
    args = parser.parse_args(argv)
    try:
        written = fitted_coat_rule(args.model, args.data)
    except (ModelContractError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
