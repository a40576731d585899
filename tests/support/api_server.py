"""The production HTTP server (`python -m lambda_function serve`) started as a real process on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO_DIR


@dataclass
class ServerProcess:
    process: subprocess.Popen
    base_url: str

    def terminate(self) -> None:
        """SIGTERM to the master process only, as Kubernetes sends it to the container's first process."""
        self.process.send_signal(signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(
    env: dict[str, str], *args: str, cgroup_procs: Path | None = None, stdout: Path | None = None
) -> Iterator[ServerProcess]:
    """Start the server with `env` added to the environment (in the cgroup `cgroup_procs` belongs to, if given;
    its standard output, where its metrics go, into the file `stdout` if given); yield once `/readyz` answers;
    stop it after."""
    port = free_port()
    # The server logs every request to stderr: into a file, which never fills up as an unread pipe does (a pipe
    # blocks the server once 64 KB of log are waiting).
    with tempfile.TemporaryFile() as log, Path(stdout or os.devnull).open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lambda_function", "serve", "--port", str(port), *args],
            cwd=REPO_DIR,
            env={**os.environ, **env},
            stdout=out,
            stderr=log,
            start_new_session=True,  # its own process group: the workers can be reaped with the master
            preexec_fn=None if cgroup_procs is None else lambda: cgroup_procs.write_text(str(os.getpid())),
        )
        server = ServerProcess(process, f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{server.base_url}/readyz", timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        output = log.read().decode(errors="replace")[-3000:]
                        raise AssertionError(f"the server did not start: {output}") from None
                    time.sleep(0.2)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # quick shutdown
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # no worker outlives its master


def wait_until(condition: Callable[[], bool], timeout_s: float = 10, what: str = "the condition") -> None:
    """Poll `condition` until it holds; fail after `timeout_s` (instead of sleeping a fixed time and hoping)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s:g} s")
        time.sleep(0.02)


def call(base_url: str, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    """One request with a JSON body; the status and the decoded JSON answer (None for an empty body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None
    except OSError:
        return 0, None  # no answer: refused, reset or timed out
