"""Train the breed classifier on a prepared dataset: fine-tuning on a GPU instance, or the head alone on a CPU.

    python -m training.train --data data/prepared --run runs/b4
    python -m training.train --data data/cat-breeds-12 --run runs/lite0 --backbone efficientnet-lite0 \
        --head-only --cat-gate --hidden-units 0 --head-epochs 200

By default, two phases, in the order of the keras-io EfficientNet fine-tuning recipe: first the new head on a frozen
backbone, then the top of the backbone at a lower learning rate with BatchNorm kept frozen (its statistics were
learnt on far more images than ours; updating them on small batches wrecks the features). Writes into the run
folder: `model.keras` (best checkpoint by validation top-5), its sidecar `model.json` (labels, input spec, metrics,
the data manifest's hash), `history.csv`, `curves.png` and TensorBoard logs. `python -m conversion.convert
runs/b4/model.keras ...` converts the result with no extra step.

`--head-only` trains the head alone on backbone features computed once and cached (`training.head_only`): the
recipe for a laptop CPU and a few thousand photos, where it takes minutes instead of hours. It writes
`model.keras` with the weights of the epoch of lowest validation loss (early stopping restores them; no top-5
checkpoint), its sidecar, `history.csv`, `curves.png` and the cached features; no TensorBoard logs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

from lambda_function.datapath.model_contract import BreedRule, InputSpec, ModelCard, write_sidecar
from training.prepare_dataset import MANIFEST, NO_CAT, class_names, read_manifest
from training.recipe import TrainConfig, class_weight_map, compile_model


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        rows = read_manifest(config.data_dir)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import keras

    keras.utils.set_random_seed(config.seed)
    strategy = configure_devices()
    labels = class_names(rows)
    size_px = prepared_size_px(config.data_dir)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    if config.cat_gate and NO_CAT not in labels:
        print(f"error: --cat-gate needs a '{NO_CAT}' class in the dataset", file=sys.stderr)
        return 2
    with strategy.scope():
        model = build_model(len(labels), size_px, config, labels.index(NO_CAT) if config.cat_gate else None)
    if config.head_only:
        from training.head_only import train_head_on_features

        history, metrics = train_head_on_features(model, rows, labels, size_px, config)
    else:
        history, metrics = train_two_phases(model, rows, labels, size_px, config)
    write_run_outputs(config, labels, size_px, history, metrics)
    print(json.dumps({"val_" + k: round(float(v), 4) for k, v in metrics.items()}))
    return 0


def train_two_phases(
    model: Any, rows: list[dict[str, str]], labels: list[str], size_px: int, config: TrainConfig
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """The head on a frozen backbone, then the top of the backbone; the history and the best model's val metrics."""
    import keras

    datasets = {split: make_dataset(rows, split, labels, size_px, config) for split in ("train", "val")}
    history = train_head(model, datasets, config)
    if config.fine_tune_epochs:
        history += fine_tune(model, datasets, config, best_top5=max(h["val_top5"] for h in history))
    best = keras.saving.load_model(config.run_dir / "model.keras", compile=True)
    temperature = calibrate_on_dataset(best, datasets["val"], labels, gated=config.cat_gate)
    best.save(config.run_dir / "model.keras")
    return history, best.evaluate(datasets["val"], verbose=0, return_dict=True) | {"temperature": temperature}


def calibrate_on_dataset(model: Any, dataset: Any, labels: list[str], gated: bool) -> float:
    """Fit a temperature on the validation split and fold it into the output layer, as the head-only recipe does
    (`training.head_only.calibrate_temperature`), so that a breed rule reads calibrated probabilities. For a gated
    classifier, on the cats' P(breed | cat), in its breed layer; otherwise on every label.

    Returns:
        The temperature T.
    """
    import numpy as np

    from training.breed_rule import fit_temperature
    from training.head_only import fold_temperature

    batches: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    for images, one_hot in dataset:
        batches.append(np.asarray(model(images, training=False), dtype=np.float64))
        truths.append(np.argmax(np.asarray(one_hot), axis=1))
    probabilities, truth = np.concatenate(batches), np.concatenate(truths)
    if gated:
        no_cat = labels.index(NO_CAT)
        cats = truth != no_cat
        probabilities = np.delete(probabilities[cats], no_cat, axis=1)
        truth = truth[cats] - (truth[cats] > no_cat)
    temperature = fit_temperature(np.log(np.maximum(probabilities, 1e-30)), truth)
    fold_temperature(model.get_layer("breed_probabilities" if gated else "probabilities"), temperature)
    return temperature


