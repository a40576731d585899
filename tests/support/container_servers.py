"""Test servers for containers that SAM starts: an S3-compatible server (moto, in server mode) in a container of
its own, on a Docker network of the test's own, which the function's container joins (`--docker-network NAME`).

Why not the host's network: `sam local invoke --docker-network host` connects nothing (SAM CLI 1.170,
samcli/local/docker/container.py connects only named networks and skips `host`), so SAM's containers stay on
Docker's bridge, where the machine's loopback is out of reach. On a named network they reach the server by its
container name, never by an address Docker happens to hand out.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.docker_cli import docker, image_id, running_container, wait_for_http

REPO_DIR = Path(__file__).resolve().parents[2]
MOTO_PORT = 5000


def moto_requirement() -> str:
    """The moto the tests pin (requirements/dev.txt), so the container runs the same S3 as the other tests."""
    pins = (REPO_DIR / "requirements" / "dev.txt").read_text()
    return re.search(r"^(moto\[server\]==\S+)", pins, re.M).group(1)


def moto_image(base: str) -> str:
    """An image of moto's server on `base` (the stand-in, which has Python and trusts the registries' proxy),
    built once per base and pin."""
    recipe = (
        f"FROM {base}\n"
        f'RUN pip install --no-cache-dir "{moto_requirement()}"\n'
        f'ENTRYPOINT ["moto_server", "--host", "0.0.0.0", "--port", "{MOTO_PORT}"]\n'
    )
    reference = f"cat-breeds-test/moto:{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"
    if image_id(reference) is None:
        with tempfile.TemporaryDirectory() as context:
            (Path(context) / "Dockerfile").write_text(recipe)
            docker("build", "--tag", reference, context, timeout_s=900)
    return reference


@dataclass(frozen=True)
class S3InContainer:
    network: str
    endpoint_in_network: str  # what the function's container uses
    endpoint_on_host: str  # what the test uses, on loopback


@contextmanager
def s3_on_network(base: str, name: str) -> Iterator[S3InContainer]:
    """A Docker network NAME and moto's server on it (as NAME-s3), its port published on loopback only."""
    image = moto_image(base)
    if _network_exists(name):  # a killed run's leftover
        docker("network", "rm", name, timeout_s=60)
    docker("network", "create", name, timeout_s=60)
    try:
        server = f"{name}-s3"
        with running_container("--network", name, "--publish", f"127.0.0.1::{MOTO_PORT}", image, name=server):
            host_port = docker("port", server, str(MOTO_PORT), timeout_s=30).split()[0].rsplit(":", 1)[1]
            endpoint_on_host = f"http://127.0.0.1:{host_port}"
            wait_for_http(f"{endpoint_on_host}/", timeout_s=60, container=server)
            yield S3InContainer(name, f"http://{server}:{MOTO_PORT}", endpoint_on_host)
    finally:
        attached = docker("network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", name).split()
        if attached:  # containers a failed test left on the network
            docker("rm", "--force", *attached, timeout_s=60)
        docker("network", "rm", name, timeout_s=60)


def _network_exists(name: str) -> bool:
    return name in docker("network", "ls", "--format", "{{.Name}}", timeout_s=30).split()
