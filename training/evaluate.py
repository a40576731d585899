"""Evaluate a model on a split of the prepared dataset: top-1, top-5, per-class precision and recall, confusions.

    python -m training.evaluate runs/b4/model.keras --data data/prepared [--split test]
    python -m training.evaluate models/b4.tflite --data data/prepared

A `.tflite` model is run through the serving runtime (`lambda_function.inference`), so the quantized model's
accuracy is measured the same way as the Keras original's, on the same pixels. Writes `metrics.json` and
`confusion_matrix.png` into `--out` (default: `<model>-eval-<split>/` beside the model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lambda_function.model_contract import ModelContractError, load_sidecar
from training.prepare_dataset import read_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a .keras or .tflite model with its .json sidecar")
    parser.add_argument("--data", type=Path, required=True, help="a folder written by training.prepare_dataset")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="default %(default)s")
    parser.add_argument("--out", type=Path, help="output folder (default: beside the model)")
    args = parser.parse_args(argv)
    out = args.out or args.model.with_name(f"{args.model.stem}-eval-{args.split}")
    try:
        metrics = evaluate(args.model, args.data, args.split, out)
    except (ModelContractError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: metrics[k] for k in ("images", "top1_accuracy", "top5_accuracy")}))
    return 0


def evaluate(model_path: Path, data_dir: Path, split: str, out_dir: Path) -> dict:
    labels = list(load_sidecar(model_path).labels)
    rows = [row for row in read_manifest(data_dir) if row["split"] == split]
    if not rows:
        raise ValueError(f"the prepared dataset has no {split} images")
    unknown = sorted({row["class"] for row in rows} - set(labels))
    if unknown:
        raise ValueError(f"the dataset has classes the model does not know: {unknown[:5]}")
    truth = np.array([labels.index(row["class"]) for row in rows])
    probabilities = predict(model_path, [data_dir / row["file"] for row in rows])
    metrics = score(probabilities, truth, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_confusion(np.array(metrics.pop("confusion_matrix")), labels, out_dir / "confusion_matrix.png")
    return metrics


def predict(model_path: Path, images: list[Path]) -> np.ndarray:
    """Probabilities for each prepared image, from the serving runtime (.tflite) or Keras (.keras)."""
    if model_path.suffix == ".tflite":
        from lambda_function.inference import Classifier
        from lambda_function.settings import available_cpus

        classifier = Classifier(model_path, num_threads=available_cpus())
        return np.stack([classifier.probabilities(np.asarray(Image.open(path).convert("RGB"))) for path in images])
    import keras

    from conversion import starter_head  # noqa: F401 - registers the starter head layer, so its models load

    model = keras.saving.load_model(model_path, compile=False)
    batches = [
        np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images[i : i + 32]]).astype(np.float32)
        for i in range(0, len(images), 32)
    ]
    return np.concatenate([model.predict(batch, verbose=0) for batch in batches])


def score(probabilities: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict:
    predicted = probabilities.argmax(axis=1)
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {}
    for index, label in enumerate(labels):
        true_positives = int(confusion[index, index])
        predicted_as = int(confusion[:, index].sum())
        actual = int(confusion[index].sum())
        per_class[label] = {
            "images": actual,
            "precision": round(true_positives / predicted_as, 4) if predicted_as else None,
            "recall": round(true_positives / actual, 4) if actual else None,
        }
    return {
        "images": len(truth),
        "top1_accuracy": round(float(np.mean(predicted == truth)), 4),
        "top5_accuracy": round(float(np.mean([t in row for t, row in zip(truth, top5, strict=True)])), 4),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def plot_confusion(confusion: np.ndarray, labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = max(4, 0.18 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(side, side))
    row_totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(confusion / row_totals, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (share of each true class)")
    figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