def parse_args(argv: list[str] | None) -> TrainConfig:
    """`TrainConfig` from the command line: one flag per field, its type, default and help from the field."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    hints = typing.get_type_hints(TrainConfig)
    for item in fields(TrainConfig):
        options = dict(item.metadata)
        flag, help_text = options.pop("flag"), options.pop("help")
        if hints[item.name] is bool:  # a switch that turns the default over
            options["action"] = "store_false" if item.default else "store_true"
        else:
            options.setdefault("type", _argument_type(hints[item.name]))
            options.setdefault("metavar", None if "choices" in options else flag.lstrip("-").upper().replace("-", "_"))
            if item.default is not MISSING:
                options["default"] = "none" if item.name == "weights" and item.default is None else item.default
                if item.default is not None:
                    help_text = f"{help_text} (default {item.default})".lstrip()
        parser.add_argument(flag, dest=item.name, help=help_text, **options)
    return TrainConfig(**vars(parser.parse_args(argv)))


def _argument_type(hint: Any) -> Any:
    """The argparse type of a field: its own type, or the non-None member of an optional one."""
    members = [member for member in typing.get_args(hint) if member is not type(None)]
    return members[0] if members else hint


def configure_devices() -> Any:
    """Mixed precision and a MirroredStrategy over all GPUs when there are GPUs; the default strategy on CPU."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    return tf.distribute.MirroredStrategy()


def prepared_size_px(data_dir: Path) -> int:
    return int(json.loads((data_dir / "report.json").read_text(encoding="utf-8"))["config"]["size_px"])


def decode_prepared(path: Any) -> Any:
    """A prepared PNG to float32 RGB in [0, 255]: exactly the pixels `lambda_function.datapath.preprocessing`
    computed."""
    import tensorflow as tf

    return tf.cast(tf.io.decode_png(tf.io.read_file(path), channels=3), tf.float32)


