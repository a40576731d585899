"""The HTTP server's ASGI application in-process: requests resolved at once on its threads stay apart, and a
request answered 504 holds nothing, wherever its work had got to (the fetch deadline on this path is tested
against the server as a process too, tests/integration/test_http_server.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lambda_function.datapath.service import BreedService, Slots
from lambda_function.server.asgi import BreedServerApp
from lambda_function.settings import ServerSettings, Settings
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS
from tests.support import http_server
from tests.support.api_server import wait_until
from tests.support.images import progressive_jpeg_with_repeated_scans


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
    app = BreedServerApp(ServerSettings(threads_per_worker=16), load_service=lambda: service)
    order = [p.name for p in photos] * 4

    async def all_at_once() -> list[tuple[int, dict]]:
        return await asyncio.gather(*(post(app, "/predict", bodies[name]) for name in order))

    answers = asyncio.run(all_at_once())

    assert [status for status, _ in answers] == [200] * len(order)
    assert [[p["breed"] for p in body["predictions"]] for _, body in answers] == [expected[n] for n in order]


# One deadline per request: wherever the work is when the client gets its 504, it stops and gives its slots back.

SLOW_DECODE = progressive_jpeg_with_repeated_scans(90, side_px=3872)  # within every limit; about 0.8 s to decode


def upload_body(data: bytes) -> bytes:
    return json.dumps({"image": base64.b64encode(data).decode()}).encode()


def url_body(url: str) -> bytes:
    return json.dumps({"url": url}).encode()


@pytest.fixture
def one_slot_service(service_env: dict[str, str]) -> Iterator[BreedService]:
    """A service with one compute slot and one URL fetch slot, whose fetches would run 8 s alone."""
    settings = Settings.from_env()
    settings = replace(settings, decode_concurrency=1, fetch=replace(settings.fetch, total_timeout_s=8))
    yield BreedService(settings, url_fetches=Slots(1))


def all_slots_free(service: BreedService) -> bool:
    assert service.url_fetches is not None
    return service.compute_slots.free == service.compute_slots.capacity and service.url_fetches.free == 1


@pytest.mark.parametrize(
    ("where", "threads", "bodies"),
    [
        ("decoding", 2, ["slow upload"]),
        ("fetching", 2, ["dripping URL"]),
        ("waiting for a compute slot", 2, ["slow upload", "slow upload"]),
        ("queued behind another request", 1, ["slow upload", "dripping URL"]),
    ],
)
def test_a_request_answered_504_holds_no_slot_wherever_its_work_had_got_to(one_slot_service, where, threads, bodies):
    dripping = http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05, max_duration_s=15)
    app = BreedServerApp(
        ServerSettings(threads_per_worker=threads, max_url_fetches=1, request_deadline_s=0.3),
        load_service=lambda: one_slot_service,
    )
    with http_server.running({"/slow.jpg": dripping}) as upstream:
        kinds = {"slow upload": upload_body(SLOW_DECODE), "dripping URL": url_body(upstream.url("/slow.jpg"))}

        async def all_at_once() -> list[tuple[int, dict]]:
            return await asyncio.gather(*(post(app, "/predict", kinds[kind]) for kind in bodies))

        answers = asyncio.run(all_at_once())
        wait_until(lambda: all_slots_free(one_slot_service), timeout_s=2, what=f"the slots freed ({where})")

    assert [(status, body["error"]["code"]) for status, body in answers] == [(504, "deadline_exceeded")] * len(bodies)


def test_bodies_beyond_what_a_worker_may_hold_get_503_and_every_byte_is_released_after(one_slot_service):
    """Three slow uploads fit in the worker's body budget, the fourth does not; once their work ends, the
    worker holds no body."""
    body = upload_body(SLOW_DECODE)
    app = BreedServerApp(
        ServerSettings(threads_per_worker=8, max_request_bytes=len(body), max_body_bytes_in_flight=3 * len(body)),
        load_service=lambda: one_slot_service,
    )

    async def four_at_once() -> list[tuple[int, dict]]:
        return await asyncio.gather(*(post(app, "/predict", body) for _ in range(4)))

    answers = asyncio.run(four_at_once())
    wait_until(lambda: app.bodies.held_bytes == 0, timeout_s=10, what="every body released")

    assert sorted(status for status, _ in answers) == [200, 200, 200, 503]
    assert {body["error"]["code"] for status, body in answers if status == 503} == {"server_busy"}
