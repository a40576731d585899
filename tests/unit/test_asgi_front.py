"""The HTTP server's ASGI application in-process: requests resolved at once on its threads stay apart, and the
fetch deadline holds on this path as on Lambda's."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest

from lambda_function.asgi import BreedServerApp
from lambda_function.fetch import SafeFetcher
from lambda_function.settings import ServerSettings
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS
from tests.support import http_server


async def post(app: BreedServerApp, path: str, body: bytes) -> tuple[int, dict]:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
    }
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_uploads_resolved_at_once_on_the_thread_pool_each_get_their_own_answer(service):
    photos: list[Path] = CAT_PHOTOS[:8] + DOG_PHOTOS[:8]
    expected = {p.name: [x.breed for x in service.classify_bytes(p.read_bytes(), 5).predictions] for p in photos}
    bodies = {p.name: json.dumps({"image": base64.b64encode(p.read_bytes()).decode()}).encode() for p in photos}
    app = BreedServerApp(ServerSettings(threads_per_worker=16), start_service=lambda: None)
    order = [p.name for p in photos] * 4

    async def all_at_once() -> list[tuple[int, dict]]:
        return await asyncio.gather(*(post(app, "/predict", bodies[name]) for name in order))

    answers = asyncio.run(all_at_once())

    assert [status for status, _ in answers] == [200] * len(order)
    assert [[p["breed"] for p in body["predictions"]] for _, body in answers] == [expected[n] for n in order]


def stuck_resolver(_host: str, _port: int) -> list:
    time.sleep(30)
    return []


@pytest.mark.parametrize("upstream", ["dripping headers", "1xx flood", "stuck DNS"])
def test_a_slow_upstream_ends_at_the_fetch_deadline_on_the_server_path_too(service, monkeypatch, upstream):
    routes = {
        "/slow.jpg": http_server.drip_headers()
        if upstream == "dripping headers"
        else http_server.continue_flood(interval_s=0.5)
    }
    if upstream == "stuck DNS":
        monkeypatch.setattr(service, "fetcher", SafeFetcher(service.settings.fetch, resolver=stuck_resolver))
    app = BreedServerApp(ServerSettings(request_deadline_s=30, graceful_timeout_s=60), start_service=lambda: None)
    with http_server.running(routes) as host:
        url = "http://stuck-dns.example/cat.jpg" if upstream == "stuck DNS" else host.url("/slow.jpg")
        started = time.monotonic()
        status, body = asyncio.run(post(app, "/predict", json.dumps({"url": url}).encode()))
        elapsed = time.monotonic() - started

    assert (status, body["error"]["code"]) == (504, "upstream_timeout")
    assert elapsed < service.settings.fetch.total_timeout_s + 1
