"""How the default model's recipe and its `breed_identified` rule were chosen, on cached features: rerunnable.

    python -m training.feature_cache --data build/breed-model/data --backbone efficientnet-lite2 --out F --augmented 2
    python -m training.feature_cache --data build/breed-model/data --backbone efficientnet-lite0 --out F
    python -m training.recipe_search --features F --out docs/model/recipe-search.json

Two studies, each on the frozen backbones' features (`training.feature_cache`) with the head-only recipe's own
learner (`training.head_only.fit_learner`) and cat gate (`training.cat_gate`), seeded:

- **recipes**: each recipe is trained on the training split and scored on the validation split (chosen on) and the
  test split (reported), Oxford-IIIT Pet photos and web photos separately;
- **leave-breeds-out**: the chosen recipe is trained again without whole breeds (every web-only breed is left out
  once, in folds), and each candidate score for "is this one of the breeds I know?" is measured on the photos of
  the breeds left out against the known breeds' test photos: AUROC, and the whole trade-off curve.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.breed_rule import fit_temperature, mahalanobis_fit, softmax
from training.cat_gate import fit_cat_calibration, log_cat_mass
from training.feature_cache import load_features
from training.prepare_dataset import NO_CAT

if TYPE_CHECKING:
    import keras

OXFORD, WEB = "cat-breeds-12", "cat-breeds-web"


@dataclass(frozen=True)
class Recipe:
    """One way of training the breed head on frozen features."""

    name: str
    backbones: tuple[str, ...] = ("efficientnet-lite2",)
    mirror: bool = True  # the mirror images' features added to the training set
    augmented: int = 0  # random views per training image added (feature_cache --augmented)
    label_smoothing: float = 0.0
    class_weights: bool = False
    drop_disputed: bool = False  # drop training photos a cross-validated head confidently disagrees with
    test_time_flip: bool = False  # average the image's and its mirror image's probabilities
    dropout: float = 0.2
    oxford_weight: float = 1.0  # the weight of the Oxford photos (clean labels) against the web photos (noisy)


RECIPES = (
    Recipe("Lite2, linear head, no augmentation", mirror=False),
    Recipe("Lite2, linear head, mirror images"),
    Recipe("Lite2, mirror images + 2 random views", augmented=2),
    Recipe("Lite2, mirror images, label smoothing 0.1", label_smoothing=0.1),
    Recipe("Lite2, mirror images, disputed photos dropped", drop_disputed=True),
    Recipe("Lite2, mirror images, class weights", class_weights=True),
    Recipe("Lite2, mirror images, test-time flip", test_time_flip=True),
    Recipe("Lite0 + Lite2, mirror images", backbones=("efficientnet-lite0", "efficientnet-lite2")),
    Recipe("Lite2, mirror + 2 views, label smoothing 0.1", augmented=2, label_smoothing=0.1),
    Recipe("Lite2, mirror images, Oxford photos weighted 2", oxford_weight=2),
    Recipe("Lite2, mirror images, Oxford photos weighted 5", oxford_weight=5),
    Recipe("Lite2, mirror images, Oxford photos weighted 10", oxford_weight=10),
)
CHOSEN = 10  # the committed default's recipe (docs/model.md): the one leave-breeds-out measures by default


class Features:
    """The cached features of one prepared dataset, per view, with the rows' split, label and origin."""

    def __init__(self, folder: Path, backbones: tuple[str, ...], augmented: int) -> None:
        plain = [load_features(folder, b, "plain") for b in backbones]
        self.labels = [str(x) for x in plain[0]["labels"]]
        self.no_cat = self.labels.index(NO_CAT)
        self.split, self.label, self.origin = plain[0]["split"], plain[0]["label"], plain[0]["origin"]
        self.pooled = np.concatenate([p["pooled"] for p in plain], axis=1)
        self.logits = plain[-1]["logits"]  # the gate reads the largest backbone's ImageNet classifier
        mirror = [load_features(folder, b, "mirror") for b in backbones]
        self.pooled_mirror = np.concatenate([m["pooled"] for m in mirror], axis=1)
        self.logits_mirror = mirror[-1]["logits"]
        self.views = []
        for i in range(augmented):
            views = [load_features(folder, b, f"augmented{i}") for b in backbones]
            self.views.append(np.concatenate([v["pooled"] for v in views], axis=1))

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def relabelled(self, remap: np.ndarray) -> Features:
        """These features with some breeds removed (`remap`: each label's new index, or -1): the labels renumbered
        so that a learner's classes are the kept breeds, the removed ones counted as "No cat"."""
        subset = copy.copy(self)
        kept = remap >= 0
        subset.labels = [name for name, keep in zip(self.labels, kept, strict=True) if keep] + [NO_CAT]
        subset.no_cat = len(subset.labels) - 1
        subset.label = np.where(remap[self.label] >= 0, remap[self.label], subset.no_cat)
        return subset