def make_dataset(rows: list[dict[str, str]], split: str, labels: list[str], size_px: int, config: TrainConfig) -> Any:
    """tf.data pipeline: parallel decode, cache, shuffle (train), batch, augmentation (train only), prefetch."""
    import tensorflow as tf

    chosen = [row for row in rows if row["split"] == split]
    if not chosen:
        raise ValueError(f"the prepared dataset has no {split} images")
    paths = [str(config.data_dir / row["file"]) for row in chosen]
    indices = [labels.index(row["class"]) for row in chosen]
    dataset = tf.data.Dataset.from_tensor_slices((paths, indices))
    dataset = dataset.map(
        lambda path, index: (decode_prepared(path), tf.one_hot(index, len(labels))), num_parallel_calls=tf.data.AUTOTUNE
    )
    dataset = dataset.map(lambda image, label: (tf.ensure_shape(image, (size_px, size_px, 3)), label))
    if config.cache == "memory":
        dataset = dataset.cache()
    elif config.cache == "disk":
        dataset = dataset.cache(str(config.run_dir / f"cache-{split}"))
    if split == "train":
        dataset = dataset.shuffle(min(len(paths), 4096), seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(config.batch_size)
    if split == "train":
        augment = augmentation()
        dataset = dataset.map(
            lambda images, y: (augment(images, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    if config.max_steps_per_epoch:
        dataset = dataset.take(config.max_steps_per_epoch)
    return dataset.prefetch(tf.data.AUTOTUNE)


def augmentation() -> Any:
    """Random flip, small rotation, zoom and contrast: applied to training batches only, never saved in the model."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomRotation(0.05),
            keras.layers.RandomZoom(0.1),
            keras.layers.RandomContrast(0.1),
        ],
        name="augmentation",
    )


def build_model(num_classes: int, size_px: int, config: TrainConfig, no_cat_index: int | None = None) -> Any:
    from training.model import build_classifier

    return build_classifier(
        num_classes,
        config.backbone,
        size_px,
        config.weights,  # type: ignore[arg-type]  # "imagenet" or None: TrainConfig checks it
        config.dropout,
        hidden_units=config.hidden_units,
        cat_gate_at=no_cat_index,
    )


def callbacks(config: TrainConfig, best_top5: float | None = None) -> list[Any]:
    import keras

    return [
        keras.callbacks.ModelCheckpoint(
            config.run_dir / "model.keras",
            monitor="val_top5",
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_top5,
        ),
        keras.callbacks.EarlyStopping(monitor="val_top5", mode="max", patience=config.patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=max(1, config.patience // 2)),
        keras.callbacks.CSVLogger(config.run_dir / "history.csv", append=True),
        keras.callbacks.TensorBoard(config.run_dir / "tensorboard"),
    ]


def dataset_class_counts(dataset: Any) -> Any:
    import numpy as np

    counts = np.zeros(0)
    for _, labels in dataset:
        batch_counts = labels.numpy().sum(axis=0)
        counts = batch_counts if counts.size == 0 else counts + batch_counts
    return counts


def train_head(model: Any, datasets: dict[str, Any], config: TrainConfig) -> list[dict[str, float]]:
    """Phase 1: the backbone frozen, the new head trained."""
    model.get_layer("backbone").trainable = False
    compile_model(model, config.head_learning_rate, config)
    return _fit(model, datasets, config, epochs=(0, config.head_epochs), best_top5=None)


def unfreeze_top(model: Any, fraction: float) -> None:
    """Unfreeze the top `fraction` of the backbone's layers, except BatchNormalization (see the module docstring)."""
    import keras

    backbone = model.get_layer("backbone")
    backbone.trainable = True
    layers = backbone.layers
    first_trainable = int(len(layers) * (1 - fraction))
    for index, layer in enumerate(layers):
        layer.trainable = index >= first_trainable and not isinstance(layer, keras.layers.BatchNormalization)


def fine_tune(model: Any, datasets: dict[str, Any], config: TrainConfig, best_top5: float) -> list[dict[str, float]]:
    """Phase 2: the top of the backbone too, at a lower learning rate; keeps phase 1's best unless beaten."""
    unfreeze_top(model, config.fine_tune_fraction)
    compile_model(model, config.fine_tune_learning_rate, config)
    epochs = (config.head_epochs, config.head_epochs + (config.fine_tune_epochs or 0))
    return _fit(model, datasets, config, epochs=epochs, best_top5=best_top5)


def _fit(
    model: Any, datasets: dict[str, Any], config: TrainConfig, epochs: tuple[int, int], best_top5: float | None
) -> list[dict[str, float]]:
    """Train from epoch `epochs[0]` to `epochs[1]`; the per-epoch metrics. The dataset shuffles itself."""
    fit = model.fit(
        datasets["train"],
        validation_data=datasets["val"],
        initial_epoch=epochs[0],
        epochs=epochs[1],
        callbacks=callbacks(config, best_top5),
        class_weight=class_weight_map(dataset_class_counts(datasets["train"])) if config.class_weights else None,
        shuffle=False,
        verbose=2,
    )
    history = fit.history
    return [{key: float(values[i]) for key, values in history.items()} for i in range(len(history["loss"]))]


def write_run_outputs(
    config: TrainConfig, labels: list[str], size_px: int, history: list[dict[str, float]], metrics: dict[str, float]
) -> None:
    import tensorflow as tf

    manifest_sha256 = hashlib.sha256((config.data_dir / MANIFEST).read_bytes()).hexdigest()
    card = ModelCard(
        name=config.model_name or f"{config.backbone}-cat-breeds",
        version=config.model_version or dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S"),
        labels=tuple(labels),
        input=InputSpec(height_px=size_px, width_px=size_px),
        provenance={
            "created_by": "training/train.py",
            "tensorflow": tf.__version__,
            "data_manifest_sha256": manifest_sha256,
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        },
        metrics={"val_" + k: round(float(v), 4) for k, v in metrics.items()} | {"epochs_run": len(history)},
        breed_rule=None if config.min_breed_probability is None else BreedRule(config.min_breed_probability),
    )
    write_sidecar(config.run_dir / "model.keras", card)
    plot_curves(history, config.run_dir / "curves.png", phase_boundary=config.head_epochs)


def plot_curves(history: list[dict[str, float]], path: Path, phase_boundary: int) -> None:
    from training.plots import pyplot

    plt = pyplot()
    epochs = range(1, len(history) + 1)
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, metric in zip(axes, ("loss", "accuracy", "top5"), strict=True):
        axis.plot(epochs, [h[metric] for h in history], label="train")
        axis.plot(epochs, [h[f"val_{metric}"] for h in history], label="validation")
        if phase_boundary < len(history):
            axis.axvline(phase_boundary + 0.5, color="grey", linestyle=":", label="fine-tuning starts")
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
