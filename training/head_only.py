"""The head-only recipe: the frozen backbone runs once per image, its features are cached, the head learns on them.

With a frozen backbone every epoch of the two-phase recipe's first phase recomputes the same features; computing
them once makes training the head a matter of seconds on a laptop CPU, so the whole path from photos to a served
model fits in minutes. The mirror image's features are cached too (`flip_features`): horizontal flipping is the
augmentation that keeps a photo a photo of the same cat, and it doubles the training set. Features are cached in
the run folder with a key (data manifest, backbone, input size, options), so a rerun with other head settings
reuses them and a changed dataset or backbone recomputes them.

The features are computed by LiteRT on a float32 conversion of the classifier's own feature layers (the project's
converter, the serving runtime): on 2 CPU cores Keras' `predict` took 82 ms per image for EfficientNet-Lite0 at 224
px, LiteRT 16 ms, and the two agree within 2e-5 (docs/training.md). A gated classifier (`training.cat_gate`) gets
its gate fitted on the training split's ImageNet logits and its breed head trained on the cat photos alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from training.model import split_at_head
from training.prepare_dataset import NO_CAT

if TYPE_CHECKING:
    import keras

    from training.recipe import TrainConfig

FEATURE_BATCH_IMAGES = 16  # images decoded and run at once: bounds memory, and larger batches ran no faster


def train_head_on_features(
    model: keras.Model, rows: list[dict[str, str]], labels: list[str], size_px: int, config: TrainConfig
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Train (and for a gated classifier, fit) the classifier's head on cached features; save the classifier.

    Returns:
        The learner's per-epoch history and the whole classifier's validation metrics.
    """
    from training.recipe import compile_model

    parts = split_at_head(model)
    extractor = FeatureExtractor(parts.features, size_px)
    key = _cache_key(config, size_px)
    train, val = (
        cached_features(extractor, rows, split, labels, config, key, flipped=config.flip_features and split == "train")
        for split in ("train", "val")
    )
    if parts.gated:
        fit_gate(model, train, labels.index(NO_CAT))
    data = _learner_data(train, val, labels, parts.gated, config.flip_features)
    settings = LearnerSettings.from_config(config)
    fit = fit_learner(parts.learner, *data.arrays, data.classes, settings, config.run_dir / "history.csv", data.origins)
    _, _, x_val, y_val = data.arrays
    temperature = calibrate_temperature(parts.learner, x_val, y_val)
    model.save(config.run_dir / "model.keras")
    compile_model(parts.head, config.head_learning_rate, config)
    metrics = parts.head.evaluate(val["vectors"], _one_hot(val["labels"], len(labels)), verbose=0, return_dict=True)
    history = [{key: float(values[i]) for key, values in fit.history.items()} for i in range(len(fit.history["loss"]))]
    return history, metrics | {"temperature": temperature}


