"""Coat length: the breed-standard table (`coat_lengths.csv`, the one source) and how a model's answer becomes a
length.

Every label of `../shared/breeds.txt` has a row: `hairless`, `short`, `medium` or `long` for a breed whose
standard gives one coat; `several` for a breed that comes in several lengths (Manx and Cymric, Scottish Fold,
Selkirk Rex, American Curl, ...), `any` for a colour or pattern name (Calico, Tabby, Tuxedo, ...) and `none` for
"No cat". Only the first four train and judge a length.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lambda_function.datapath.model_contract import COAT_LENGTHS, CoatRule

COAT_TABLE = Path(__file__).with_name("coat_lengths.csv")
LENGTHS = COAT_LENGTHS
# The coat rule's threshold is the judged probability under which this share of the validation split's cats fall
# (`training.coat_study` weighs it: more unclear answers, fewer wrong ones).
UNCLEAR_SHARE = 0.08
# How coat answers are judged (docs/model.md): short against longer against hairless, since medium against long
# is a call even shelters disagree on.
JUDGED = {"hairless": "hairless", "short": "short", "medium": "longer", "long": "longer"}


def coat_lengths(table: Path = COAT_TABLE) -> dict[str, str]:
    """Each label's coat entry: one of LENGTHS, or `several`, `any`, `none`."""
    with table.open(encoding="utf-8", newline="") as stream:
        return {row["breed"]: row["length"] for row in csv.DictReader(stream)}


def length_index(labels: list[str], table: Path = COAT_TABLE) -> np.ndarray:
    """Per label, its length's index in LENGTHS, or -1 for a label that trains no length."""
    rule = coat_rule(labels, 0.0, table)
    return np.array([-1 if length is None else LENGTHS.index(length) for length in rule.label_lengths])


def coat_rule(labels: list[str] | tuple[str, ...], min_probability: float, table: Path = COAT_TABLE) -> CoatRule:
    """The sidecar's coat rule for a model of `labels`: each label's length from the table (None where it trains
    none), and the threshold under which a length is unclear."""
    lengths = coat_lengths(table)
    missing = [label for label in labels if label not in lengths]
    if missing:
        raise ValueError(f"{table.name} has no coat length for {missing}")
    return CoatRule(tuple(lengths[label] if lengths[label] in LENGTHS else None for label in labels), min_probability)


def breed_mass(breed_probabilities: np.ndarray, breed_lengths: np.ndarray) -> np.ndarray:
    """P(length | cat) from the breeds' probabilities: each length's share of the mass on breeds of one length."""
    mass = np.stack([breed_probabilities[:, breed_lengths == i].sum(axis=1) for i in range(len(LENGTHS))], axis=1)
    return mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-12)


def judged(length_indices: np.ndarray) -> np.ndarray:
    """LENGTHS indices -> the judged classes (0 hairless, 1 short, 2 longer)."""
    return np.minimum(length_indices, 2)


def judged_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """(n, 4) over LENGTHS -> (n, 3) over hairless, short, longer."""
    return np.concatenate([probabilities[:, :2], probabilities[:, 2:].sum(axis=1, keepdims=True)], axis=1)


def unclear_threshold(length_probabilities: np.ndarray) -> float:
    """The judged probability under which UNCLEAR_SHARE of these cats (their (n, 4) P(length | cat)) fall."""
    return float(np.quantile(judged_probabilities(length_probabilities).max(axis=1), UNCLEAR_SHARE))
