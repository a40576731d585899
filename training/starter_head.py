"""The starter model's head: ImageNet probabilities to the project's labels, with a calibrated cat decision.

An ImageNet model spreads a cat photo's probability over many classes (other cats, lynx, blanket, ...), so the
naive rule "No cat = 1 - mass on the five domestic-cat classes" calls about a third of real cat photos "No cat".
The head therefore decides cat/no-cat with a one-feature logistic layer on the log of that mass, fitted on real
photos, and shares the cat probability among the five breeds in proportion to their ImageNet probabilities. The
six outputs still sum to 1.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# ImageNet class index of each domestic-cat class, and the project label it stands for.
IMAGENET_CAT_CLASSES = {
    "Tabby": 281,  # tabby, tabby cat
    "Tiger": 282,  # tiger cat
    "Persian": 283,  # Persian cat
    "Siamese": 284,  # Siamese cat, Siamese
    "Egyptian Mau": 285,  # Egyptian cat
}
NO_CAT = "No cat"
# The project's spelling and order (breeds.txt order), restricted to what ImageNet can tell.
STARTER_LABELS = ("Egyptian Mau", NO_CAT, "Persian", "Siamese", "Tabby", "Tiger")


@keras.saving.register_keras_serializable(package="cat_breeds")
class StarterHead(keras.layers.Layer):
    """ImageNet logits (N, 1000) -> probabilities over STARTER_LABELS (N, 6)."""

    def __init__(self, cat_weight: float = 1.0, cat_bias: float = 0.0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.cat_weight = float(cat_weight)
        self.cat_bias = float(cat_bias)
        self._breed_classes = [IMAGENET_CAT_CLASSES[label] for label in STARTER_LABELS if label != NO_CAT]
        self._no_cat_position = STARTER_LABELS.index(NO_CAT)

    def call(self, logits: keras.KerasTensor) -> keras.KerasTensor:
        # In log space, with no division: log(cat mass) = logsumexp(cat logits) - logsumexp(all logits), and each
        # breed's share of the cat mass is a softmax over the cat logits alone. An int8 conversion of the
        # straightforward "probabilities / cat mass" divided by a mass quantized to zero and failed to run.
        cat_logits = ops.take(logits, self._breed_classes, axis=-1)
        log_cat_mass = ops.logsumexp(cat_logits, axis=-1, keepdims=True) - ops.logsumexp(logits, axis=-1, keepdims=True)
        p_cat = ops.sigmoid(self.cat_weight * log_cat_mass + self.cat_bias)
        shares = p_cat * ops.softmax(cat_logits, axis=-1)
        position = self._no_cat_position
        return ops.concatenate([shares[:, :position], 1.0 - p_cat, shares[:, position:]], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, int]:
        return (input_shape[0], len(STARTER_LABELS))

    def get_config(self) -> dict:
        return {**super().get_config(), "cat_weight": self.cat_weight, "cat_bias": self.cat_bias}


def cat_mass(imagenet_probabilities: np.ndarray) -> np.ndarray:
    """Summed probability of the five domestic-cat classes, per image."""
    return imagenet_probabilities[:, sorted(IMAGENET_CAT_CLASSES.values())].sum(axis=1)