def calibrate_temperature(learner: keras.Model, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """Fit a temperature on the validation split and fold it into the learner's output layer, so the served
    probabilities are calibrated: softmax((W x + b) / T) is softmax((W / T) x + b / T), no new layer, no cost.

    Returns:
        The temperature T (above 1: the trained head was overconfident).
    """
    from training.breed_rule import fit_temperature

    logits = np.log(np.maximum(learner.predict(x_val, verbose=0, batch_size=512), 1e-30))
    temperature = fit_temperature(logits, y_val)
    fold_temperature(learner.layers[-1], temperature)
    return temperature


def fold_temperature(output: keras.layers.Layer, temperature: float) -> None:
    """Divide a softmax Dense layer's weights by T: its probabilities become softmax(logits / T)."""
    kernel, bias = output.get_weights()
    output.set_weights([kernel / temperature, bias / temperature])


@dataclass(frozen=True)
class LearnerSettings:
    """How the head's softmax layer is trained on feature vectors: by the recipe and by the recipe search alike."""

    dropout: float = 0.2
    label_smoothing: float = 0.0
    class_weights: bool = False
    learning_rate: float = 1e-3
    epochs: int = 200
    patience: int = 10
    batch_size: int = 32
    seed: int = 42
    # Per photo origin (a dataset's name), the weight of its photos in the loss and in early stopping; others 1.
    origin_weights: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_config(cls, config: TrainConfig) -> LearnerSettings:
        return cls(
            origin_weights=tuple(config.origin_weight_map().items()),
            dropout=config.dropout,
            label_smoothing=config.label_smoothing,
            class_weights=config.class_weights,
            learning_rate=config.head_learning_rate,
            epochs=config.head_epochs,
            patience=config.patience,
            batch_size=config.batch_size,
            seed=config.seed,
        )


def make_learner(features: int, classes: int, settings: LearnerSettings) -> keras.Model:
    """A stand-alone learner shaped as `split_at_head(...).learner` of a linear-head classifier."""
    import keras

    inputs = keras.Input((features,))
    x = keras.layers.Dropout(settings.dropout, seed=settings.seed)(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", dtype="float32")(x))


def fit_learner(
    learner: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    classes: int,
    settings: LearnerSettings,
    history_csv: Path | None = None,
    origins: tuple[np.ndarray, np.ndarray] | None = None,
) -> keras.callbacks.History:
    """Adam on the cross-entropy, early stopping on the validation loss with the best weights restored.

    With `origins` (the training and validation rows' origins) and `settings.origin_weights`, each photo's loss
    is weighted by its origin, in training and in the validation loss that stops it alike.
    """
    import keras

    learner.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
        ],
    )
    callbacks = [
        # The loss, not an accuracy: with a dozen classes top-5 saturates at once and top-1 moves in steps.
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience, restore_best_weights=True),
    ]
    if history_csv is not None:
        callbacks.append(keras.callbacks.CSVLogger(history_csv))
    train_weights, val_weights = sample_weights(y_train, classes, settings, origins)
    validation = (x_val, _one_hot(y_val, classes)) + ((val_weights,) if val_weights is not None else ())
    return learner.fit(
        x_train,
        _one_hot(y_train, classes),
        validation_data=validation,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        sample_weight=train_weights,
        callbacks=callbacks,
        verbose=0 if history_csv is None else 2,
    )


