"""The classifier architecture that training fine-tunes."""

from __future__ import annotations

import numpy as np
import pytest

from training.cat_gate import CatCalibration, log_cat_mass
from training.model import BACKBONES, build_classifier, split_at_head


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
    from training.efficientnet_lite import pretrained_lite

    model = build_classifier(68, backbone="efficientnet-lite0", weights="imagenet")
    reference = pretrained_lite("lite0", top="feature_map")

    assert model.input_shape == (None, 224, 224, 3)
    stem = model.get_layer("backbone").get_layer("stem_conv").get_weights()[0]
    assert np.array_equal(stem, reference.get_layer("stem_conv").get_weights()[0])


def test_unknown_backbone_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        build_classifier(68, backbone="resnet50")
    assert set(BACKBONES) == {"efficientnetb0", "efficientnetb4", "efficientnet-lite0", "efficientnet-lite2"}


def test_gated_classifier_answers_no_cat_from_imagenet_and_breeds_from_its_head():
    model = build_classifier(5, "efficientnet-lite0", weights=None, hidden_units=0, cat_gate_at=2)
    gate = model.get_layer("cat_gate")
    gate.calibrate(CatCalibration(weight=2.0, bias=3.0))
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 224, 224, 3)).astype(np.float32)

    probabilities = model.predict(images, verbose=0)
    parts = split_at_head(model)
    pooled, logits = parts.features.predict(images, verbose=0)
    breeds = parts.learner.predict(pooled, verbose=0)
    p_cat = 1 / (1 + np.exp(-(2.0 * log_cat_mass(logits) + 3.0)))

    assert parts.gated and breeds.shape == (3, 4) and model.get_layer("breed_probabilities").units == 4
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(probabilities[:, 2], 1 - p_cat, atol=1e-5)
    assert np.allclose(np.delete(probabilities, 2, axis=1), breeds * p_cat[:, None], atol=1e-5)
    assert np.allclose(parts.head.predict([pooled, logits], verbose=0), probabilities, atol=1e-5)


def test_cat_gate_is_refused_for_backbones_without_imagenet_logits():
    with pytest.raises(ValueError, match="efficientnet-lite"):
        build_classifier(5, "efficientnetb0", input_size_px=64, weights=None, cat_gate_at=2)
