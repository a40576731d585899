"""A model is served only with a sidecar that agrees with it; anything else fails at load, with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambda_function.datapath.inference import Classifier
from lambda_function.datapath.model_contract import ModelContractError, load_sidecar, sidecar_path_for
from tests.support.model_files import copy_with_sidecar, edit_sidecar


@pytest.fixture
def model_copy(model_path: Path, tmp_path: Path) -> Path:
    return copy_with_sidecar(model_path, tmp_path)


def test_sidecar_records_what_serving_and_users_need(model_path):
    card = json.loads(sidecar_path_for(model_path).read_text())

    assert card["format_version"] == 1
    assert card["labels"][0] == "Abyssinian" and len(card["labels"]) == 68
    assert card["input"] == {
        "height_px": 128,
        "width_px": 128,
        "channels": 3,
        "dtype": "float32",
        "value_range": [0.0, 255.0],
        "color": "RGB",
    }
    assert card["name"] and card["version"]
    assert {"created_at", "created_by"} <= set(card["provenance"])
    assert {"mode", "converter", "source", "parity", "size_bytes"} <= set(card["provenance"]["conversion"])


def test_a_consistent_model_loads(model_copy):
    classifier = Classifier(model_copy, num_threads=1)

    assert classifier.input_size_px == (128, 128)
    assert classifier.card == load_sidecar(model_copy)


def test_missing_model_file_names_the_setting(tmp_path):
    with pytest.raises(ModelContractError, match="MODEL_PATH"):
        Classifier(tmp_path / "absent.tflite", num_threads=1)


def test_missing_sidecar_is_refused(model_copy):
    sidecar_path_for(model_copy).unlink()

    with pytest.raises(ModelContractError, match=r"sidecar .* is missing"):
        Classifier(model_copy, num_threads=1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{ not json", "not valid JSON"),
        ("[]", "top level must be an object"),
        ('{"format_version": 1}', "malformed"),
        ('{"format_version": 99, "labels": ["a"]}', "format_version must be 1"),
    ],
)
def test_malformed_sidecar_is_refused(model_copy, content, message):
    sidecar_path_for(model_copy).write_text(content)

    with pytest.raises(ModelContractError, match=message):
        Classifier(model_copy, num_threads=1)


def test_label_count_that_disagrees_with_the_output_is_refused(model_copy):
    sidecar = json.loads(sidecar_path_for(model_copy).read_text())
    labels = sidecar["labels"]
    lengths = {label: sidecar["coat_rule"]["lengths"][label] for label in labels[:-1]}
    edit_sidecar(model_copy, labels=labels[:-1], **{"coat_rule.lengths": lengths})

    with pytest.raises(ModelContractError, match="67 labels, the model outputs 68 classes"):
        Classifier(model_copy, num_threads=1)


def test_input_shape_that_disagrees_with_the_model_is_refused(model_copy):
    edit_sidecar(model_copy, **{"input.height_px": 380, "input.width_px": 380})

    with pytest.raises(ModelContractError, match=r"input shape \(1, 380, 380, 3\), the model has \(1, 128, 128, 3\)"):
        Classifier(model_copy, num_threads=1)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("labels", ["a", "a"], "must not repeat"),
        ("labels", [], "non-empty list"),
        ("input.dtype", "float64", "not one of"),
        ("input.height_px", -3, "positive integer"),
        ("input.value_range", [255, 0], "increasing"),
        ("name", "", "non-empty string"),
        ("breed_rule", {"min_probability": 1.5}, "from 0 to 1"),
        ("breed_rule", {"min_probability": True}, "from 0 to 1"),
        ("breed_rule", "high", "must be an object"),
    ],
)
def test_invalid_fields_are_refused(model_copy, key, value, message):
    edit_sidecar(model_copy, **{key: value})

    with pytest.raises(ModelContractError, match=message):
        load_sidecar(model_copy)


def test_a_file_that_is_not_a_tflite_model_is_refused(model_copy):
    model_copy.write_bytes(b"this is not a flatbuffer")

    with pytest.raises(ModelContractError, match="not a loadable TFLite model"):
        Classifier(model_copy, num_threads=1)


def test_on_lambda_the_thread_count_follows_the_memory_setting(monkeypatch):
    from lambda_function import settings

    monkeypatch.setattr(settings, "available_cpus", lambda: 2)  # Lambda shows 2 cores at every memory size

    assert settings.Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048"}).inference_threads == 1
    assert settings.Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3538"}).inference_threads == 2
    assert settings.Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "10240"}).inference_threads == 2
    assert settings.Settings.from_env({}).inference_threads == 2
    assert (
        settings.Settings.from_env(
            {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048", "INFERENCE_THREADS": "2"}
        ).inference_threads
        == 2
    )


def test_server_settings_are_read_from_the_environment_and_refuse_a_shutdown_that_would_cut_requests():
    from lambda_function import settings

    read = settings.Settings.from_env(
        {"SERVER_WORKERS": "3", "SERVER_MAX_REQUEST_BYTES": "1000", "SERVER_REQUEST_DEADLINE_S": "2.5"}
    ).server

    assert (read.workers, read.max_request_bytes, read.request_deadline_s) == (3, 1000, 2.5)
    with pytest.raises(settings.SettingsError, match="SERVER_GRACEFUL_TIMEOUT_S"):
        settings.Settings.from_env({"SERVER_DRAIN_S": "10", "SERVER_GRACEFUL_TIMEOUT_S": "20"})
    with pytest.raises(settings.SettingsError, match="SERVER_WORKERS"):
        settings.Settings.from_env({"SERVER_WORKERS": "0"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FETCH_TOTAL_TIMEOUT_S": "nan"}, "finite"),
        ({"FETCH_TOTAL_TIMEOUT_S": "inf"}, "finite"),
        ({"MAX_IMAGE_PIXELS": "1e400"}, "int"),
        ({"FETCH_CONNECT_TIMEOUT_S": "12", "FETCH_TOTAL_TIMEOUT_S": "10"}, "must not exceed"),
        ({"FETCH_CA_BUNDLE": "/nonexistent/ca.pem"}, "not a file"),
        ({"SERVER_THREADS_PER_WORKER": "8", "SERVER_MAX_URL_FETCHES": "8"}, "SERVER_MAX_URL_FETCHES"),
        ({"SERVER_MAX_URL_FETCHES": "0"}, "SERVER_MAX_URL_FETCHES"),
    ],
)
def test_settings_refuse_values_the_service_cannot_run_with(env, message):
    from lambda_function import settings

    with pytest.raises(settings.SettingsError, match=message):
        settings.Settings.from_env(env)


def test_an_empty_model_path_means_the_default_model():
    from lambda_function import settings

    assert settings.Settings.from_env({"MODEL_PATH": ""}).model_path == settings.DEFAULT_MODEL_PATH


def test_a_coat_rule_must_give_every_label_a_known_length_or_none(model_copy):
    sidecar = json.loads(sidecar_path_for(model_copy).read_text())
    lengths = sidecar["coat_rule"]["lengths"]

    edit_sidecar(model_copy, **{"coat_rule.lengths": {**lengths, "Persian": "fluffy"}})
    with pytest.raises(ModelContractError, match=r"'coat_rule\.lengths' of 'Persian' must be one of"):
        Classifier(model_copy, num_threads=1)
    edit_sidecar(model_copy, **{"coat_rule.lengths": {k: v for k, v in lengths.items() if k != "Persian"}})
    with pytest.raises(ModelContractError, match="must name every label"):
        Classifier(model_copy, num_threads=1)
