"""Evaluate a model on a split of a prepared dataset, or on a folder of labelled photos.

    python -m training.evaluate runs/b4/model.keras --data data/prepared [--split test]
    python -m training.evaluate models/b4.tflite --data data/prepared --record held_back_test
    python -m training.evaluate models/b4.tflite --photos ../shared/photos --unknown-as "No cat"

Reports top-1, top-3 and top-5 accuracy, per-class precision and recall, the confusion matrix, calibration
(expected calibration error and a reliability diagram) and, for a model with a "No cat" class, how often a cat is
found and how often anything else is answered "No cat". A `.tflite` model is run through the serving runtime
(`lambda_function.datapath.inference`, with the serving preprocessing for photos), so the quantized model is
measured the way it answers requests. `--record KEY` also writes the summary into the model's sidecar under
`metrics.KEY`.
Writes `metrics.json`, `confusion_matrix.png` and `reliability.png` into `--out` (default: beside the model).

A photo's label is its folder's name when that is one of the model's labels (`Bengal/1.jpg`), else the start of
its file name in the Oxford-IIIT Pet style (`Maine_Coon_12.jpg` is "Maine Coon", `Sphynx_3.jpg` is "Sphynx -
Hairless Cat"); photos of anything else count as `--unknown-as` if given, and are refused otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from lambda_function.datapath.model_contract import ModelCard, ModelContractError, load_sidecar, write_sidecar
from training.plots import pyplot
from training.prepare_dataset import NO_CAT, read_manifest

CALIBRATION_BINS = 15
SUMMARY_KEYS = (
    "images",
    "top1_accuracy",
    "top3_accuracy",
    "top5_accuracy",
    "expected_calibration_error",
    "cats",
    "cat_breed_top1",
    "cat_breed_top3",
    "cats_detected",
    "not_cats",
    "not_cats_answered_no_cat",
    "cats_breed_identified",
    "identified_breed_top1",
    "coat_cats",
    "coat_right_of_answered",
    "coat_unclear",
    "coat_longer_called_longer",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a .keras or .tflite model with its .json sidecar")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a folder written by training.prepare_dataset")
    source.add_argument("--photos", type=Path, help="a folder of labelled photos (see above), at any depth")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="default %(default)s")
    parser.add_argument(
        "--origin", help="with --data: only the photos of this origin (a dataset's name, e.g. cat-breeds-web)"
    )
    parser.add_argument("--unknown-as", help='with --photos: the label for photos of no known label ("No cat")')
    parser.add_argument("--record", help="also write the summary into the model's sidecar, under metrics.RECORD")
    parser.add_argument("--out", type=Path, help="output folder (default: beside the model)")
    args = parser.parse_args(argv)
    out = args.out or args.model.with_name(f"{args.model.stem}-eval-{args.record or args.split}")
    try:
        labels = list(load_sidecar(args.model).labels)
        if args.data:
            images, truth = split_images(args.data, args.split, labels, args.origin)
            of_origin = f" ({args.origin} photos)" if args.origin else ""
            description = f"split '{args.split}' of {args.data.name}{of_origin}"
        else:
            images, truth = labelled_photos(args.photos, labels, args.unknown_as)
            description = f"photos in {args.photos.name}/"
        metrics = evaluate(args.model, images, truth, out, prepared=args.data is not None)
    except (ModelContractError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {"evaluated_on": description, **{k: metrics[k] for k in SUMMARY_KEYS if k in metrics}}
    if args.record:
        extra = {key: metrics[key] for key in ("per_class", "coat_confusion") if key in metrics}
        record(args.model, args.record, summary | extra)
    print(json.dumps(summary))
    return 0


def split_images(
    data_dir: Path, split: str, labels: list[str], origin: str | None = None
) -> tuple[list[Path], np.ndarray]:
    """The prepared images of one split (of one origin, if given) and their label indices."""
    rows = [row for row in read_manifest(data_dir) if row["split"] == split and origin in (None, row.get("origin"))]
    if not rows:
        raise ValueError(f"the prepared dataset has no {split} images" + (f" of origin {origin}" if origin else ""))
    unknown = sorted({row["class"] for row in rows} - set(labels))
    if unknown:
        raise ValueError(f"the dataset has classes the model does not know: {unknown[:5]}")
    return [data_dir / row["file"] for row in rows], np.array([labels.index(row["class"]) for row in rows])


def labelled_photos(folder: Path, labels: list[str], unknown_as: str | None) -> tuple[list[Path], np.ndarray]:
    """Every image under `folder` and its label index (module docstring: how a label is found)."""
    from training.image_folder import list_images

    if unknown_as is not None and unknown_as not in labels:
        raise ValueError(f"--unknown-as {unknown_as!r} is not one of the model's labels")
    images = list_images(folder)
    if not images:
        raise ValueError(f"no images under {folder}")
    found = [photo_label(path, labels) or unknown_as for path in images]
    unlabelled = [path.name for path, label in zip(images, found, strict=True) if label is None]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} photos have no known label (e.g. {unlabelled[0]}); see --unknown-as")
    return images, np.array([labels.index(label) for label in found if label is not None])


def photo_label(path: Path, labels: list[str]) -> str | None:
    if path.parent.name in labels:
        return path.parent.name
    stem = re.sub(r"[_\s-]*\d+$", "", path.stem).replace("_", " ").strip().lower()
    if not stem:
        return None
    # Exact name first, then a label that starts with the name as a whole word ("sphynx" -> "Sphynx - Hairless Cat").
    matches = [label for label in labels if label.lower() == stem] or [
        label for label in labels if re.match(rf"{re.escape(stem)}\b", label.lower())
    ]
    return matches[0] if len(matches) == 1 else None


def evaluate(model_path: Path, images: list[Path], truth: np.ndarray, out_dir: Path, prepared: bool) -> dict:
    """Score the model on the images; write metrics.json and the plots into `out_dir`."""
    card = load_sidecar(model_path)
    labels = list(card.labels)
    probabilities = predict(model_path, model_pixels(images, card, prepared))
    metrics = score(probabilities, truth, labels) | identified_figures(probabilities, truth, card)
    metrics |= coat_figures(probabilities, truth, card)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_confusion(np.array(metrics["confusion_matrix"]), labels, out_dir / "confusion_matrix.png")
    plot_reliability(metrics["reliability"], metrics["expected_calibration_error"], out_dir / "reliability.png")
    return metrics


def model_pixels(images: list[Path], card: ModelCard, prepared: bool) -> np.ndarray:
    """The images as one uint8 batch at the model's input size.

    Prepared images are already at that size, as the serving preprocessing made them; other photos go through it.

    Raises:
        ValueError: a photo cannot be decoded (a score over fewer photos than asked would mislead).
    """
    if prepared:
        return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in images])
    from training.image_folder import load_pixels

    pixels = load_pixels(images, (card.input.width_px, card.input.height_px))
    if len(pixels) != len(images):
        raise ValueError(f"{len(images) - len(pixels)} of the photos could not be decoded")
    return pixels


def predict(model_path: Path, pixels: np.ndarray) -> np.ndarray:
    """Probabilities for each image, from the serving runtime (.tflite) or Keras (.keras)."""
    if model_path.suffix == ".tflite":
        from lambda_function.datapath.inference import Classifier
        from lambda_function.settings import available_cpus

        classifier = Classifier(model_path, num_threads=available_cpus())
        return np.stack([classifier.probabilities(image) for image in pixels])
    import keras

    from training import (
        cat_gate,  # noqa: F401 - registers the cat gate's layers, so gated models load
        starter_head,  # noqa: F401 - registers the starter head layer, so its models load
    )

    model = keras.saving.load_model(model_path, compile=False)
    return model.predict(pixels.astype(np.float32), batch_size=32, verbose=0)


def score(probabilities: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict:
    predicted = probabilities.argmax(axis=1)
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    metrics: dict = {"images": len(truth)}
    for k in (1, 3, 5):
        metrics[f"top{k}_accuracy"] = _top_k(ranked, truth, k)
    calibration = calibration_bins(probabilities.max(axis=1), predicted == truth)
    metrics["expected_calibration_error"] = calibration.pop("expected_calibration_error")
    if NO_CAT in labels:
        metrics |= cat_figures(ranked, truth, labels.index(NO_CAT))
    metrics["per_class"] = per_class(confusion, labels)
    metrics["confusion_matrix"] = confusion.tolist()
    metrics["reliability"] = calibration
    return metrics


def _top_k(ranked: np.ndarray, truth: np.ndarray, k: int) -> float:
    if not len(truth):
        return float("nan")
    return round(float(np.mean([t in row for t, row in zip(truth, ranked[:, :k], strict=True)])), 4)


def cat_figures(ranked: np.ndarray, truth: np.ndarray, no_cat: int) -> dict:
    """Breed accuracy among the cats, and the cat/"No cat" decision (the top answer is a breed, or "No cat")."""
    is_cat = truth != no_cat
    answered_no_cat = ranked[:, 0] == no_cat
    figures: dict[str, float] = {"cats": int(is_cat.sum()), "not_cats": int((~is_cat).sum())}
    if is_cat.any():
        figures["cat_breed_top1"] = _top_k(ranked[is_cat], truth[is_cat], 1)
        figures["cat_breed_top3"] = _top_k(ranked[is_cat], truth[is_cat], 3)
        figures["cats_detected"] = round(float(np.mean(~answered_no_cat[is_cat])), 4)
    if (~is_cat).any():
        figures["not_cats_answered_no_cat"] = round(float(np.mean(answered_no_cat[~is_cat])), 4)
    return figures


def identified_figures(probabilities: np.ndarray, truth: np.ndarray, card: ModelCard) -> dict:
    """The breed rule (the runtime's own `breed_identified`): the share of the cats whose breed is identified (a
    cat taken for "No cat" is not), and how often an identified breed is right."""
    from lambda_function.datapath.inference import breed_identified
    from lambda_function.datapath.model_contract import NO_CAT_LABEL

    labels = list(card.labels)
    if card.breed_rule is None or NO_CAT_LABEL not in labels:
        return {}
    no_cat = labels.index(NO_CAT_LABEL)
    is_cat = truth != no_cat
    identified = is_cat & np.array([breed_identified(row, card) is True for row in probabilities])
    right = probabilities.argmax(axis=1) == truth
    return {
        "cats_breed_identified": round(float(identified.sum() / max(is_cat.sum(), 1)), 4),
        "identified_breed_top1": round(float(right[identified].mean()), 4) if identified.any() else None,
        "min_breed_probability": card.breed_rule.min_probability,
    }


def coat_figures(probabilities: np.ndarray, truth: np.ndarray, card: ModelCard) -> dict:
    """The coat rule (the runtime's own `coat`) on the cats whose breed has one length: how often the length
    given is right, judged as short against longer (medium or long) against hairless; how many are unclear; how
    many of the longer-haired are called longer; and the confusion of the four lengths (rows: the breed's)."""
    from lambda_function.datapath.inference import coat_of
    from lambda_function.datapath.model_contract import COAT_LENGTHS

    rule = card.coat_rule
    if rule is None:
        return {}
    truth_lengths = [rule.label_lengths[t] for t in truth]
    rows = [i for i, length in enumerate(truth_lengths) if length is not None]
    if not rows:
        return {}
    judged = {"hairless": "hairless", "short": "short", "medium": "longer", "long": "longer"}
    said = [coat_of(probabilities[i], card) for i in rows]
    given = [(i, coat.length) for i, coat in zip(rows, said, strict=True) if coat is not None and coat.length]
    right = [judged[length] == judged[truth_lengths[i]] for i, length in given]
    longer = [(i, length) for i, length in given if judged[truth_lengths[i]] == "longer"]
    confusion = {name: dict.fromkeys([*COAT_LENGTHS, "unclear"], 0) for name in COAT_LENGTHS}
    for i, coat in zip(rows, said, strict=True):
        confusion[truth_lengths[i]][(coat.length if coat else None) or "unclear"] += 1
    return {
        "coat_cats": len(rows),
        "coat_right_of_answered": round(float(np.mean(right)), 4) if right else None,
        "coat_unclear": round(1 - len(given) / len(rows), 4),
        "coat_longer_called_longer": round(float(np.mean([judged[s] == "longer" for _, s in longer])), 4)
        if longer
        else None,
        "coat_confusion": confusion,
    }


def per_class(confusion: np.ndarray, labels: list[str]) -> dict[str, dict]:
    result = {}
    for index, label in enumerate(labels):
        true_positives = int(confusion[index, index])
        predicted_as = int(confusion[:, index].sum())
        actual = int(confusion[index].sum())
        result[label] = {
            "images": actual,
            "precision": round(true_positives / predicted_as, 4) if predicted_as else None,
            "recall": round(true_positives / actual, 4) if actual else None,
        }
    return result


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Expected calibration error over equal-width confidence bins, and each bin's figures for the diagram."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, error = [], 0.0
    for b in range(bins):
        members = index == b
        if not members.any():
            continue
        accuracy, mean_confidence = float(correct[members].mean()), float(confidence[members].mean())
        error += members.mean() * abs(accuracy - mean_confidence)
        rows.append(
            {
                "from": round(float(edges[b]), 4),
                "to": round(float(edges[b + 1]), 4),
                "images": int(members.sum()),
                "accuracy": round(accuracy, 4),
                "confidence": round(mean_confidence, 4),
            }
        )
    return {"expected_calibration_error": round(float(error), 4), "bins": rows}


def record(model_path: Path, key: str, summary: dict) -> None:
    """Write the summary into the sidecar's metrics under `key`, keeping everything else."""
    card = load_sidecar(model_path)
    write_sidecar(model_path, replace(card, metrics={**card.metrics, key: summary}))


def plot_confusion(confusion: np.ndarray, labels: list[str], path: Path) -> None:
    plt = pyplot()
    side = max(5, 0.3 * len(labels) + 3)
    figure, axes = plt.subplots(figsize=(side, side))
    row_totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(confusion / row_totals, cmap="Blues", vmin=0, vmax=1)
    if len(labels) <= 20:
        for (row, column), count in np.ndenumerate(confusion):
            if count:
                share = count / row_totals[row, 0]
                colour = "white" if share > 0.6 else "black"
                axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (counts; colour: share of each true class)")
    figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_reliability(reliability: dict, error: float, path: Path) -> None:
    plt = pyplot()
    bins = reliability["bins"]
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    axes.bar(
        [(b["from"] + b["to"]) / 2 for b in bins],
        [b["accuracy"] for b in bins],
        width=[b["to"] - b["from"] for b in bins],
        edgecolor="#1f4e79",
        color="#2e86de",
        alpha=0.7,
        label="accuracy in the bin",
    )
    axes.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="#1f4e79", markersize=3)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Reliability (ECE {error:.3f})")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
