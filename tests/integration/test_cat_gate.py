"""The cat gate: a logistic regression on ImageNet's domestic-cat probability, fitted, never trained."""

from __future__ import annotations

import numpy as np

from training.cat_gate import (
    IMAGENET_DOMESTIC_CAT_CLASSES,
    CatCalibration,
    CatGate,
    WithNoCat,
    fit_cat_calibration,
    log_cat_mass,
)


def test_fit_separates_cats_from_dogs_and_stays_finite_when_separable():
    mass = np.array([0.9, 0.6, 0.2, 0.05, 0.03, 0.01, 0.004, 0.002, 0.0005])
    is_cat = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0])

    calibration = fit_cat_calibration(np.log(mass), is_cat)

    assert np.isfinite([calibration.weight, calibration.bias]).all()
    assert 0.01 < calibration.threshold_mass < 0.03
    assert ((calibration.p_cat(mass) >= 0.5) == is_cat.astype(bool)).all()


def test_fit_weighs_both_classes_equally_whatever_their_counts():
    rng = np.random.default_rng(0)
    cats, others = rng.normal(-1, 1, size=50), rng.normal(-6, 1, size=5000)

    calibration = fit_cat_calibration(np.concatenate([cats, others]), np.r_[np.ones(50), np.zeros(5000)])

    assert -4.5 < np.log(calibration.threshold_mass) < -2.5  # near the midpoint -3.5, not pushed towards the cats


def test_log_cat_mass_is_the_log_of_the_softmax_on_the_cat_classes():
    logits = np.random.default_rng(1).normal(scale=3, size=(4, 1000))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    expected = np.log(probabilities[:, IMAGENET_DOMESTIC_CAT_CLASSES].sum(axis=1))

    assert np.allclose(log_cat_mass(logits), expected)


def test_gate_layer_computes_the_fitted_probability():
    logits = np.random.default_rng(2).normal(scale=3, size=(6, 1000)).astype(np.float32)
    logits[:3, 283] += 25  # three of them sure of "Persian cat"
    calibration = CatCalibration(weight=2.0, bias=6.0)  # P(cat) = 0.5 at a cat mass of exp(-3), about 5%
    gate = CatGate()
    gate.build(logits.shape)
    gate.calibrate(calibration)

    p_cat = np.asarray(gate(logits))[:, 0]

    assert np.allclose(p_cat, calibration.p_cat_from_log_mass(log_cat_mass(logits)), atol=1e-5)
    assert (p_cat[:3] > 0.5).all() and (p_cat[3:] < 0.5).all()


def test_no_cat_takes_the_rest_at_its_place_in_the_labels():
    breeds = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], dtype=np.float32)
    p_cat = np.array([[0.9], [0.2]], dtype=np.float32)

    probabilities = np.asarray(WithNoCat(no_cat_index=1)([breeds, p_cat]))

    assert np.allclose(probabilities, [[0.45, 0.1, 0.27, 0.18], [0.02, 0.8, 0.02, 0.16]])