def breed_targets(label: np.ndarray, no_cat: int) -> np.ndarray:
    """Label indices over all labels -> indices over the breeds alone ("No cat" removed)."""
    return label - (label > no_cat)


def train_breed_head(
    features: Features, recipe: Recipe, train_rows: np.ndarray, val_rows: np.ndarray, seed: int
) -> keras.Model:
    """The breed learner of `recipe`, trained on the cats among `train_rows` (and their extra views)."""
    from training.head_only import LearnerSettings, fit_learner, make_learner

    cats = train_rows[features.label[train_rows] != features.no_cat]
    if recipe.drop_disputed:
        cats = cats[~disputed(features, cats, seed)]
    train_index = {row: position for position, row in enumerate(features.rows("train"))}
    x = [features.pooled[cats]]
    if recipe.mirror:
        x.append(features.pooled_mirror[cats])
    for view in features.views[: recipe.augmented]:
        x.append(view[[train_index[row] for row in cats]])
    y = np.concatenate([breed_targets(features.label[cats], features.no_cat)] * len(x))
    val_cats = val_rows[features.label[val_rows] != features.no_cat]
    classes = len(features.labels) - 1
    settings = LearnerSettings(
        dropout=recipe.dropout,
        label_smoothing=recipe.label_smoothing,
        class_weights=recipe.class_weights,
        seed=seed,
        origin_weights=((OXFORD, recipe.oxford_weight),),
    )
    learner = make_learner(x[0].shape[1], classes, settings)
    fit_learner(
        learner,
        np.concatenate(x),
        y,
        features.pooled[val_cats],
        breed_targets(features.label[val_cats], features.no_cat),
        classes,
        settings,
        origins=(np.concatenate([features.origin[cats]] * len(x)), features.origin[val_cats]),
    )
    return learner


def disputed(features: Features, cats: np.ndarray, seed: int, folds: int = 5, confidence: float = 0.8) -> np.ndarray:
    """Training photos that a head trained without them (5-fold) puts elsewhere with at least `confidence`."""
    rng = np.random.default_rng(seed)
    fold_of = rng.integers(0, folds, len(cats))
    flagged = np.zeros(len(cats), dtype=bool)
    plain = Recipe("cross-validation", drop_disputed=False)
    for fold in range(folds):
        held = cats[fold_of == fold]
        learner = train_breed_head(features, plain, cats[fold_of != fold], held, seed)
        probabilities = learner.predict(features.pooled[held], verbose=0)
        top = probabilities.argmax(axis=1)
        truth = breed_targets(features.label[held], features.no_cat)
        flagged[fold_of == fold] = (top != truth) & (probabilities.max(axis=1) >= confidence)
    return flagged


def breed_logits(learner: keras.Model, pooled: np.ndarray) -> np.ndarray:
    """The learner's pre-softmax scores, from its output layer's weights (dropout is off at inference)."""
    kernel, bias = learner.layers[-1].get_weights()
    return pooled @ kernel + bias


def full_probabilities(breed_probabilities: np.ndarray, p_cat: np.ndarray, no_cat: int) -> np.ndarray:
    shares = p_cat[:, None] * breed_probabilities
    return np.concatenate([shares[:, :no_cat], (1 - p_cat)[:, None], shares[:, no_cat:]], axis=1)


def score_rows(probabilities: np.ndarray, truth: np.ndarray, origin: np.ndarray, no_cat: int) -> dict:
    """Top-1 and top-3 over all labels per origin, and cats detected / not-cats answered "No cat"."""
    ranked = np.argsort(-probabilities, axis=1)
    result: dict = {}
    for name in (OXFORD, WEB):
        rows = (origin == name) & (truth != no_cat)
        result[name] = {
            "cats": int(rows.sum()),
            "top1": float((ranked[rows, 0] == truth[rows]).mean()),
            "top3": float((ranked[rows, :3] == truth[rows, None]).any(axis=1).mean()),
        }
    cats, others = truth != no_cat, truth == no_cat
    result["cats_detected"] = float((ranked[cats, 0] != no_cat).mean())
    result["not_cats_answered_no_cat"] = float((ranked[others, 0] == no_cat).mean())
    return result


