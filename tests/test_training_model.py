"""The classifier architecture that training fine-tunes."""

from __future__ import annotations

import numpy as np
import pytest

from training.model import BACKBONES, build_classifier


def test_classifier_has_the_reference_head_on_a_named_backbone():
    model = build_classifier(68, backbone="efficientnetb0", input_size_px=64, weights=None)

    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 68)
    assert [layer.name for layer in model.layers[1:]] == [
        "backbone",
        "pool",
        "head_dense",
        "head_dropout",
        "probabilities",
    ]
    assert model.get_layer("head_dense").units == 256


def test_lite0_backbone_brings_real_imagenet_features_offline():
    from training.lite0 import pretrained_lite0

    model = build_classifier(68, backbone="efficientnet-lite0", weights="imagenet")
    reference = pretrained_lite0(include_classifier=False, include_pooling=False)

    assert model.input_shape == (None, 224, 224, 3)
    stem = model.get_layer("backbone").get_layer("stem_conv").get_weights()[0]
    assert np.array_equal(stem, reference.get_layer("stem_conv").get_weights()[0])


def test_unknown_backbone_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        build_classifier(68, backbone="resnet50")
    assert set(BACKBONES) == {"efficientnetb0", "efficientnetb4", "efficientnet-lite0"}
