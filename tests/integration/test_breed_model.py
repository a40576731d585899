"""The default 34-breed model: what it serves, that its recorded figures are true, and the recipe that trains it.

The recipe test runs the whole CPU path of `make breed-model` (prepare from both photo sets, head-only training
with the cat gate, temperature and breed rule, conversion, evaluation through the serving runtime) on a small slice
of the two shared training sets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conversion.convert import main as convert_main
from lambda_function.datapath.inference import Classifier
from lambda_function.datapath.model_contract import BreedRule, load_sidecar
from tests.conftest import EVENTS_DIR, PHOTOS_DIR, REPO_DIR, SHARED_DIR
from tests.support.cli import environment_without_test_model
from training import coat_rule, evaluate, prepare_dataset, train

DEFAULT_MODEL = REPO_DIR / "models" / "cat-breeds-34.tflite"
OXFORD_SET = SHARED_DIR / "datasets" / "cat-breeds-12"
WEB_SET = SHARED_DIR / "datasets" / "cat-breeds-web"
SLICE = {OXFORD_SET: ("Bengal", "Maine Coon", "Persian"), WEB_SET: ("Siamese",)}  # 24 photos of each breed
SLICE_BREEDS = tuple(sorted(breed for breeds in SLICE.values() for breed in breeds))
BREEDS_TXT = (SHARED_DIR / "breeds.txt").read_text(encoding="utf-8").splitlines()


def test_the_default_model_is_the_committed_34_breed_model_with_a_breed_rule():
    from lambda_function.settings import Settings

    card = load_sidecar(DEFAULT_MODEL)
    breeds_of_both_sets = {p.name for dataset in SLICE for p in (dataset / "images").iterdir() if p.is_dir()}

    assert Settings.from_env({}).model_path == DEFAULT_MODEL
    assert len(card.labels) == 35 and "No cat" in card.labels
    assert set(card.labels) <= set(BREEDS_TXT)
    assert set(card.labels) - {"No cat"} == breeds_of_both_sets
    assert card.breed_rule is not None and 0 < card.breed_rule.min_probability < 1
    assert card.coat_rule is not None and 0 < card.coat_rule.min_probability < 1


def test_the_default_model_gives_the_coat_length_of_held_back_cats_within_its_bounds():
    """Judged as short against longer (medium or long) against hairless, over the answers that give a length."""
    recorded = load_sidecar(DEFAULT_MODEL).metrics["held_back_test"]

    assert recorded["coat_right_of_answered"] >= 0.93
    assert recorded["coat_unclear"] <= 0.10
    assert recorded["coat_cats"] >= 600


def test_breeds_route_lists_exactly_the_sidecar_labels(tmp_path):
    event = json.loads((EVENTS_DIR / "health-httpapi.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/breeds"
    event["routeKey"] = "GET /breeds"
    (tmp_path / "breeds.json").write_text(json.dumps(event))

    completed = subprocess.run(
        [sys.executable, "-m", "lambda_function", "invoke", str(tmp_path / "breeds.json")],
        cwd=REPO_DIR,
        env=environment_without_test_model(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    body = json.loads(json.loads(completed.stdout)["body"])
    assert body["breeds"] == list(load_sidecar(DEFAULT_MODEL).labels)
    assert all(label in BREEDS_TXT for label in body["breeds"])


def test_the_figures_in_the_sidecar_are_what_the_committed_model_measures(tmp_path):
    recorded = load_sidecar(DEFAULT_MODEL).metrics["shared_photos"]
    images, truth = evaluate.labelled_photos(PHOTOS_DIR, list(load_sidecar(DEFAULT_MODEL).labels), "No cat")

    measured = evaluate.evaluate(DEFAULT_MODEL, images, truth, tmp_path, prepared=False)

    figures = ("cat_breed_top1", "cat_breed_top3", "cats_detected", "not_cats_answered_no_cat")
    for key in ("images", *figures, "cats_breed_identified", "identified_breed_top1", "coat_right_of_answered"):
        assert measured[key] == recorded[key], key
    assert measured["coat_confusion"] == recorded["coat_confusion"]
    assert measured["per_class"] == recorded["per_class"]


def test_photo_labels_follow_folders_and_oxford_file_names():
    labels = ["British Shorthair", "Maine Coon", "No cat", "Sphynx - Hairless Cat"]

    assert evaluate.photo_label(Path("x/Maine Coon/123.jpg"), labels) == "Maine Coon"
    assert evaluate.photo_label(Path("cats/British_Shorthair_10.jpg"), labels) == "British Shorthair"
    assert evaluate.photo_label(Path("cats/Sphynx_127.jpg"), labels) == "Sphynx - Hairless Cat"
    assert evaluate.photo_label(Path("dogs/american_bulldog_106.jpg"), labels) is None


def test_calibration_error_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    confident_and_right = evaluate.calibration_bins(np.full(10, 0.99), np.ones(10, dtype=bool))
    confident_and_half_wrong = evaluate.calibration_bins(np.full(10, 0.95), np.arange(10) % 2 == 0)

    assert confident_and_right["expected_calibration_error"] == pytest.approx(0.01)
    assert confident_and_half_wrong["expected_calibration_error"] == pytest.approx(0.45)


@pytest.fixture(scope="module")
def training_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 photos of each of 4 breeds from the two shared training sets (each in a folder named as its set, the
    origin the prepared dataset records) and 40 "No cat" photos (rooms and other things)."""
    root = tmp_path_factory.mktemp("slice")
    for dataset, breeds in SLICE.items():
        for breed in breeds:
            target = root / dataset.name / "images" / breed
            target.mkdir(parents=True)
            for photo in sorted((dataset / "images" / breed).glob("*.jpg"))[:24]:
                shutil.copy(photo, target / photo.name)
    for folder in ("rooms/Kitchen", "rooms/Bedroom", "objects"):
        target = root / "no-cat" / folder
        target.mkdir(parents=True)
        for photo in sorted((OXFORD_SET / "no-cat" / folder).glob("*.jpg"))[: 20 if folder == "objects" else 10]:
            shutil.copy(photo, target / photo.name)
    return root