def evaluate_recipe(features: Features, recipe: Recipe, seed: int) -> dict:
    train, val, test = (features.rows(s) for s in ("train", "val", "test"))
    learner = train_breed_head(features, recipe, train, val, seed)
    gate_rows = np.concatenate([features.logits[train], features.logits_mirror[train]])
    is_cat = np.concatenate([features.label[train] != features.no_cat] * 2)
    gate = fit_cat_calibration(log_cat_mass(gate_rows), is_cat)
    result = {"recipe": asdict(recipe)}
    for split, rows in (("val", val), ("test", test)):
        breeds = learner.predict(features.pooled[rows], verbose=0, batch_size=512)
        if recipe.test_time_flip:
            breeds = (breeds + learner.predict(features.pooled_mirror[rows], verbose=0, batch_size=512)) / 2
        p_cat = gate.p_cat_from_log_mass(log_cat_mass(features.logits[rows]))
        probabilities = full_probabilities(breeds, p_cat, features.no_cat)
        result[split] = score_rows(probabilities, features.label[rows], features.origin[rows], features.no_cat)
    print(json.dumps({"recipe": recipe.name, "val": result["val"], "test": result["test"]}), flush=True)
    return result


# The web-only breeds, in three folds: every one of them is an unknown breed once.
LEFT_OUT_FOLDS = (
    ("American Shorthair", "Burmese", "Havana", "Japanese Bobtail", "Norwegian Forest Cat", "Selkirk Rex", "Tiger"),
    ("Balinese", "Cornish Rex", "Exotic Shorthair", "Himalayan", "Korat", "Scottish Fold", "Tonkinese"),
    (
        "Devon Rex",
        "Extra-Toes Cat - Hemingway Polydactyl",
        "Manx",
        "Nebelung",
        "Oriental Short Hair",
        "Siberian",
        "Snowshoe",
        "Turkish Angora",
    ),
)


def leave_breeds_out(features: Features, recipe: Recipe, seed: int) -> dict:
    """Candidate scores of "a breed I know" on the left-out breeds' photos against the known breeds' test photos."""
    pooled: dict[str, list] = {"unknown": [], "known_test": [], "known_correct": [], "origin": []}
    scores: dict[str, dict[str, list]] = {}
    for fold in LEFT_OUT_FOLDS:
        left_out = np.isin(np.array(features.labels)[features.label], fold)
        kept_labels = [i for i, name in enumerate(features.labels) if name not in fold and i != features.no_cat]
        remap = np.full(len(features.labels), -1)
        remap[kept_labels] = np.arange(len(kept_labels))
        known = ~left_out & (features.label != features.no_cat)
        train, val, test = (np.flatnonzero(known & (features.split == s)) for s in ("train", "val", "test"))
        sub = features.relabelled(remap)
        learner = train_breed_head(sub, recipe, train, val, seed)
        unknown_rows = np.flatnonzero(left_out)
        fold_scores = rule_scores(learner, features, sub, train, val, {"unknown": unknown_rows, "known": test})
        for name, values in fold_scores.items():
            scores.setdefault(name, {"unknown": [], "known": []})
            scores[name]["unknown"].append(values["unknown"])
            scores[name]["known"].append(values["known"])
        predictions = breed_logits(learner, features.pooled[test]).argmax(axis=1)
        pooled["known_correct"].append(predictions == remap[features.label[test]])
        pooled["origin"].append(features.origin[test])
        print(f"fold {fold[0]}...: {len(unknown_rows)} unknown photos, {len(test)} known test photos", flush=True)
    correct = np.concatenate(pooled["known_correct"])
    origin = np.concatenate(pooled["origin"])
    result: dict[str, Any] = {"folds": [list(f) for f in LEFT_OUT_FOLDS], "rules": {}}
    for name, gathered in scores.items():
        unknown, known = np.concatenate(gathered["unknown"]), np.concatenate(gathered["known"])
        result["rules"][name] = trade_off(unknown, known, correct, origin)
        print(name, json.dumps({k: v for k, v in result["rules"][name].items() if k != "curve"}), flush=True)
    return result


