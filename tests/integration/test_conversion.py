"""The converter: four modes, each loaded by the serving runtime, with parity measured and recorded in the sidecar;
inconsistent inputs and parity below the threshold are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from conversion.convert import MIN_TOP1_AGREEMENT, ConversionError, ConversionOptions, Mode, convert, main
from lambda_function.datapath.inference import Classifier
from lambda_function.datapath.model_contract import ModelContractError, load_sidecar, sidecar_path_for
from tests.conftest import PHOTOS_DIR
from tests.support.model_files import copy_with_sidecar, edit_sidecar


@pytest.fixture(scope="session")
def keras_model_path(model_path: Path) -> Path:
    """The untrained smoke model as training would leave it: model.keras plus model.json."""
    return model_path.with_suffix(".keras")


# The defaults: the smoke model keeps about 98% of its top-1 answers under int8 (60 shared photos).
TEST_THRESHOLDS = MIN_TOP1_AGREEMENT


@pytest.fixture(scope="session")
def converted(keras_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[Mode, Path]:
    out_dir = tmp_path_factory.mktemp("converted")
    paths = {}
    for mode in Mode:
        options = ConversionOptions(
            mode=mode,
            validation_dir=PHOTOS_DIR,
            validation_images=60,
            calibration_images=60,
            latency_runs=3,
            min_top1_agreement=TEST_THRESHOLDS[mode],
        )
        paths[mode] = out_dir / f"{mode}.tflite"
        convert(keras_model_path, paths[mode], options)
    return paths


@pytest.mark.parametrize("mode", list(Mode))
def test_every_mode_converts_loads_in_the_runtime_and_records_its_parity(converted, keras_model_path, mode):
    path = converted[mode]
    classifier = Classifier(path, num_threads=1)
    card = load_sidecar(path)
    record = card.provenance["conversion"]

    assert card.labels == load_sidecar(keras_model_path).labels
    assert card.input == load_sidecar(keras_model_path).input  # float RGB 0-255 in, in every mode
    assert record["mode"] == str(mode) and record["source"] == "smoke.keras"
    assert record["size_bytes"] == path.stat().st_size
    parity = record["parity"]
    assert parity["images"] == 60 and parity["distinct_top1_labels"] > 5
    assert record["min_top1_agreement"] == TEST_THRESHOLDS[mode] <= parity["top1_agreement"] <= 1
    assert 0.9 <= parity["top5_overlap"] <= 1
    assert 0 <= parity["max_probability_difference"] < 0.2
    assert record["latency_ms"]["1_threads"] > 0 and record["latency_ms"]["2_threads"] > 0
    assert np.isclose(classifier.probabilities(np.zeros((128, 128, 3), np.uint8)).sum(), 1, atol=0.02)


def test_float_modes_follow_the_keras_model_almost_exactly(converted):
    for mode, tolerance in ((Mode.FLOAT32, 1e-4), (Mode.FLOAT16, 0.02)):
        parity = load_sidecar(converted[mode]).provenance["conversion"]["parity"]
        assert parity["top1_agreement"] == 1.0
        assert parity["max_probability_difference"] < tolerance


def tensor_types(path: Path) -> set[str]:
    return {np.dtype(t["dtype"]).name for t in Interpreter(model_path=str(path)).get_tensor_details()}


def test_quantized_modes_store_smaller_weights_of_the_expected_types(converted):
    sizes = {mode: path.stat().st_size for mode, path in converted.items()}

    assert sizes[Mode.FLOAT16] < sizes[Mode.FLOAT32]
    assert sizes[Mode.DYNAMIC_INT8] < sizes[Mode.FLOAT16]
    assert "float16" in tensor_types(converted[Mode.FLOAT16])
    assert "int8" in tensor_types(converted[Mode.DYNAMIC_INT8])
    assert load_sidecar(converted[Mode.FULL_INT8]).provenance["conversion"]["calibration_images"] == 60
    full = Interpreter(model_path=str(converted[Mode.FULL_INT8]))
    assert full.get_input_details()[0]["dtype"] == np.float32  # float edges, int8 inside
    assert sum(np.dtype(t["dtype"]) == np.int8 for t in full.get_tensor_details()) > 5


def test_parity_below_the_threshold_is_refused_and_nothing_is_written(keras_model_path, tmp_path):
    out = tmp_path / "refused.tflite"
    options = ConversionOptions(
        mode=Mode.FLOAT32, validation_dir=PHOTOS_DIR, validation_images=20, min_top1_agreement=1.01, latency_runs=1
    )

    with pytest.raises(ConversionError, match=r"top-1 agreement with the Keras model is 100.0% on 20 images"):
        convert(keras_model_path, out, options)

    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def keras_copy(keras_model_path: Path, tmp_path: Path) -> Path:
    return copy_with_sidecar(keras_model_path, tmp_path)


def test_converter_refuses_a_missing_sidecar(keras_copy, tmp_path):
    sidecar_path_for(keras_copy).unlink()
    with pytest.raises(ModelContractError, match=r"sidecar .* is missing"):
        convert(keras_copy, tmp_path / "out.tflite", ConversionOptions(mode=Mode.FLOAT32))


def test_converter_refuses_a_malformed_sidecar(keras_copy, tmp_path):
    sidecar_path_for(keras_copy).write_text('{"format_version": 1, "labels": "Siamese"}')
    with pytest.raises(ModelContractError, match="malformed"):
        convert(keras_copy, tmp_path / "out.tflite", ConversionOptions(mode=Mode.FLOAT32))


def test_converter_refuses_a_label_count_that_disagrees_with_the_model(keras_copy, tmp_path):
    labels = ["Siamese", "Persian", "No cat"]
    edit_sidecar(
        keras_copy, labels=labels, **{"coat_rule.lengths": {"Siamese": "short", "Persian": "long", "No cat": None}}
    )
    with pytest.raises(ModelContractError, match="the sidecar lists 3 labels, the model outputs 68"):
        convert(keras_copy, tmp_path / "out.tflite", ConversionOptions(mode=Mode.FLOAT32))


def test_converter_refuses_an_input_shape_that_disagrees_with_the_model(keras_copy, tmp_path):
    edit_sidecar(keras_copy, **{"input.height_px": 380, "input.width_px": 380})
    with pytest.raises(
        ModelContractError, match=r"the sidecar says input \(380, 380, 3\), the model takes \(128, 128, 3\)"
    ):
        convert(keras_copy, tmp_path / "out.tflite", ConversionOptions(mode=Mode.FLOAT32))


def test_cli_reports_refusals_without_a_traceback(keras_copy, tmp_path, capsys):
    sidecar_path_for(keras_copy).unlink()

    assert main([str(keras_copy), "--out", str(tmp_path / "out.tflite"), "--no-validate"]) == 2

    assert capsys.readouterr().err.startswith("error: model sidecar")


def test_cli_converts_and_reports_parity(keras_model_path, tmp_path, capsys):
    out = tmp_path / "cli.tflite"

    status = main(
        [
            str(keras_model_path),
            "--out",
            str(out),
            "--mode",
            "float16",
            "--validation-dir",
            str(PHOTOS_DIR),
            "--validation-images",
            "10",
        ]
    )

    assert status == 0 and out.is_file() and sidecar_path_for(out).is_file()
    assert "top-1 agreement 100.0%" in capsys.readouterr().out


def test_full_int8_without_representative_images_is_refused():
    with pytest.raises(ConversionError, match="representative images"):
        ConversionOptions(mode=Mode.FULL_INT8)
