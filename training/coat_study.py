"""How coat length is predicted, chosen on cached features: rerunnable.

    python -m training.feature_cache --data build/breed-model/data --backbone efficientnet-lite2 --out F --augmented 2
    python -m training.coat_study --features F --out docs/model/coat-study.json

Three predictors of P(length | cat), each on the frozen Lite2 features:

- **breed mass**: the breed head of the default recipe (`training.recipe_search`), its probabilities summed over
  the breeds of each length (`training.coat`);
- **coat head**: a softmax regression straight from the features to the four lengths, class-balanced, trained on
  the cats whose breed has one length;
- **both**: the mean of the two.

Each is judged as short against longer (medium or long) against hairless, on the held-back test split and by
leave-breeds-out: seeded draws of 6 breeds (2 of them medium or long), whose photos, every split, are judged by
predictors trained without them. The threshold under which a length is "unclear" is chosen on the validation
split (at most `UNCLEAR_SHARE` of its cats below it), as the breed rule's was.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.breed_rule import fit_temperature, softmax
from training.coat import (
    LENGTHS,
    breed_mass,
    judged,
    judged_probabilities,
    length_index,
    unclear_threshold,
)
from training.recipe_search import CHOSEN, RECIPES, Features, train_breed_head

DRAWS = 5
DRAW_SIZE, DRAW_LONGER = 6, 2
PREDICTORS = ("breed mass", "coat head", "both")


@dataclass(frozen=True)
class SoftmaxHead:
    """A linear softmax layer on raw features: what a Dense output of the served network computes."""

    kernel: np.ndarray  # (features, classes)
    bias: np.ndarray  # (classes,)
    temperature: float = 1.0

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax((x @ self.kernel + self.bias) / self.temperature)


def fit_softmax(
    x: np.ndarray, y: np.ndarray, classes: int, *, l2: float = 1e-3, steps: int = 400, seed: int = 0
) -> SoftmaxHead:
    """Class-balanced multinomial logistic regression by full-batch Adam on standardised features, with the
    standardisation folded back into the weights."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = ((x - mean) / scale).astype(np.float32)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weights = np.where(counts[y] > 0, len(y) / (np.count_nonzero(counts) * np.maximum(counts[y], 1)), 0.0)
    weights = (weights / weights.sum()).astype(np.float32)
    rng = np.random.default_rng(seed)
    kernel = (rng.standard_normal((z.shape[1], classes)) * 0.01).astype(np.float32)
    bias = np.zeros(classes, dtype=np.float32)
    onehot = np.eye(classes, dtype=np.float32)[y]
    moments = [np.zeros_like(kernel), np.zeros_like(kernel), np.zeros_like(bias), np.zeros_like(bias)]
    rate, beta1, beta2 = 0.05, 0.9, 0.999
    for step in range(1, steps + 1):
        error = (softmax(z @ kernel + bias) - onehot) * weights[:, None]
        grads = (z.T @ error + l2 * kernel, error.sum(axis=0))
        for i, (param, grad) in enumerate(zip((kernel, bias), grads, strict=True)):
            first, second = moments[2 * i], moments[2 * i + 1]
            first *= beta1
            first += (1 - beta1) * grad
            second *= beta2
            second += (1 - beta2) * grad**2
            param -= rate * (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + 1e-8)
    return SoftmaxHead(kernel / scale[:, None], bias - (mean / scale) @ kernel)