def rule_scores(
    learner: keras.Model, features: Features, sub: Features, train: np.ndarray, val: np.ndarray, groups: dict
) -> dict[str, dict[str, np.ndarray]]:
    """For each candidate rule, its score (higher: more surely a known breed) on each group of rows."""
    val_logits = breed_logits(learner, features.pooled[val])
    temperature = fit_temperature(val_logits, sub.label[val])
    train_cats = train[sub.label[train] != sub.no_cat]
    mahalanobis = mahalanobis_fit(features.pooled[train_cats], sub.label[train_cats], len(sub.labels) - 1)
    background = mahalanobis_fit(features.pooled[train_cats], np.zeros(len(train_cats), dtype=int), 1)
    bank = _unit(features.pooled[train_cats])
    result: dict[str, dict[str, np.ndarray]] = {}
    for group, rows in groups.items():
        logits = breed_logits(learner, features.pooled[rows])
        probabilities = softmax(logits / temperature)
        distance = mahalanobis.min_distance(features.pooled[rows])
        scaled = logits / temperature
        peak = scaled.max(axis=1)
        energy = temperature * (peak + np.log(np.exp(scaled - peak[:, None]).sum(axis=1)))
        similarity = np.sort(_unit(features.pooled[rows]) @ bank.T, axis=1)[:, -10]
        candidates = {
            "max_probability": probabilities.max(axis=1),
            "energy": energy,
            "mahalanobis": -distance,
            "relative_mahalanobis": background.min_distance(features.pooled[rows]) - distance,
            "knn_cosine": similarity,
            "margin": np.diff(np.sort(probabilities, axis=1)[:, -2:], axis=1)[:, 0],
        }
        for name, values in candidates.items():
            result.setdefault(name, {})[group] = values
    return result


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def trade_off(unknown: np.ndarray, known: np.ndarray, correct: np.ndarray, origin: np.ndarray) -> dict:
    """AUROC (left-out breeds against known breeds' test photos) and, per threshold, what is identified."""
    auroc = float((unknown[:, None] < known[None, :]).mean() + 0.5 * (unknown[:, None] == known[None, :]).mean())
    thresholds = np.quantile(np.concatenate([unknown, known]), np.linspace(0, 1, 101))
    curve = []
    oxford = origin == OXFORD
    for threshold in thresholds:
        identified = known >= threshold
        curve.append(
            {
                "threshold": float(threshold),
                "unknown_identified": float((unknown >= threshold).mean()),
                "known_identified": float(identified.mean()),
                "known_identified_right": float(correct[identified].mean()) if identified.any() else 1.0,
                "oxford_identified": float(identified[oxford].mean()),
                "oxford_identified_right": float(correct[oxford & identified].mean())
                if (oxford & identified).any()
                else 1.0,
            }
        )
    return {"auroc": auroc, "unknown_photos": len(unknown), "known_photos": len(known), "curve": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recipe_search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, required=True, help="the cache folder of training.feature_cache")
    parser.add_argument("--out", type=Path, required=True, help="where to write the results (JSON)")
    parser.add_argument("--study", choices=["recipes", "leave-breeds-out", "both"], default="both")
    parser.add_argument(
        "--recipe",
        type=int,
        default=CHOSEN,
        help="the index in RECIPES of the recipe for leave-breeds-out (%(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.study in ("recipes", "both"):
        results["recipes"] = []
        for recipe in RECIPES:
            features = Features(args.features, recipe.backbones, recipe.augmented)
            results["recipes"].append(evaluate_recipe(features, recipe, args.seed))
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.study in ("leave-breeds-out", "both"):
        recipe = RECIPES[args.recipe]
        features = Features(args.features, recipe.backbones, recipe.augmented)
        results["leave_breeds_out"] = {"recipe": asdict(recipe)} | leave_breeds_out(features, recipe, args.seed)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        plot_trade_off(results["leave_breeds_out"]["rules"], args.out.with_suffix(".png"))
    return 0


def plot_trade_off(rules: dict, path: Path) -> None:
    """Each rule's curve: the left-out breeds' photos identified against the Oxford test cats identified."""
    from training.plots import pyplot

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 5))
    for name, rule in sorted(rules.items(), key=lambda item: -item[1]["auroc"]):
        curve = rule["curve"]
        axis.plot(
            [point["unknown_identified"] for point in curve],
            [point["oxford_identified"] for point in curve],
            label=f"{name.replace('_', ' ')} (AUROC {rule['auroc']:.3f})",
        )
    axis.axvline(0.25, color="grey", linestyle=":", linewidth=1)
    axis.axhline(0.75, color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("photos of left-out breeds answered breed_identified: true")
    axis.set_ylabel("Oxford test cats answered breed_identified: true")
    axis.set_title("Leave-breeds-out: the rules' trade-off (bounds dotted)")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
