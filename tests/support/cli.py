"""The command line (`python -m lambda_function ...`) run as a user runs it: a fresh process in the repository."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_DIR


def run_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one command with `env` added to this process's environment; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "lambda_function", *args],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
        check=False,
    )


def environment_without_test_model() -> dict[str, str]:
    """This process's environment without MODEL_PATH, which other tests' fixtures point at the test model: a
    command run with it serves the committed default model."""
    return {name: value for name, value in os.environ.items() if name != "MODEL_PATH"}
