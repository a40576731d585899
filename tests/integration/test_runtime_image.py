"""The Lambda image has everything it needs and nothing more: the runtime lock (requirements.lock) alone, in a clean
virtual environment, with exactly the files the Dockerfile copies, answers every committed event with the default
model."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from tests.conftest import CAT_PHOTOS, EVENTS_DIR, REPO_DIR
from tests.support import http_server
from tests.support.api_server import call, free_port

HANDLERS = {  # as template.yaml's ImageConfig commands name them
    "api": "lambda_function.handler.lambda_handler",
    "s3": "lambda_function.tagging_handler.lambda_handler",
}
FORBIDDEN = {"tensorflow", "keras", "torch", "tf-keras", "moto", "pytest"}


def dockerfile_copies() -> tuple[list[str], str]:
    """The sources of the Lambda stage's COPY lines (the MODEL argument at its default) and the MODEL_PATH set."""
    dockerfile = (REPO_DIR / "Dockerfile").read_text().split(" AS server")[0]
    model = re.search(r"^ARG MODEL=(\S+)", dockerfile, re.M).group(1)
    sources = [
        part.replace("${MODEL}", model)
        for line in re.findall(r"^COPY (.+) \$\{LAMBDA_TASK_ROOT\}", dockerfile, re.M)
        for part in line.split()
    ]
    model_path = re.search(r"MODEL_PATH=\$\{LAMBDA_TASK_ROOT\}/(\S+)", dockerfile).group(1).replace("${MODEL}", model)
    return sources, model_path


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The runtime set's own virtual environment (`.venv-runtime`: requirements.lock alone, which `make` keeps
    and rebuilds when the pins change), and a task root holding what the Dockerfile copies."""
    task_root = tmp_path_factory.mktemp("runtime") / "task"
    made = subprocess.run(
        ["make", "--silent", ".venv-runtime/.installed-stamp", f"PYTHON={sys.executable}"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    venv = REPO_DIR / ".venv-runtime"
    sources, model_path = dockerfile_copies()
    for source in sources:
        target = task_root / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO_DIR / source).is_dir():
            shutil.copytree(REPO_DIR / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(REPO_DIR / source, target)
    shutil.copy(REPO_DIR / "tests" / "support" / "lambda_runtime_runner.py", task_root / "runner.py")
    return {"python": venv / "bin" / "python", "task_root": task_root, "model_path": task_root / model_path}


def invoke(runtime: dict[str, Path], handler: str, event_file: Path, extra_env: dict[str, str]) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        {
            "MODEL_PATH": str(runtime["model_path"]),
            "POWERTOOLS_TRACE_DISABLED": "1",
            "AWS_DEFAULT_REGION": "eu-west-1",
            **extra_env,
        }
    )
    # -E -s: no PYTHON* variables, no user site-packages; the runner's folder (the task root) comes first on sys.path
    completed = subprocess.run(
        [str(runtime["python"]), "-E", "-s", "runner.py", handler, str(event_file)],
        cwd=runtime["task_root"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_runtime_environment_holds_nothing_from_training_or_development(runtime):
    freeze = subprocess.run(
        [str(runtime["python"]), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    installed = {line.split("==")[0].replace("_", "-") for line in freeze.splitlines()}

    assert not installed & FORBIDDEN
    assert {"ai-edge-litert", "aws-lambda-powertools", "pillow", "boto3"} <= installed
    assert sorted(p.name for p in runtime["task_root"].iterdir()) == [
        "lambda_function",
        "models",
        "requirements.lock",
        "runner.py",
    ]
    models = sorted(p.name for p in (runtime["task_root"] / "models").iterdir())
    assert models == ["cat-breeds-34.json", "cat-breeds-34.tflite"]


@pytest.mark.parametrize("event_file", sorted(p.name for p in EVENTS_DIR.glob("*.json") if p.name != "env.json"))
def test_every_committed_event_is_answered_by_the_image_contents(runtime, s3_endpoint, event_file, tmp_path):
    event = json.loads((EVENTS_DIR / event_file).read_text())
    with http_server.running({"/cat.jpg": http_server.serve_bytes(CAT_PHOTOS[35].read_bytes())}) as host:
        response = _answer(runtime, s3_endpoint, event_file, event, host.url("/cat.jpg"), tmp_path)

    if "Records" in event:
        assert response == {"records": len(event["Records"]), "tagged": len(event["Records"]), "failed": 0}
    elif "tasks" in event:
        assert [r["resultCode"] for r in response["results"]] == ["Succeeded"] * len(event["tasks"])
    elif event_file.startswith("page"):
        assert response["statusCode"] == 200 and response["body"].startswith("<!doctype html>")
    else:
        body = json.loads(response["body"])
        assert response["statusCode"] == {"bad-request.json": 400}.get(event_file, 200), body
        if "predictions" in body:
            assert body["model"]["name"] == "cat-breeds-34-efficientnet-lite2"


def _answer(
    runtime: dict[str, Path], s3_endpoint: str, event_file: str, event: dict[str, Any], photo_url: str, tmp_path: Path
) -> Any:
    """The response of the image's handler to the event. An event that names a public photo gets a loopback copy
    of it instead, and S3 events find their objects in the test's S3."""
    event_path = EVENTS_DIR / event_file
    try:
        body = json.loads(event.get("body") or "null")
    except ValueError:  # the malformed request's body
        body = None
    if isinstance(body, dict) and "url" in body:
        event = {**event, "body": json.dumps({**body, "url": photo_url})}
        event_path = tmp_path / event_file
        event_path.write_text(json.dumps(event))
    objects = [(r["s3"]["bucket"]["name"], r["s3"]["object"]["key"]) for r in event.get("Records", [])]
    objects += [(t.get("s3Bucket") or t["s3BucketArn"].split(":::")[1], t["s3Key"]) for t in event.get("tasks", [])]
    extra_env = {}
    if objects:
        s3 = boto3.client("s3", endpoint_url=s3_endpoint)
        for bucket, key in objects:
            if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
            s3.put_object(Bucket=bucket, Key=unquote_plus(key), Body=CAT_PHOTOS[35].read_bytes())
        extra_env["AWS_ENDPOINT_URL_S3"] = s3_endpoint
    else:
        extra_env.update(FETCH_ALLOW_LOOPBACK="true", FETCH_ALLOWED_PORTS="any")

    result = invoke(runtime, HANDLERS["s3" if objects else "api"], event_path, extra_env)

    assert result["forbidden_modules_loaded"] == []
    return result["response"]


