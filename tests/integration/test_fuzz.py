"""A short run of the project's fuzzing (`make fuzz` runs it longer): no parser lets anything but the API's own
errors escape."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_DIR


def test_a_short_fuzzing_run_of_every_target_finds_no_crash():
    completed = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "--seconds", "5"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    assert completed.stdout.count("0 crash(es)") == 4, completed.stdout
