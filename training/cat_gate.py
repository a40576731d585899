"""The cat gate: "is there a cat?" decided from ImageNet's own classifier, the breed among cats by the trained head.

ImageNet-1k has five domestic-cat classes (281-285) and 118 dog breeds, and its classifier tells them apart well:
EfficientNet-Lite2 puts 97.6% of the shared dog photos' top-1 on a dog class. A breed head trained on a few
thousand photos learns that far less well, because few of its "No cat" photos are dogs (46 of 800 in the
cat-breeds-12 training split) and pet photos look alike. So the gate answers P(cat) with a one-feature logistic
regression on the log of the probability ImageNet puts on its domestic-cat classes, fitted on the training split,
and the model's probabilities are P(cat) x P(breed | cat) for each breed and 1 - P(cat) for "No cat"; they still sum
to 1. docs/model.md has the measurements behind this design.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

# ImageNet-1k's domestic-cat classes: tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat.
IMAGENET_DOMESTIC_CAT_CLASSES = (281, 282, 283, 284, 285)
_MIN_MASS = 1e-12


def log_cat_mass(imagenet_logits: np.ndarray) -> np.ndarray:
    """log of the softmax probability on the domestic-cat classes, per image, computed stably from logits."""
    cat = imagenet_logits[:, IMAGENET_DOMESTIC_CAT_CLASSES]
    return _logsumexp(cat) - _logsumexp(imagenet_logits)


def _logsumexp(values: np.ndarray) -> np.ndarray:
    peak = values.max(axis=1)
    return peak + np.log(np.exp(values - peak[:, None]).sum(axis=1))


@dataclass(frozen=True)
class CatCalibration:
    """P(cat) = sigmoid(weight * log(cat mass) + bias)."""

    weight: float
    bias: float

    @property
    def threshold_mass(self) -> float:
        """The cat mass at which P(cat) = 0.5."""
        return float(np.exp(-self.bias / self.weight))

    def p_cat_from_log_mass(self, log_mass: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(self.weight * log_mass + self.bias)))

    def p_cat(self, mass: np.ndarray) -> np.ndarray:
        return self.p_cat_from_log_mass(np.log(np.maximum(mass, _MIN_MASS)))


def fit_cat_calibration(
    log_mass: np.ndarray, is_cat: np.ndarray, l2: float = 1e-2, iterations: int = 50
) -> CatCalibration:
    """Fit the logistic regression by Newton's method, both classes weighted equally, with a small L2 penalty.

    The penalty keeps the fit finite when the photos are perfectly separable; the class weighting keeps the
    decision from favouring whichever class has more photos. Deterministic: no randomness, no early stopping.
    """
    x = np.asarray(log_mass)
    y = is_cat.astype(np.float64)
    sample_weight = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    features = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-features @ theta))
        gradient = features.T @ (sample_weight * (p - y)) + l2 * np.array([theta[0], 0.0])
        hessian = (features.T * (sample_weight * p * (1 - p))) @ features + l2 * np.diag([1.0, 0.0])
        theta -= np.linalg.solve(hessian, gradient)
    return CatCalibration(weight=float(theta[0]), bias=float(theta[1]))


@keras.saving.register_keras_serializable(package="cat_breeds")
class CatGate(keras.layers.Layer):
    """ImageNet logits (N, 1000) -> P(cat) (N, 1). Its weight and bias are fitted (`calibrate`), never trained."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.cat_weight = self.add_weight(shape=(), initializer="ones", trainable=False, name="cat_weight")
        self.cat_bias = self.add_weight(shape=(), initializer="zeros", trainable=False, name="cat_bias")

    def call(self, logits: keras.KerasTensor) -> keras.KerasTensor:
        # In log space with no division, as `log_cat_mass`: a division by a mass quantized to zero broke int8.
        cat_logits = ops.take(logits, list(IMAGENET_DOMESTIC_CAT_CLASSES), axis=-1)
        log_mass = ops.logsumexp(cat_logits, axis=-1, keepdims=True) - ops.logsumexp(logits, axis=-1, keepdims=True)
        return ops.sigmoid(self.cat_weight * log_mass + self.cat_bias)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, int]:
        return (input_shape[0], 1)

    def calibrate(self, calibration: CatCalibration) -> None:
        self.cat_weight.assign(calibration.weight)
        self.cat_bias.assign(calibration.bias)


@keras.saving.register_keras_serializable(package="cat_breeds")
class WithNoCat(keras.layers.Layer):
    """[P(breed | cat) (N, K-1), P(cat) (N, 1)] -> probabilities over all K labels, "No cat" at `no_cat_index`."""

    def __init__(self, no_cat_index: int = 0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.no_cat_index = int(no_cat_index)

    def call(self, inputs: list[keras.KerasTensor]) -> keras.KerasTensor:
        breeds, p_cat = inputs
        shares = p_cat * breeds
        position = self.no_cat_index
        return ops.concatenate([shares[:, :position], 1.0 - p_cat, shares[:, position:]], axis=-1)

    def compute_output_shape(self, input_shapes: list[tuple[int | None, ...]]) -> tuple[int | None, int]:
        batch, breeds = input_shapes[0][0], input_shapes[0][1]
        assert breeds is not None, "the breed head's width is known when the graph is built"
        return (batch, breeds + 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "no_cat_index": self.no_cat_index}