def sample_weights(
    y_train: np.ndarray, classes: int, settings: LearnerSettings, origins: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each training photo's weight (its class's, times its origin's) and each validation photo's (its origin's),
    each scaled to a mean of 1 so that the learning rate means the same; None where all would be 1."""
    from training.recipe import class_weight_map

    weight_of = dict(settings.origin_weights)
    train = val = None
    if origins is not None and weight_of:
        train, val = (np.array([weight_of.get(str(origin), 1.0) for origin in rows]) for rows in origins)
    if settings.class_weights:
        by_class = class_weight_map(np.bincount(y_train, minlength=classes))
        per_class = np.array([by_class[int(label)] for label in y_train])
        train = per_class if train is None else train * per_class
    return (None if train is None else train / train.mean()), (None if val is None else val / val.mean())


def fit_gate(model: keras.Model, train: dict, no_cat_index: int) -> None:
    """Fit the cat gate on the training split (mirror images included) and put it into the model."""
    from training.cat_gate import fit_cat_calibration, log_cat_mass

    logits = [train["vectors"][1]] + ([train["flipped"][1]] if "flipped" in train else [])
    is_cat = np.concatenate([train["labels"] != no_cat_index] * len(logits))
    calibration = fit_cat_calibration(log_cat_mass(np.concatenate(logits)), is_cat)
    model.get_layer("cat_gate").calibrate(calibration)


@dataclass(frozen=True)
class LearnerData:
    """What the learner trains on: pooled features, labels and origins (for a gated classifier, the cats only)."""

    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_val, y_val
    origins: tuple[np.ndarray, np.ndarray]  # of the training rows (mirror images included) and the validation rows
    classes: int


def _learner_data(train: dict, val: dict, labels: list[str], gated: bool, flip: bool) -> LearnerData:
    no_cat = labels.index(NO_CAT) if gated else -1

    def select(split: dict, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keep = split["labels"] != no_cat
        targets = split["labels"][keep]
        return vectors[keep], (targets - (targets > no_cat)) if gated else targets, split["origins"][keep]

    x_train, y_train, o_train = select(train, train["vectors"][0])
    if flip:
        x_flipped, _, _ = select(train, train["flipped"][0])
        x_train, y_train = np.concatenate([x_train, x_flipped]), np.concatenate([y_train, y_train])
        o_train = np.concatenate([o_train, o_train])
    x_val, y_val, o_val = select(val, val["vectors"][0])
    return LearnerData((x_train, y_train, x_val, y_val), (o_train, o_val), len(labels) - (1 if gated else 0))


class FeatureExtractor:
    """The feature layers as a float32 LiteRT interpreter that takes batches of prepared images."""

    def __init__(self, features_model: keras.Model, size_px: int) -> None:
        import keras
        import tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter

        from lambda_function.settings import available_cpus

        outputs = list(features_model.outputs)
        # One output tensor, split by known widths: LiteRT does not promise the Keras order of several outputs.
        self._widths = [int(tensor.shape[-1]) for tensor in outputs]
        joined = outputs[0] if len(outputs) == 1 else keras.layers.Concatenate()(outputs)
        flat = keras.Model(features_model.input, joined)
        # Plain float32 (conversion's own modes and parity checks are for models that ship; training depends on
        # nothing in conversion/).
        float32 = tf.lite.TFLiteConverter.from_keras_model(flat).convert()
        self._interpreter = Interpreter(model_content=float32, num_threads=available_cpus())
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._interpreter.resize_tensor_input(self._input, (FEATURE_BATCH_IMAGES, size_px, size_px, 3))
        self._interpreter.allocate_tensors()

    def features(self, paths: list[Path], mirror: bool) -> list[np.ndarray]:
        """The feature vectors of each image (of its mirror image, if `mirror`), one array per feature output."""
        vectors = []
        for batch in _pixel_batches(paths, mirror):
            count = len(batch)
            padded = np.concatenate([batch, np.zeros((FEATURE_BATCH_IMAGES - count, *batch.shape[1:]), batch.dtype)])
            self._interpreter.set_tensor(self._input, padded)
            self._interpreter.invoke()
            vectors.append(self._interpreter.get_tensor(self._output)[:count].copy())
        return np.split(np.concatenate(vectors), np.cumsum(self._widths)[:-1], axis=1)


def cached_features(
    extractor: FeatureExtractor,
    rows: list[dict[str, str]],
    split: str,
    labels: list[str],
    config: TrainConfig,
    cache_key: str,
    flipped: bool,
) -> dict:
    """Feature vectors (and those of the mirror images, if `flipped`) and label indices of one split, cached."""
    cache = config.run_dir / f"features-{split}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["key"]) == cache_key and ("flipped_0" in stored or not flipped) and "origins" in stored:
                return _unpack(stored)
    chosen = [row for row in rows if row["split"] == split]
    if not chosen:
        raise ValueError(f"the prepared dataset has no {split} images")
    paths = [config.data_dir / row["file"] for row in chosen]
    result: dict[str, Any] = {
        "labels": np.array([labels.index(row["class"]) for row in chosen]),
        "origins": np.array([row.get("origin", "") for row in chosen]),
    }
    result["vectors"] = extractor.features(paths, mirror=False)
    if flipped:
        result["flipped"] = extractor.features(paths, mirror=True)
    arrays = {f"{name}_{i}": array for name in ("vectors", "flipped") for i, array in enumerate(result.get(name, []))}
    np.savez(cache, key=np.array(cache_key), labels=result["labels"], origins=result["origins"], **arrays)
    return result


def _unpack(stored: np.lib.npyio.NpzFile) -> dict:
    result: dict = {"labels": stored["labels"], "origins": stored["origins"]}
    for name in ("vectors", "flipped"):
        arrays = [stored[key] for key in sorted(stored.files) if key.startswith(f"{name}_")]  # at most 2 of each
        if arrays:
            result[name] = arrays
    return result


def _pixel_batches(paths: list[Path], mirror: bool) -> Iterator[np.ndarray]:
    """Prepared PNGs (the serving preprocessing's pixels, stored losslessly) as float32 batches."""
    for start in range(0, len(paths), FEATURE_BATCH_IMAGES):
        batch = np.stack(
            [np.asarray(Image.open(p).convert("RGB")) for p in paths[start : start + FEATURE_BATCH_IMAGES]]
        )
        yield (batch[:, :, ::-1] if mirror else batch).astype(np.float32)


def _one_hot(indices: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[indices]


def _cache_key(config: TrainConfig, size_px: int) -> str:
    from training.prepare_dataset import MANIFEST

    manifest = hashlib.sha256((config.data_dir / MANIFEST).read_bytes()).hexdigest()
    settings = [manifest, config.backbone, config.weights, size_px, config.cat_gate]
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()