@pytest.fixture(scope="module")
def head_only_run(training_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    data, run = tmp_path_factory.mktemp("prepared"), tmp_path_factory.mktemp("run")
    cats = [argument for dataset in SLICE for argument in ("--cats", str(training_slice / dataset.name / "images"))]
    prepare = [*cats, "--no-cat", str(training_slice / "no-cat")]
    assert prepare_dataset.main([*prepare, "--out", str(data), "--size", "224", "--split", "60/20/20"]) == 0
    assert train.main(head_only_arguments(data, run)) == 0
    return {"data": data, "run": run}


def head_only_arguments(data: Path, run: Path) -> list[str]:
    return [
        *("--data", str(data), "--run", str(run), "--backbone", "efficientnet-lite0", "--head-only", "--cat-gate"),
        *("--hidden-units", "0", "--head-epochs", "60", "--patience", "10", "--batch-size", "16"),
        *("--min-breed-probability", "0.5", "--origin-weights", "cat-breeds-12=5"),
    ]


def test_prepare_takes_a_folder_of_folders_and_several_no_cat_folders(head_only_run):
    report = json.loads((head_only_run["data"] / "report.json").read_text())

    assert report["sources"]["cats_csv"] == {dataset.name: {"cats_csv": "absent"} for dataset in SLICE}
    assert report["sources"]["by_origin"] == {"cat-breeds-12": 24 * 3, "cat-breeds-web": 24, "no-cat": 40}
    assert report["sources"]["no_cat_folders"] == {
        "no-cat/objects": 20,
        "no-cat/rooms/Bedroom": 10,
        "no-cat/rooms/Kitchen": 10,
    }
    assert set(report["classes"]) == {*SLICE_BREEDS, "No cat"}


def test_head_only_recipe_trains_a_gated_model_well_above_chance(head_only_run, tmp_path, capsys):
    run, data = head_only_run["run"], head_only_run["data"]
    card = load_sidecar(run / "model.keras")
    tflite = tmp_path / "slice.tflite"
    convert = [str(run / "model.keras"), "--out", str(tflite), "--validation-dir", str(data / "val")]
    assert convert_main(convert) == 0
    capsys.readouterr()

    assert evaluate.main([str(tflite), "--data", str(data), "--record", "held_back_test"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert card.labels == ("Bengal", "Maine Coon", "No cat", "Persian", "Siamese")
    assert card.provenance["config"]["head_only"] is True and card.provenance["config"]["cat_gate"] is True
    assert (run / "features-train.npz").is_file()
    assert summary["top1_accuracy"] >= 0.6  # chance is 0.2
    assert summary["not_cats_answered_no_cat"] >= 0.75 and summary["cats_detected"] >= 0.75
    assert load_sidecar(tflite).metrics["held_back_test"]["top1_accuracy"] == summary["top1_accuracy"]
    classifier = Classifier(tflite, num_threads=1)
    assert classifier.card.labels == card.labels
    # The rule travels from training through conversion; the temperature was fitted on validation.
    assert card.breed_rule == classifier.card.breed_rule == BreedRule(min_probability=0.5)
    assert card.metrics["val_temperature"] > 0
    assert 0 < summary["cats_breed_identified"] <= summary["cats_detected"]
    assert 0 <= summary["identified_breed_top1"] <= 1


def test_the_coat_rule_is_fitted_on_validation_and_read_by_the_runtime(head_only_run, tmp_path, capsys):
    run, data = head_only_run["run"], head_only_run["data"]
    tflite = tmp_path / "slice.tflite"
    assert convert_main([str(run / "model.keras"), "--out", str(tflite), "--validation-dir", str(data / "val")]) == 0

    assert coat_rule.main([str(tflite), "--data", str(data)]) == 0
    written = json.loads(capsys.readouterr().out.splitlines()[-1])

    rule = Classifier(tflite, num_threads=1).card.coat_rule
    assert rule is not None and rule.min_probability == written["min_probability"]
    lengths = dict(zip(load_sidecar(tflite).labels, rule.label_lengths, strict=True))
    assert lengths == {"Bengal": "short", "Maine Coon": "long", "No cat": None, "Persian": "long", "Siamese": "short"}
    assert evaluate.main([str(tflite), "--data", str(data)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["coat_cats"] > 0 and summary["coat_right_of_answered"] >= 0.6  # chance is about a half


def test_evaluation_scores_one_photo_set_apart(head_only_run, tmp_path, capsys):
    run, data = head_only_run["run"], head_only_run["data"]
    tflite = tmp_path / "slice.tflite"
    assert convert_main([str(run / "model.keras"), "--out", str(tflite), "--validation-dir", str(data / "val")]) == 0
    capsys.readouterr()
    web_test_photos = [
        row
        for row in prepare_dataset.read_manifest(data)
        if row["split"] == "test" and row["origin"] == "cat-breeds-web"
    ]

    assert evaluate.main([str(tflite), "--data", str(data), "--origin", "cat-breeds-web"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == summary["cats"] == len(web_test_photos) > 0


def test_head_only_rerun_gives_the_same_metrics(head_only_run, tmp_path):
    rerun = tmp_path / "rerun"  # a fresh run folder: the features are computed again, not read from the cache

    assert train.main(head_only_arguments(head_only_run["data"], rerun)) == 0

    first, second = load_sidecar(head_only_run["run"] / "model.keras"), load_sidecar(rerun / "model.keras")
    assert first.metrics == second.metrics
