"""Local use without AWS or Docker: the predict and invoke commands, and the local HTTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lambda_function.cli import main
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, EVENTS_DIR, REPO_DIR
from tests.support import http_server


def test_predict_prints_a_readable_top_k_table(service_env, service, capsys):
    photo = CAT_PHOTOS[0]
    expected = service.classify_bytes(photo.read_bytes(), 3).predictions

    assert main(["predict", str(photo), "--top-k", "3"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert photo.name in lines[0] and "untrained-smoke-model" in lines[0]
    assert len(lines) == 4
    for rank, (line, prediction) in enumerate(zip(lines[1:], expected, strict=True), start=1):
        assert line.lstrip().startswith(f"{rank}. {prediction.breed}")
        assert f"{prediction.probability:.2%}" in line


def test_predict_json_matches_the_api_answer_for_a_url(service_env, service, capsys):
    data = DOG_PHOTOS[0].read_bytes()
    with http_server.running({"/dog.jpg": http_server.serve_bytes(data)}) as host:
        assert main(["predict", host.url("/dog.jpg"), "--json"]) == 0

    answer = json.loads(capsys.readouterr().out)
    assert [p["breed"] for p in answer["predictions"]] == [p.breed for p in service.classify_bytes(data, 5).predictions]
    assert answer["model"]["name"] == "untrained-smoke-model"


def test_predict_reports_client_errors_without_a_traceback(service_env, tmp_path, capsys):
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")

    assert main(["predict", str(text_file)]) == 1
    assert main(["predict", str(tmp_path / "missing.jpg")]) == 1

    err = capsys.readouterr().err
    assert "unsupported_image" in err and "cannot read" in err and "Traceback" not in err


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambda_function", *args],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("event", "status"),
    [("predict-base64.json", 200), ("bad-request.json", 400), ("health-httpapi.json", 200), ("page-httpapi.json", 200)],
)
def test_invoke_runs_the_handler_on_an_event_file_like_sam_local_invoke(service_env, event, status):
    completed = run_cli("invoke", str(EVENTS_DIR / event), env=service_env)

    assert completed.returncode == 0, completed.stderr[-2000:]
    response = json.loads(completed.stdout)  # stdout holds the response alone; logs and metrics go to stderr
    assert response["statusCode"] == status


@pytest.mark.parametrize("event", ["predict-url.json", "predict-url-httpapi.json"])
def test_invoke_url_events_fetch_through_the_safe_fetcher(service_env, tmp_path, event):
    # The committed events point at a public photo; here the same event points at a loopback copy.
    payload = json.loads((EVENTS_DIR / event).read_text())
    with http_server.running({"/cat.jpg": http_server.serve_bytes(CAT_PHOTOS[3].read_bytes())}) as host:
        body = json.loads(payload["body"])
        body["url"] = host.url("/cat.jpg")
        payload["body"] = json.dumps(body)
        local_event = tmp_path / event
        local_event.write_text(json.dumps(payload))
        completed = run_cli("invoke", str(local_event), env=service_env)

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout)["statusCode"] == 200
    assert host.requests == ["/cat.jpg"]


def test_a_missing_model_fails_fast_with_a_clear_message(service_env, tmp_path):
    completed = run_cli("predict", str(CAT_PHOTOS[0]), "--model", str(tmp_path / "none.tflite"), env=service_env)

    assert completed.returncode == 2
    assert "model file" in completed.stderr and "not found" in completed.stderr