class CoatData:
    """The cats' rows with their breed's length (LENGTHS index; -1 for a breed of several lengths)."""

    def __init__(self, features: Features) -> None:
        self.features = features
        self.lengths_of_labels = length_index(features.labels)
        self.length = self.lengths_of_labels[features.label]

    def training_views(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows with a length, plain, mirrored and their random views: features and lengths."""
        f = self.features
        rows = rows[self.length[rows] >= 0]
        train_index = {row: position for position, row in enumerate(f.rows("train"))}
        views = [f.pooled[rows], f.pooled_mirror[rows]]
        views += [view[[train_index[row] for row in rows]] for view in f.views if all(r in train_index for r in rows)]
        return np.concatenate(views), np.concatenate([self.length[rows]] * len(views))


def predictors(data: CoatData, train: np.ndarray, val: np.ndarray, seed: int, left_out: tuple[str, ...] = ()):
    """The three predictors, trained on `train` without the breeds `left_out`: a function from rows to
    {predictor: (n, 4) probabilities}."""
    f = data.features
    names = np.array(f.labels)
    kept = [i for i, name in enumerate(f.labels) if name not in left_out and i != f.no_cat]
    remap = np.full(len(f.labels), -1)
    remap[kept] = np.arange(len(kept))
    subset = f.relabelled(remap) if left_out else f
    breed_head = train_breed_head(subset, RECIPES[CHOSEN], train, val, seed)
    breed_lengths = data.lengths_of_labels[kept] if left_out else data.lengths_of_labels[names != "No cat"]
    x, y = data.training_views(train)
    coat_head = fit_softmax(x, y, len(LENGTHS), seed=seed)
    val_known = val[data.length[val] >= 0]
    coat_head = SoftmaxHead(
        coat_head.kernel,
        coat_head.bias,
        fit_temperature(f.pooled[val_known] @ coat_head.kernel + coat_head.bias, data.length[val_known]),
    )

    def predict(rows: np.ndarray) -> dict[str, np.ndarray]:
        breeds = breed_head.predict(f.pooled[rows], verbose=0, batch_size=512)
        mass = breed_mass(breeds, breed_lengths)
        head = coat_head.probabilities(f.pooled[rows])
        return {"breed mass": mass, "coat head": head, "both": (mass + head) / 2}

    return predict


def threshold_on(probabilities: np.ndarray) -> float:
    """The judged probability under which a length is unclear: at most UNCLEAR_SHARE of these cats below it."""
    return unclear_threshold(probabilities)


def judge(probabilities: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    """Judged accuracy over the answers that give a length, the unclear share, longer cats called longer, and the
    4x4 confusion (rows: the breed's length; columns: the answer's, then unclear)."""
    three = judged_probabilities(probabilities)
    answered = three.max(axis=1) >= threshold
    said = np.where(answered, probabilities.argmax(axis=1), len(LENGTHS))
    right = judged(said) == judged(truth)
    longer = (truth >= 2) & answered
    confusion = np.zeros((len(LENGTHS), len(LENGTHS) + 1), dtype=int)
    np.add.at(confusion, (truth, said), 1)
    return {
        "cats": len(truth),
        "right_of_answered": float(right[answered].mean()) if answered.any() else None,
        "unclear": float(1 - answered.mean()),
        "longer_called_longer": float((judged(said[longer]) == 2).mean()) if longer.any() else None,
        "confusion": {
            LENGTHS[i]: dict(zip([*LENGTHS, "unclear"], map(int, row), strict=True)) for i, row in enumerate(confusion)
        },
    }


def held_back(data: CoatData, seed: int) -> dict:
    f = data.features
    train, val, test = (f.rows(s) for s in ("train", "val", "test"))
    cats = lambda rows: rows[(f.label[rows] != f.no_cat) & (data.length[rows] >= 0)]  # noqa: E731
    predict = predictors(data, train[f.label[train] != f.no_cat], val[f.label[val] != f.no_cat], seed)
    on_val, on_test = predict(cats(val)), predict(cats(test))
    result: dict[str, Any] = {}
    for name in PREDICTORS:
        threshold = threshold_on(on_val[name])
        result[name] = {"threshold": threshold, "test": judge(on_test[name], data.length[cats(test)], threshold)}
        print(name, json.dumps({k: v for k, v in result[name]["test"].items() if k != "confusion"}), flush=True)
    return result


def draws(data: CoatData, seed: int) -> list[tuple[str, ...]]:
    """DRAWS seeded draws of DRAW_SIZE breeds with one length, DRAW_LONGER of them medium or long; never the only
    hairless breed, whose length nothing else could teach."""
    f = data.features
    rng = np.random.default_rng(seed)
    breeds = [n for i, n in enumerate(f.labels) if i != f.no_cat and data.lengths_of_labels[i] >= 0]
    longer = [n for n in breeds if data.lengths_of_labels[f.labels.index(n)] >= 2]
    short = [n for n in breeds if data.lengths_of_labels[f.labels.index(n)] == 1]
    return [
        tuple(
            sorted(
                rng.choice(longer, DRAW_LONGER, replace=False).tolist()
                + rng.choice(short, DRAW_SIZE - DRAW_LONGER, replace=False).tolist()
            )
        )
        for _ in range(DRAWS)
    ]


def leave_breeds_out(data: CoatData, seed: int) -> list[dict]:
    f = data.features
    results = []
    for draw in draws(data, seed):
        out = np.isin(np.array(f.labels)[f.label], draw)
        known_cats = ~out & (f.label != f.no_cat)
        train, val = (np.flatnonzero(known_cats & (f.split == s)) for s in ("train", "val"))
        predict = predictors(data, train, val, seed, left_out=draw)
        rows = np.flatnonzero(out)
        on_val, on_out = predict(val[data.length[val] >= 0]), predict(rows)
        result: dict[str, Any] = {"breeds": list(draw)}
        for name in PREDICTORS:
            result[name] = judge(on_out[name], data.length[rows], threshold_on(on_val[name]))
        print(
            json.dumps(
                {"breeds": draw, **{n: {k: v for k, v in result[n].items() if k != "confusion"} for n in PREDICTORS}}
            ),
            flush=True,
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.coat_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, required=True, help="a folder written by training.feature_cache")
    parser.add_argument("--augmented", type=int, default=2, help="random views per training image in the cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="the study's JSON report")
    args = parser.parse_args(argv)
    data = CoatData(Features(args.features, RECIPES[CHOSEN].backbones, args.augmented))
    report = {"held_back": held_back(data, args.seed), "leave_breeds_out": leave_breeds_out(data, args.seed)}
    report["leave_breeds_out_mean"] = {
        name: {
            "right_of_answered": float(np.mean([d[name]["right_of_answered"] for d in report["leave_breeds_out"]])),
            "longer_called_longer": float(
                np.mean([d[name]["longer_called_longer"] for d in report["leave_breeds_out"]])
            ),
            "unclear": float(np.mean([d[name]["unclear"] for d in report["leave_breeds_out"]])),
        }
        for name in PREDICTORS
    }
    print(json.dumps(report["leave_breeds_out_mean"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