def test_the_server_target_serves_from_the_image_contents_alone(runtime):
    """The `server` stage runs its ENTRYPOINT in the same task root and environment."""
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.+\])", (REPO_DIR / "Dockerfile").read_text(), re.M).group(1))
    assert entrypoint[:4] == ["python", "-m", "lambda_function", "serve"]
    port = free_port()
    args = [arg if arg != "8080" else str(port) for arg in entrypoint[1:]]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update({"MODEL_PATH": str(runtime["model_path"]), "POWERTOOLS_TRACE_DISABLED": "1", "SERVER_WORKERS": "1"})
    process = subprocess.Popen(
        [str(runtime["python"]), "-E", "-s", *args],
        cwd=runtime["task_root"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while call(base_url, "GET", "/readyz", timeout=1)[0] != 200:
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        status, answer = call(
            base_url, "POST", "/predict", {"image": base64.b64encode(CAT_PHOTOS[35].read_bytes()).decode()}
        )
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=30)

    assert status == 200 and answer["model"]["name"] == "cat-breeds-34-efficientnet-lite2"
    assert exit_code == 0


def test_the_dockerfiles_lambda_command_is_the_api_handler_these_tests_invoke():
    lambda_stage = (REPO_DIR / "Dockerfile").read_text().split(" AS lambda\n")[1]
    command = json.loads(re.search(r"^CMD (\[.+\])", lambda_stage, re.M).group(1))

    assert command == [HANDLERS["api"]]


def test_the_pre_traffic_checks_entry_point_imports_from_the_image_contents_alone(runtime):
    """CodeDeploy's hook (template.yaml's PredictPreTrafficCheck) runs from the same image, with the runtime set."""
    probe = (
        "import lambda_function.deploy_check as check; "
        "assert check.CHECK_PHOTO.is_file(); print(check.lambda_handler.__name__)"
    )
    completed = subprocess.run(
        [str(runtime["python"]), "-c", probe],
        cwd=runtime["task_root"],
        env={"PATH": os.environ["PATH"], "MODEL_PATH": str(runtime["model_path"])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "lambda_handler"


@pytest.mark.parametrize(
    ("handler", "traces_the_aws_sdk"),
    [
        ("lambda_function.handler", False),
        ("lambda_function.tagging_handler", True),
        ("lambda_function.deploy_check", True),
    ],
)
def test_only_the_functions_that_call_aws_load_and_trace_its_sdk(runtime, handler, traces_the_aws_sdk):
    """Predicting calls no AWS API: its cold start does without botocore (docs/benchmarks.md, "The image"), X-Ray
    tracing on as in Lambda; tagging traces its S3 calls."""
    probe = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); "
        "print('botocore.client' in sys.modules, 'aws_xray_sdk.ext.botocore.patch' in sys.modules)"
    )
    completed = subprocess.run(
        [str(runtime["python"]), "-E", "-s", "-c", probe, handler],
        cwd=runtime["task_root"],
        env={
            "PATH": os.environ["PATH"],
            "MODEL_PATH": str(runtime["model_path"]),
            "LAMBDA_TASK_ROOT": str(runtime["task_root"]),
            "AWS_LAMBDA_FUNCTION_NAME": "cat-breeds-test",
            "AWS_DEFAULT_REGION": "eu-west-1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == [str(traces_the_aws_sdk)] * 2
