"""The HTTP server's ASGI application in-process: requests resolved at once on its threads stay apart (the fetch
deadline on this path is tested against the server as a process, tests/integration/test_http_server.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from lambda_function.server.asgi import BreedServerApp
from lambda_function.settings import ServerSettings
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS


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
