"""The Lambda image: its size and its cold start under the emulator (`make bench`; benchmarks/results/image.md).

The image is the Dockerfile's Lambda stage, built on AWS's base image where it can be pulled and otherwise on the
tests' stand-in for it (tests/support/lambda_base/: Debian's Python 3.11, not AL2023's 3.12). Each cold start is
a fresh container run as Lambda runs it (read-only root, /tmp writable, Lambda's unprivileged user) under the
base image's emulator:
- **container start to first answer**: from `docker run` to the answer of a first prediction (an upload);
- **first invocation**: the emulator starts the runtime at the first invocation, so this includes Python's start,
  the imports and the model load, and the first prediction;
- **init**: the emulator's own init duration (its `INIT REPORT`), what Lambda reports as Init Duration;
- **warm invocation**: the same request again.

Two variants run in turn, so the machine's drift falls on both alike: the image as it is, and the same image with
botocore patched for X-Ray at import, as powertools' default `patch_all()` did for the predict handler before it
stopped patching (`benchmarks/image_shim/with_botocore.py`, mounted on PYTHONPATH; docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.support.lambda_base.stand_in import AWS_BASE_IMAGE, LAMBDA_USER, shadowing_aws_base_image, stand_in_image

REPO_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
EVENT = REPO_DIR / "events" / "predict-base64.json"
IMAGE = "cat-breeds-bench/lambda:latest"  # removed again after the run
RUNS = 12
VARIANTS = {
    "the image as built": "lambda_function.handler.lambda_handler",
    "with botocore patched for X-Ray (before)": "with_botocore.lambda_handler",
}
SHIM_DIR = Path(__file__).resolve().parent / "image_shim"


def _docker(*args: str, timeout_s: float = 900) -> str:
    completed = subprocess.run(
        ["docker", *args],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed:\n{(completed.stdout + completed.stderr)[-3000:]}")
    return completed.stdout


def _logs(container: str) -> str:
    completed = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60, check=True)
    return completed.stdout + completed.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_image(stack: ExitStack) -> str:
    """Build the Lambda stage, removed again when the stack closes; returns which base it stands on."""
    try:
        _docker("pull", AWS_BASE_IMAGE, timeout_s=120)
        base = AWS_BASE_IMAGE
    except (RuntimeError, subprocess.TimeoutExpired):
        stand_in = stand_in_image()
        stack.enter_context(shadowing_aws_base_image(stand_in))
        base = f"the tests' stand-in ({stand_in})"
    _docker("build", "--target", "lambda", "--tag", IMAGE, str(REPO_DIR))
    stack.callback(_docker, "rmi", IMAGE)
    return base


def _post(url: str, body: bytes, timeout_s: float) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        answer = json.loads(response.read())
    if answer.get("statusCode") != 200:
        raise RuntimeError(f"the function answered {str(answer)[:300]}")
    return (time.perf_counter() - started) * 1000


def cold_start(handler: str) -> dict[str, float]:
    port = _free_port()
    name = f"cat-breeds-bench-{os.getpid()}-{port}"
    event = EVENT.read_bytes()
    started = time.perf_counter()
    _docker(
        "run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp", "--user", LAMBDA_USER,
        "--publish", f"127.0.0.1:{port}:8080", "--env", "POWERTOOLS_TRACE_DISABLED=0",
        "--volume", f"{SHIM_DIR}:/opt/bench:ro", "--env", "PYTHONPATH=/opt/bench",
        IMAGE, handler,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
        deadline = time.monotonic() + 60
        while True:
            try:
                first_ms = _post(url, event, timeout_s=60)
                break
            except (ConnectionError, urllib.error.URLError):  # the emulator is not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        to_first_answer_ms = (time.perf_counter() - started) * 1000
        warm_ms = statistics.median(_post(url, event, timeout_s=60) for _ in range(3))
        init_report = re.search(r"INIT REPORT\(durationMs: ([0-9.]+)", _logs(name))
        if init_report is None:
            raise RuntimeError("the emulator logged no INIT REPORT")
        init_ms = float(init_report.group(1))
    finally:
        _docker("rm", "--force", name, timeout_s=60)
    return {
        "to_first_answer_ms": to_first_answer_ms,
        "first_invocation_ms": first_ms,
        "init_ms": init_ms,
        "warm_ms": warm_ms,
    }


def measure() -> dict[str, Any]:
    with ExitStack() as stack:
        base = build_image(stack)
        size_mb = int(_docker("image", "inspect", "--format", "{{.Size}}", IMAGE)) / 1e6
        base_size_mb = int(_docker("image", "inspect", "--format", "{{.Size}}", AWS_BASE_IMAGE)) / 1e6
        runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
        for _ in range(RUNS):  # the variants in turn
            for variant, handler in VARIANTS.items():
                runs[variant].append(cold_start(handler))
    variants = {}
    for variant, measured in runs.items():
        median = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
        variants[variant] = {key: round(value, 1) for key, value in median.items()}
    return {
        "base": base,
        "image_mb": round(size_mb),
        "base_image_mb": round(base_size_mb),
        "runs": RUNS,
        "variants": variants,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Image: {results['image_mb']} MB, of which the base image {results['base_image_mb']} MB (built on "
        f"{results['base']}). Cold starts under the emulator, median of {results['runs']} runs each, taken in turn:",
        "",
        "| variant | container start to first answer | first invocation (init and answer) | init | warm invocation |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variant, figures in results["variants"].items():
        lines.append(
            f"| {variant} | {figures['to_first_answer_ms']:.0f} ms | {figures['first_invocation_ms']:.0f} ms "
            f"| {figures['init_ms']:.0f} ms | {figures['warm_ms']:.0f} ms |"
        )
    kept, before = results["variants"].values()
    lines += ["", f"Init with botocore patched / without: {before['init_ms'] / kept['init_ms']:.2f}x."]
    return "\n".join(lines) + "\n"


def main() -> int:
    results = measure()
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "image.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    (RESULTS_DIR / "image.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
