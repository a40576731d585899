"""Prepare, train, evaluate and convert, end to end on CPU, on a small synthetic dataset in the Kaggle layouts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conversion.convert import main as convert_main
from lambda_function.datapath.model_contract import load_sidecar
from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from lambda_function.datapath.service import BreedService
from lambda_function.settings import DEFAULT_MAX_IMAGE_PIXELS, Settings
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS
from tests.support.synthetic_dataset import BREEDS, make_synthetic_dataset
from training import evaluate, prepare_dataset, train

SIZE_PX = 96


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def prepared(dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    status = prepare_dataset.main(
        [
            "--cats",
            str(dataset.cats_dir),
            "--no-cat",
            str(dataset.rooms_dir),
            "--out",
            str(out),
            "--size",
            str(SIZE_PX),
            "--workers",
            "2",
            "--max-per-class",
            "1000",
        ]
    )
    assert status == 0
    return out


@pytest.fixture(scope="module")
def run_dir(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    status = train.main(
        [
            "--data",
            str(prepared),
            "--run",
            str(run),
            "--backbone",
            "efficientnet-lite0",
            "--head-epochs",
            "3",
            "--fine-tune-epochs",
            "1",
            "--batch-size",
            "16",
            "--head-lr",
            "3e-3",
            "--cache",
            "memory",
        ]
    )
    assert status == 0
    return run


def manifest(prepared: Path) -> list[dict[str, str]]:
    with (prepared / "manifest.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_prepare_counts_every_dropped_file_exactly(prepared, dataset):
    report = json.loads((prepared / "report.json").read_text())

    assert report["dropped"] == {
        "unreadable": dataset.corrupt_files,
        "too_small": dataset.too_small_files,
        "duplicates": dataset.duplicate_files,
    }
    csv_check = report["sources"]["cats_csv"][dataset.cats_dir.name]
    assert csv_check["cats_csv"] == "present" and csv_check["folder_breed_differs_from_csv"] == 0
    assert report["sources"]["no_cat_folders"] == {"rooms/Bathroom": 20, "rooms/Kitchen": 21}
    for label in (*BREEDS, "No cat"):
        counts = report["classes"][label]
        assert counts["train"] + counts["val"] + counts["test"] == dataset.images_per_class
        assert (counts["train"], counts["val"], counts["test"]) == (32, 4, 4)
    for name in ("manifest.csv", "report.md", "class_distribution.png"):
        assert (prepared / name).is_file()
    assert not (prepared / ".staging").exists()


def test_no_image_is_in_two_splits(prepared):
    rows = manifest(prepared)
    by_split = {split: {row["sha256"] for row in rows if row["split"] == split} for split in ("train", "val", "test")}

    assert not by_split["test"] & by_split["train"] and not by_split["val"] & by_split["train"]
    assert not by_split["test"] & by_split["val"]
    assert len({row["sha256"] for row in rows}) == len(rows)
    assert all((prepared / row["file"]).is_file() for row in rows)


def test_preparing_twice_into_the_same_folder_is_refused(prepared, dataset, capsys):
    status = prepare_dataset.main(["--cats", str(dataset.cats_dir), "--out", str(prepared), "--size", str(SIZE_PX)])

    assert status == 2
    assert "already holds a prepared dataset" in capsys.readouterr().err


def test_training_writes_a_model_its_sidecar_and_curves_and_beats_chance(run_dir, prepared):
    card = load_sidecar(run_dir / "model.keras")

    assert card.labels == ("Abyssinian", "Bengal", "No cat", "Siamese")
    assert (card.input.height_px, card.input.width_px) == (SIZE_PX, SIZE_PX)
    assert (
        card.provenance["data_manifest_sha256"] == json.loads((prepared / "report.json").read_text())["manifest_sha256"]
    )
    assert card.metrics["val_accuracy"] >= 0.75  # chance is 0.25
    assert card.metrics["val_temperature"] > 0  # fitted on validation and folded in, as in the head-only recipe
    for name in ("curves.png", "history.csv", "tensorboard"):
        assert (run_dir / name).exists()


def test_evaluate_and_convert_and_serve_the_trained_model(run_dir, prepared, tmp_path, dataset):
    labels = list(load_sidecar(run_dir / "model.keras").labels)
    images, truth = evaluate.split_images(prepared, "test", labels)
    keras_metrics = evaluate.evaluate(run_dir / "model.keras", images, truth, tmp_path / "keras-eval", prepared=True)
    tflite = tmp_path / "model.tflite"
    assert (
        convert_main(
            [
                str(run_dir / "model.keras"),
                "--out",
                str(tflite),
                "--mode",
                "float32",
                "--validation-dir",
                str(prepared / "val"),
            ]
        )
        == 0
    )
    tflite_metrics = evaluate.evaluate(tflite, images, truth, tmp_path / "tflite-eval", prepared=True)

    assert keras_metrics["top1_accuracy"] >= 0.75
    assert tflite_metrics["top1_accuracy"] == keras_metrics["top1_accuracy"]
    assert set(keras_metrics["per_class"]) == {"Abyssinian", "Bengal", "No cat", "Siamese"}
    assert (tmp_path / "keras-eval" / "confusion_matrix.png").is_file()
    assert (tmp_path / "keras-eval" / "reliability.png").is_file()
    service = BreedService(Settings(model_path=tflite, inference_threads=1))
    photo = dataset.cats_dir / "images" / "Siamese" / "10080_0.jpg"
    answer = service.classify_bytes(photo.read_bytes(), top_k=3)
    assert answer.predictions[0].breed == "Siamese" and answer.cat_detected is True


def test_training_and_serving_turn_a_photo_into_the_same_input_array(tmp_path):
    import shutil

    photos = [CAT_PHOTOS[0], CAT_PHOTOS[25], DOG_PHOTOS[0]]
    for photo in photos:
        target = tmp_path / "cats" / "images" / "Persian" / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, target)
    out = tmp_path / "prepared"
    assert (
        prepare_dataset.main(
            [
                "--cats",
                str(tmp_path / "cats"),
                "--out",
                str(out),
                "--size",
                "224",
                "--workers",
                "1",
                "--split",
                "34/33/33",
            ]
        )
        == 0
    )

    for row in manifest(out):
        training_input = train.decode_prepared(str(out / row["file"])).numpy()
        serving_input = prepare_image(
            Path(row["source"]).read_bytes(),
            (224, 224),
            DecodeLimits(max_pixels=DEFAULT_MAX_IMAGE_PIXELS, jpeg_draft=True),
        )
        assert training_input.dtype == np.float32 and training_input.shape == (224, 224, 3)
        assert np.array_equal(training_input, serving_input.astype(np.float32))


def test_the_full_b4_configuration_builds_and_takes_a_training_step(tmp_path):
    config = train.TrainConfig(data_dir=tmp_path, run_dir=tmp_path, backbone="efficientnetb4", weights=None)
    model = train.build_model(68, 380, config)
    train.compile_model(model, config.head_learning_rate, config)
    model.run_eagerly = True  # the same step without tracing B4's graph: 14 s instead of 100 on 2 CPUs
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 380, 380, 3)).astype(np.float32)
    labels = np.eye(68, dtype=np.float32)[[3, 40]]

    logs = model.train_on_batch(images, labels, return_dict=True)

    assert model.input_shape == (None, 380, 380, 3) and model.output_shape == (None, 68)
    assert np.isfinite(logs["loss"])


def test_every_training_setting_is_a_flag_with_the_config_default_and_is_validated(tmp_path):
    parsed = train.parse_args(["--data", str(tmp_path), "--run", str(tmp_path / "run")])

    assert parsed == train.TrainConfig(data_dir=tmp_path, run_dir=tmp_path / "run")
    assert train.parse_args(["--data", ".", "--run", ".", "--head-only"]).fine_tune_epochs == 0
    assert train.parse_args(["--data", ".", "--run", ".", "--no-flip-features"]).flip_features is False
    refused = {"--dropout": "1.0", "--label-smoothing": "-0.1", "--patience": "0", "--head-lr": "0"}
    messages = {"--dropout": "--dropout", "--label-smoothing": "--label-smoothing", "--patience": "--patience"}
    for flag, value in refused.items():
        with pytest.raises(ValueError, match=messages.get(flag, "learning rates")):
            train.parse_args(["--data", ".", "--run", ".", flag, value])
