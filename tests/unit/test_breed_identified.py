"""`breed_identified`: true when the model names a breed with enough confidence, false for a cat whose breed it
cannot name, null when there is no cat or the model has no breed rule. The rule reads P(breed | cat), the top
breed's share of the breeds' probability, so a photo that is half "No cat" can still have a clear breed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lambda_function.datapath.inference import Classifier, breed_identified
from lambda_function.datapath.model_contract import BreedRule, ModelCard, load_sidecar
from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from tests.conftest import CAT_PHOTOS
from tests.support.model_files import copy_with_sidecar, edit_sidecar

LABELS = ("Bengal", "No cat", "Persian", "Siamese")


def card_with(rule: BreedRule | None, model_path: Path) -> ModelCard:
    return replace(load_sidecar(model_path), labels=LABELS, breed_rule=rule)


def test_the_rule_reads_the_top_breeds_share_of_the_breeds(model_path):
    card = card_with(BreedRule(min_probability=0.6), model_path)
    # P(cat) = 0.6, of which Persian has 0.42: P(Persian | cat) = 0.7, over the threshold though 0.42 is not.
    half_cat = np.array([0.05, 0.40, 0.42, 0.13])
    # A cat for sure, split between two breeds: P(top breed | cat) = 0.5.
    torn = np.array([0.5, 0.0, 0.5, 0.0])

    assert breed_identified(half_cat, card) is True
    assert breed_identified(torn, card) is False


def test_no_cat_on_top_has_no_breed_to_identify(model_path):
    card = card_with(BreedRule(min_probability=0.0), model_path)

    assert breed_identified(np.array([0.0, 0.55, 0.45, 0.0]), card) is None


def test_a_model_without_a_rule_cannot_tell(model_path):
    assert breed_identified(np.array([0.97, 0.01, 0.01, 0.01]), card_with(None, model_path)) is None


@pytest.mark.parametrize(("threshold", "expected"), [(0.0, True), (1.0, False), (None, None)])
def test_the_classifier_applies_its_sidecars_rule(model_path, tmp_path, threshold, expected):
    copy = copy_with_sidecar(model_path, tmp_path)
    edit_sidecar(copy, breed_rule=None if threshold is None else {"min_probability": threshold})
    classifier = Classifier(copy, num_threads=1)
    limits = DecodeLimits(max_pixels=50_000_000)
    answers = [
        classifier.classify(prepare_image(p.read_bytes(), classifier.input_size_px, limits), top_k=3)
        for p in CAT_PHOTOS[:6]
    ]

    detected = [answer for answer in answers if answer.cat_detected]
    assert detected, "the smoke model found no cat in six cat photos"
    assert {answer.breed_identified for answer in detected} == {expected}
    assert all(answer.breed_identified is None for answer in answers if not answer.cat_detected)
