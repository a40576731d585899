"""The Docker engine as the image tests use it: the `docker` command line, and containers that never outlive a test.

Builds use Docker's classic builder (`DOCKER_BUILDKIT=0`), as the SAM CLI's own builds do: the Debian engine here
has no buildx, and the classic builder resolves `FROM` against local images without asking a registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DOCKER_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}


class DockerError(RuntimeError):
    """A docker command failed; the message holds the end of what it printed."""


def docker(*args: str, timeout_s: float = 600, input_bytes: bytes | None = None) -> str:
    """Run `docker ARGS...` and return its standard output; raise DockerError with its output if it fails."""
    executable = shutil.which("docker")
    if executable is None:
        raise DockerError("no docker command: `make test` installs Debian's docker.io and starts dockerd")
    completed = subprocess.run(
        [executable, *args], env=DOCKER_ENV, input=input_bytes, capture_output=True, timeout=timeout_s, check=False
    )
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).decode(errors="replace")
        raise DockerError(f"docker {' '.join(args[:3])} ... failed ({completed.returncode}):\n{output[-4000:]}")
    return completed.stdout.decode(errors="replace")


def engine_is_running() -> bool:
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout_s=20)
    except (DockerError, subprocess.TimeoutExpired):
        return False
    return True


def image_id(reference: str) -> str | None:
    """The ID of the local image `reference` names, or None when there is none."""
    try:
        return docker("image", "inspect", "--format", "{{.Id}}", reference, timeout_s=30).strip()
    except DockerError:
        return None


def image_config(reference: str) -> dict[str, Any]:
    """The image's config: Entrypoint, Cmd, User, Env, Labels (docker leaves out the empty ones)."""
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", reference, timeout_s=30))


@contextmanager
def restoring_tags(*references: str, forget_if_labelled: str | None = None) -> Iterator[None]:
    """Whatever the block tags as REFERENCES, each names afterwards what it named before, or nothing.

    A tag that named an image carrying the label `forget_if_labelled` counts as naming nothing: a run killed
    inside the block left it behind, and it must not outlive that run.
    """
    previous = {reference: image_id(reference) for reference in references}
    if forget_if_labelled is not None:
        for reference, found in previous.items():
            if found is not None and forget_if_labelled in (image_config(found).get("Labels") or {}):
                previous[reference] = None
    try:
        yield
    finally:
        for reference, found in previous.items():
            if found is not None:
                docker("tag", found, reference, timeout_s=60)
            elif image_id(reference) is not None:
                docker("rmi", "--no-prune", reference, timeout_s=60)


@contextmanager
def running_container(*run_args: str, name: str) -> Iterator[str]:
    """`docker run --detach --name NAME RUN_ARGS...`; the container is removed however the block ends."""
    docker("rm", "--force", name, timeout_s=60)
    docker("run", "--detach", "--name", name, *run_args, timeout_s=120)
    try:
        yield name
    finally:
        docker("rm", "--force", name, timeout_s=60)


def logs(name: str) -> str:
    """What the container printed, both streams."""
    completed = subprocess.run(
        ["docker", "logs", name], env=DOCKER_ENV, capture_output=True, timeout=30, check=False, text=True
    )
    return completed.stdout + completed.stderr


def wait_for_http(url: str, *, timeout_s: float, container: str | None = None) -> None:
    """Wait until `url` answers at all (any status); fail with the container's log if it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                detail = f"; its log:\n{logs(container)[-3000:]}" if container else ""
                raise TimeoutError(f"{url} did not answer within {timeout_s} s{detail}") from None
            time.sleep(0.2)
