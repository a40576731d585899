"""The breed-standard coat table: the one source of each label's coat length (training/coat_lengths.csv)."""

from __future__ import annotations

import csv

from lambda_function.datapath.model_contract import COAT_LENGTHS
from tests.conftest import SHARED_DIR
from training.coat import COAT_TABLE, coat_lengths, coat_rule

BREEDS_TXT = [line for line in (SHARED_DIR / "breeds.txt").read_text(encoding="utf-8").splitlines() if line]


def test_every_label_of_the_dataset_has_one_row_with_a_known_entry_and_its_source():
    with COAT_TABLE.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))

    assert sorted(row["breed"] for row in rows) == sorted(BREEDS_TXT)
    assert {row["length"] for row in rows} <= {*COAT_LENGTHS, "several", "any", "none"}
    assert all(row["source"].strip() for row in rows)


def test_breeds_of_several_lengths_colours_and_no_cat_train_no_length():
    lengths = coat_lengths()
    several = {"Manx", "Scottish Fold", "Selkirk Rex", "American Curl", "Japanese Bobtail", "LaPerm", "Munchkin"}

    assert {name for name, length in lengths.items() if length == "several"} >= several
    assert {lengths[name] for name in ("Calico", "Tabby", "Tuxedo", "Tortoiseshell")} == {"any"}
    rule = coat_rule(BREEDS_TXT, 0.5)
    untrained = {name for name, length in zip(BREEDS_TXT, rule.label_lengths, strict=True) if length is None}
    assert untrained == {name for name, length in lengths.items() if length in ("several", "any", "none")}


def test_the_shelters_own_classes_have_their_own_lengths():
    lengths = coat_lengths()

    assert (lengths["Domestic Short Hair"], lengths["Domestic Medium Hair"], lengths["Domestic Long Hair"]) == (
        "short",
        "medium",
        "long",
    )
    assert lengths["Sphynx - Hairless Cat"] == lengths["Canadian Hairless"] == "hairless"
