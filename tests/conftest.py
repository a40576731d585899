"""Shared fixtures: a real TFLite model built once per session, the handler loaded against it, real photos."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before any project module is imported: powertools reads these at import time.
os.environ.update(
    {
        "POWERTOOLS_SERVICE_NAME": "cat-breed-classifier-tests",
        "POWERTOOLS_METRICS_NAMESPACE": "CatBreedClassifierTests",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
)

from lambda_function.local_context import LocalLambdaContext

REPO_DIR = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_DIR.parent / "shared"
PHOTOS_DIR = SHARED_DIR / "photos"
EVENTS_DIR = REPO_DIR / "events"
if not (PHOTOS_DIR / "cats").is_dir():
    raise pytest.UsageError(f"the shared photos are missing: expected {PHOTOS_DIR} beside the checkout (see README)")
CAT_PHOTOS = sorted((PHOTOS_DIR / "cats").glob("*.jpg"))
DOG_PHOTOS = sorted((PHOTOS_DIR / "dogs").glob("*.jpg"))
TEST_INPUT_SIZE_PX = 128


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's untrained smoke model (68 labels, 128x128), converted to TFLite by the project's exporter
    (built once per content of the code that makes it: tests/support/smoke_model.py)."""
    from tests.support.smoke_model import smoke_model

    return smoke_model(tmp_path_factory.mktemp("model"), SHARED_DIR / "breeds.txt", TEST_INPUT_SIZE_PX, PHOTOS_DIR)


@pytest.fixture(scope="session")
def service_env(model_path: Path) -> Iterator[dict[str, str]]:
    """The environment the handler is loaded with: the test model, loopback allowed for the tests' own servers."""
    env = {
        "MODEL_PATH": str(model_path),
        "FETCH_ALLOW_LOOPBACK": "true",
        "FETCH_ALLOWED_PORTS": "any",
        "FETCH_TOTAL_TIMEOUT_S": "2",
        "FETCH_CONNECT_TIMEOUT_S": "1",
        "FETCH_MAX_BYTES": "2000000",
        "INFERENCE_THREADS": "2",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield env


@pytest.fixture(scope="session")
def handler(service_env: dict[str, str]) -> Any:
    """The Lambda handler module, imported as Lambda imports it (model loaded at import)."""
    import importlib

    return importlib.import_module("lambda_function.handler")


@pytest.fixture(scope="session")
def service(handler: Any) -> Any:
    return handler.service


@pytest.fixture
def lambda_context() -> LocalLambdaContext:
    return LocalLambdaContext(aws_request_id="test-request-id")


@pytest.fixture(autouse=True)
def _clear_metrics() -> Iterator[None]:
    yield
    from lambda_function.observability import metrics

    metrics.clear_metrics()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def rest_event(method: str, path: str, body: Any = None, *, raw_body: str | None = None) -> dict[str, Any]:
    """An API Gateway REST (payload v1) proxy event for `method path`, built on the committed example event."""
    event = load_event("predict-url.json")
    event.update(httpMethod=method, path=path, resource=path)
    event["requestContext"].update(httpMethod=method, resourcePath=path, path=f"/Prod{path}")
    event["body"] = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    return event


def http_api_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload v2) event, built on the committed example event."""
    event = load_event("predict-url-httpapi.json")
    event.update(routeKey=f"{method} {path}", rawPath=path, body=None if body is None else json.dumps(body))
    event["requestContext"].update(routeKey=f"{method} {path}")
    event["requestContext"]["http"].update(method=method, path=path)
    return event


def parsed_body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


class ConnectionLog:
    """Every address a socket in this process tried to connect to, while the fixture is active."""

    def __init__(self) -> None:
        self.addresses: list[str] = []


class NetworkGuard:
    """What the tests' process tried to reach beyond loopback: every test must leave both lists empty."""

    def __init__(self) -> None:
        self.refused_connects: list[str] = []
        self.refused_lookups: list[str] = []


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", ""}


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host.lower().rstrip(".") in _LOOPBACK_NAMES


def _is_address_literal(name: str) -> bool:
    """An address spelled out (any IPv4 spelling inet_aton takes, or IPv6): resolving it asks no server."""
    import ipaddress

    try:
        ipaddress.ip_address(name.split("%")[0])
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(name)
        return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    """No test reaches beyond loopback: a connect to any other address, or a DNS lookup of any other name,
    fails at once (as it would offline) and fails the test, which proves that every fetch test stayed local.
    Names under the reserved `.invalid` and `.example` are looked up as failing, without failing the test."""
    guard = NetworkGuard()
    original_connect, original_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(str(address[0])):
            guard.refused_connects.append(str(address[0]))
            raise ConnectionRefusedError(f"the tests' network guard refused a connection to {address[0]}")
        return original_connect(sock, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if not _is_loopback(name) and not _is_address_literal(name):
            if not name.lower().rstrip(".").endswith((".invalid", ".example")):
                guard.refused_lookups.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"the tests' network guard refused to look up {name}")
        return original_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield guard
    assert not guard.refused_connects, f"a test tried to connect beyond loopback: {guard.refused_connects}"
    assert not guard.refused_lookups, f"a test tried to look up a public name: {guard.refused_lookups}"


@pytest.fixture
def connection_log(monkeypatch: pytest.MonkeyPatch) -> ConnectionLog:
    """Records (without changing) every outgoing socket connect, to prove that refused URLs are never contacted."""
    log = ConnectionLog()
    original_connect = socket.socket.connect

    def recording_connect(sock: socket.socket, address: Any) -> Any:
        log.addresses.append(str(address[0]))
        return original_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    return log


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto in server mode) on loopback; boto3 clients reach it over HTTP."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_S3", endpoint)  # boto3 reads it, in the handler as everywhere
        yield endpoint
    server.stop()
