"""Photos of a cleaner source can count for more: `--origin-weights` of the head-only recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.head_only import LearnerSettings, sample_weights
from training.train import TrainConfig, parse_args


def test_the_flag_reads_origin_weight_pairs():
    config = parse_args(["--data", "d", "--run", "r", "--head-only", "--origin-weights", "cat-breeds-12=5,web=0.5"])

    assert config.origin_weight_map() == {"cat-breeds-12": 5.0, "web": 0.5}
    assert LearnerSettings.from_config(config).origin_weights == (("cat-breeds-12", 5.0), ("web", 0.5))


@pytest.mark.parametrize("value", ["cat-breeds-12", "=3", "cat-breeds-12=0", "cat-breeds-12=many"])
def test_a_malformed_or_non_positive_weight_is_refused(value):
    with pytest.raises(ValueError, match="--origin-weights"):
        TrainConfig(data_dir=Path("d"), run_dir=Path("r"), head_only=True, origin_weights=value)


def test_the_two_phase_recipe_refuses_origin_weights():
    with pytest.raises(ValueError, match="--head-only"):
        TrainConfig(data_dir=Path("d"), run_dir=Path("r"), origin_weights="cat-breeds-12=5")


def test_each_photo_weighs_its_origins_weight_scaled_to_a_mean_of_one():
    origins = (np.array(["oxford", "web", "web", "web"]), np.array(["oxford", "web"]))
    settings = LearnerSettings(origin_weights=(("oxford", 5.0),))

    train, val = sample_weights(np.array([0, 1, 1, 1]), 2, settings, origins)

    assert train == pytest.approx(np.array([5, 1, 1, 1]) / 2)
    assert val == pytest.approx(np.array([5, 1]) / 3)


def test_without_origin_or_class_weights_every_photo_weighs_the_same():
    assert sample_weights(np.array([0, 1]), 2, LearnerSettings(), None) == (None, None)


def test_class_weights_multiply_origin_weights():
    origins = (np.array(["oxford", "web", "web"]), np.array(["web"]))
    settings = LearnerSettings(origin_weights=(("oxford", 2.0),), class_weights=True)

    train, _ = sample_weights(np.array([0, 1, 1]), 2, settings, origins)

    # class 0 has one photo, class 1 two: inverse-frequency weights 1.5 and 0.75, times the origin weights
    expected = np.array([1.5 * 2, 0.75, 0.75])
    assert train == pytest.approx(expected / expected.mean())
