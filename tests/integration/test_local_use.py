"""Local use without AWS or Docker: the predict and invoke commands, and the local HTTP server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lambda_function.cli import main
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, EVENTS_DIR, REPO_DIR
from tests.support import http_server
from tests.support.cli import environment_without_test_model, run_cli


def test_predict_prints_a_readable_top_k_table(service_env, service, capsys):
    photo = CAT_PHOTOS[0]
    expected = service.classify_bytes(photo.read_bytes(), 3)

    assert main(["predict", str(photo), "--top-k", "3"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert photo.name in lines[0] and "untrained-smoke-model" in lines[0]
    coat = f"{expected.coat.length or 'unclear'}, {expected.coat.probability:.0%}"
    assert lines[1] == f"  {expected.description}  (coat: {coat})"
    assert len(lines) == 5
    for rank, (line, prediction) in enumerate(zip(lines[2:], expected.predictions, strict=True), start=1):
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


def test_invoke_prints_the_handlers_response_alone_on_stdout_like_sam_local_invoke(service_env):
    # One event here: test_runtime_image.py answers every committed event through the image's contents.
    completed = run_cli("invoke", str(EVENTS_DIR / "predict-base64.json"), env=service_env)

    assert completed.returncode == 0, completed.stderr[-2000:]
    response = json.loads(completed.stdout)  # stdout holds the response alone; logs and metrics go to stderr
    assert response["statusCode"] == 200 and "predictions" in json.loads(response["body"])


def test_a_missing_model_fails_fast_with_a_clear_message(service_env, tmp_path):
    completed = run_cli("predict", str(CAT_PHOTOS[0]), "--model", str(tmp_path / "none.tflite"), env=service_env)

    assert completed.returncode == 2
    assert "model file" in completed.stderr and "not found" in completed.stderr


def checkout_copy(destination: Path) -> Path:
    """The repository's files as a clone has them (tracked and new, not ignored: no build outputs, no .venv), in
    `destination`, which has no `../shared` beside it."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_DIR,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_DIR / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def test_make_demo_runs_from_the_repository_alone_and_says_if_each_breed_is_clear(tmp_path):
    from lambda_function.datapath.model_contract import load_sidecar
    from lambda_function.settings import DEFAULT_MODEL_PATH

    labels = set(load_sidecar(DEFAULT_MODEL_PATH).labels)
    clone = checkout_copy(tmp_path / "clone")
    assert not (clone.parent / "shared").exists()
    completed = subprocess.run(
        # -o: the copy has no .venv; this test's interpreter stands in for the one `make setup` would create.
        ["make", "--silent", "-o", ".venv/.installed-stamp", "demo", f"PY={sys.executable}"],
        cwd=clone,
        env=environment_without_test_model(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    headers = [line for line in completed.stdout.splitlines() if not line.startswith(" ")]
    ranked = re.findall(r"^ +\d+\. (.+?) {2,}[\d.]+%", completed.stdout, flags=re.MULTILINE)
    assert len(headers) == 5 and len(labels) == 35
    for header in headers:
        assert header.startswith("demo/photos/"), header
        assert "model cat-breeds-34-efficientnet-lite2" in header
        assert re.search(r"breed identified: (yes|no|unknown)\)$", header), header
    assert ranked and set(ranked) <= labels
    lines = completed.stdout.splitlines()
    for index, header in enumerate(lines):
        if "cat detected: yes" in header:  # each cat is named, with its coat, below its header
            assert re.fullmatch(r"  \S.* \(coat: (hairless|short|medium|long|unclear), \d+%\)", lines[index + 1])


def test_the_cli_builds_its_own_handlers_whatever_was_imported_before_and_whatever_the_environment_names(
    service_env, tmp_path
):
    """No module-level service to install first: the handlers are built around the service they are handed, so
    importing the deployed entry points in either order, then invoking through the CLI with another model, each
    answers with its own."""
    program = f"""
import json, os, sys
from pathlib import Path
order = sys.argv[1].split(",")
for name in order:
    __import__(name)
os.environ["MODEL_PATH"] = "/nonexistent/model.tflite"  # what the CLI must not read: it is given --model
from lambda_function.cli import main
sys.exit(main(["invoke", "{EVENTS_DIR / "health-httpapi.json"}", "--model", "{service_env["MODEL_PATH"]}"]))
"""
    answers = []
    for order in (
        "lambda_function.handler,lambda_function.tagging_handler",
        "lambda_function.tagging_handler,lambda_function.handler",
    ):
        completed = subprocess.run(
            [sys.executable, "-c", program, order],
            cwd=REPO_DIR,
            # the entry points, imported first, build theirs from the committed default model
            env={
                **service_env,
                "MODEL_PATH": str(REPO_DIR / "models" / "cat-breeds-34.tflite"),
                "PATH": "/usr/bin:/bin",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr[-2000:]
        answers.append(json.loads(json.loads(completed.stdout)["body"]))

    assert answers[0] == answers[1] and answers[0]["model"]["name"] == "untrained-smoke-model"
