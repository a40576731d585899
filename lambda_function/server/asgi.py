"""The HTTP server's ASGI application: the Lambda function's own API behind a front built for many clients.

Routes, request and response models, errors and the OpenAPI document all come from `lambda_function.api.routes`, and
they are resolved by the same powertools resolver class that answers API Gateway HTTP API events on Lambda:
each HTTP request becomes a version 2.0 event. The server and the function therefore cannot drift apart, and
the server pays no second framework. What a long-running server needs on top of that lives here:

- probes answered on the event loop, never behind other requests: `/livez` (the process answers) and
  `/readyz` (the model is loaded and the worker is not draining);
- a body cap enforced while reading: 413 at once from Content-Length, or as soon as the bytes read pass it;
- a deadline on each request, body included: 408 while the client is still sending, 504 after that;
- the work of `POST` requests (URL fetch, decoding, inference) on a bounded thread pool, with one resolver per
  thread whose request state is the thread's own (`ConcurrentHttpResolver`), so a slow upstream holds a thread,
  never the event loop; cheap `GET`s (`/health`, `/breeds`) are resolved on the loop and never queue behind a
  fetch;
- one JSON access log line per request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lambda_function.api.gateway import http_api_event, resolve
from lambda_function.api.powertools_adapter import ConcurrentHttpResolver
from lambda_function.api.routes import serving
from lambda_function.datapath.service import BreedService
from lambda_function.errors import (
    ANSWER_HEADERS,
    ClassifierError,
    DeadlineExceeded,
    NotReady,
    RequestTimeout,
    RequestTooLarge,
    ServerBusy,
    refusal_document,
)
from lambda_function.observability import flush_metrics, logger
from lambda_function.request_deadline import Deadline
from lambda_function.settings import ServerSettings

Scope = MutableMapping[str, Any]
# ANSWER_HEADERS as ASGI and the connection rules write them.
RAW_ANSWER_HEADERS = [(name.lower().encode(), value.encode()) for name, value in ANSWER_HEADERS.items()]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Methods whose routes only read the loaded model's card: answered on the event loop, so they never wait for a
# pool thread that a slow fetch holds.
LOOP_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class HttpResponse:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class BodyBudget:
    """Bytes of request bodies a worker holds at once, from their first byte until their work ends. Used on the
    event loop only: bytes are reserved as they are received and released when the request's work is done."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.held_bytes = 0

    def reserve(self, size: int) -> bool:
        if self.held_bytes + size > self.capacity_bytes:
            return False
        self.held_bytes += size
        return True

    def release(self, size: int) -> None:
        self.held_bytes -= size


class ClientDisconnected(Exception):
    """The client went away before its request body arrived; there is nobody to answer."""


class BreedServerApp:
    """An ASGI application serving the API of `lambda_function.api.routes`.

    Args:
        settings: the server's limits and sizes.
        load_service: builds the service the routes run on (it loads the model); called once per worker process,
            at ASGI lifespan start-up, so that a broken model fails the worker's boot, not its first request (or
            at the first request, for an application driven without a lifespan, as the tests do).
    """

    def __init__(self, settings: ServerSettings, load_service: Callable[[], BreedService]) -> None:
        self.settings = settings
        self._load_service = load_service
        self._service: BreedService | None = None
        self._service_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.threads_per_worker, thread_name_prefix="request")
        self.bodies = BodyBudget(settings.max_body_bytes_in_flight)
        self._resolvers = threading.local()
        self.ready = False
        self.draining = False

    @property
    def service(self) -> BreedService:
        """The worker's service, built on first use (thread-safe: request threads may race the start-up)."""
        with self._service_lock:
            if self._service is None:
                self._service = self._load_service()
            return self._service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    # Lifespan: start-up loads the model; SIGTERM turns readiness off before the server stops accepting.

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        flusher: asyncio.Task[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    _ = self.service  # the model, loaded now
                except Exception as error:
                    logger.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                self._drain_on_sigterm()
                flusher = asyncio.get_running_loop().create_task(
                    self._flush_metrics_every(self.settings.metrics_flush_s)
                )
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                self._pool.shutdown(wait=False, cancel_futures=True)
                if flusher is not None:
                    flusher.cancel()
                flush_metrics()  # what the last minute gathered, after the drain: nothing is lost at shutdown
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _flush_metrics_every(seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            flush_metrics()

    def _drain_on_sigterm(self) -> None:
        """Wrap the server's SIGTERM handler: readiness turns false at once, the server stops `drain_s` later.

        The server's own handler (uvicorn's) stops accepting connections and waits for requests in flight;
        delaying it gives the load balancer time to see the failed readiness probe and send traffic elsewhere.
        A second SIGTERM stops at once.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        stop_server = signal.getsignal(signal.SIGTERM)
        if not callable(stop_server):
            return
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: Any) -> None:
            if self.draining:
                stop_server(signum, frame)
                return
            self.draining = True
            logger.info("draining", extra={"drain_s": self.settings.drain_s})
            loop.call_soon_threadsafe(loop.call_later, self.settings.drain_s, stop_server, signum, None)

        signal.signal(signal.SIGTERM, on_sigterm)

    # HTTP

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        method, path = scope["method"], scope["path"]
        try:
            if path == "/livez":
                response = json_response(200, {"status": "alive"})
            elif path == "/readyz":
                response = self._readiness()
            else:
                response = await self._answer(scope, receive, request_id)
        except ClientDisconnected:
            return
        response.headers.append((b"x-request-id", request_id.encode()))
        await send_response(send, response, head_only=method == "HEAD")
        client = scope.get("client") or ("", 0)
        logger.info(
            "request",
            extra={
                "method": scope["method"],
                "path": path,
                "status": response.status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "response_bytes": len(response.body),
                "client": client[0],
                "request_id": request_id,
            },
        )

    def _readiness(self) -> HttpResponse:
        # What the service's slots are all taken by, if anything: traffic goes to other pods meanwhile.
        saturation = self._service.saturation if self.ready and self._service is not None else None
        if self.ready and not self.draining and saturation is None:
            return json_response(200, {"status": "ready"})
        state = "draining" if self.draining else ("starting" if not self.ready else f"saturated with {saturation}")
        return error_response(NotReady(f"the server is {state}; send the request to another instance"))

    async def _answer(self, scope: Scope, receive: Receive, request_id: str) -> HttpResponse:
        deadline = Deadline.after(self.settings.request_deadline_s)
        seconds = f"{self.settings.request_deadline_s:g} s"
        received = _ReceivedBody(self.bodies)
        work: asyncio.Future[HttpResponse] | None = None
        try:
            try:
                async with asyncio.timeout(deadline.remaining_s()):
                    body = await read_body(scope, receive, self.settings.max_request_bytes, received)
            except TimeoutError:
                return error_response(RequestTimeout(f"the request body did not arrive within {seconds}"))
            except (RequestTooLarge, ServerBusy) as error:
                response = error_response(error)
                response.headers.append((b"connection", b"close"))  # the rest of the body is never read
                return response
            event = event_of(scope, body, request_id)
            del body  # the event holds it now
            if scope["method"] in LOOP_METHODS:
                return self._resolve(event, deadline)
            # The work reads the same deadline: wherever it has got to when the client is answered 504 (queued,
            # waiting for a compute slot, fetching, decoding), it stops and gives back what it holds.
            work = asyncio.get_running_loop().run_in_executor(self._pool, self._resolve, event, deadline)
            work.add_done_callback(lambda _: received.release())  # the body is held until its work ends
        finally:
            if work is None:
                received.release()
        try:
            async with asyncio.timeout(deadline.remaining_s()):
                return await work
        except TimeoutError:
            return error_response(DeadlineExceeded(f"the service could not answer within {seconds}"))

    def _resolve(self, event: dict[str, Any], deadline: Deadline) -> HttpResponse:
        """Answer an API Gateway HTTP API event with this thread's resolver (the Lambda function's code path); a
        request whose deadline passed while it was queued is dropped (its client has had the 504)."""
        if deadline.expired:
            return error_response(DeadlineExceeded("the request's deadline passed while it was queued"))
        resolver = getattr(self._resolvers, "resolver", None)
        if resolver is None:
            resolver = serving(ConcurrentHttpResolver(enable_validation=True), self.service)
            self._resolvers.resolver = resolver
        return from_proxy_response(resolve(resolver, event, None, deadline))


class _ReceivedBody:
    """One request's share of the worker's `BodyBudget`: reserved as its bytes arrive, released once."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.reserved_bytes = 0

    def reserve(self, size: int) -> bool:
        if not self._budget.reserve(size):
            return False
        self.reserved_bytes += size
        return True

    def release(self) -> None:
        self._budget.release(self.reserved_bytes)
        self.reserved_bytes = 0


async def read_body(scope: Scope, receive: Receive, max_bytes: int, received: _ReceivedBody) -> bytes:
    """The request body, refused as soon as it is known to be over `max_bytes`, or as soon as the worker cannot
    hold it beside the bodies it holds already (reserved in `received`: the announced length at once, chunks as
    they come).

    Raises:
        RequestTooLarge: Content-Length or the bytes received so far exceed the cap.
        ServerBusy: the worker holds as many request bodies as it may.
        ClientDisconnected: the client closed the connection first.
    """
    too_large = RequestTooLarge(f"the request body is over the limit of {max_bytes:,} bytes")
    busy = ServerBusy("the server is receiving and answering as many request bodies as it can; retry in a moment")
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit():
            if int(value) > max_bytes:
                raise too_large
            if not received.reserve(int(value)):
                raise busy
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body += message.get("body", b"")
        if len(body) > max_bytes:
            raise too_large
        if len(body) > received.reserved_bytes and not received.reserve(len(body) - received.reserved_bytes):
            raise busy
        if not message.get("more_body", False):
            return bytes(body)


def event_of(scope: Scope, body: bytes, request_id: str) -> dict[str, Any]:
    """An HTTP request as the API Gateway HTTP API event Lambda would receive for it (`gateway.http_api_event`)."""
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        values.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
    # Repeated names joined once, in linear time (joining as they came was quadratic: 300,000 repeats blocked the
    # event loop for 11.6 s; the front's header limits now keep them to a hundred anyway).
    headers = {name: ",".join(parts) for name, parts in values.items()}
    client = scope.get("client") or ("", 0)
    return http_api_event(
        scope["method"],
        scope["path"],
        body,
        headers,
        query=scope.get("query_string", b"").decode("latin-1"),
        source_ip=client[0],
        request_id=request_id,
        protocol=f"HTTP/{scope.get('http_version', '1.1')}",
    )


def from_proxy_response(proxy: dict[str, Any]) -> HttpResponse:
    """A Lambda proxy response (what the resolver returns to API Gateway) as an HTTP response."""
    raw = proxy.get("body") or ""
    body = base64.b64decode(raw) if proxy.get("isBase64Encoded") else raw.encode("utf-8")
    headers = [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in _items(proxy)]
    headers += [(b"set-cookie", str(cookie).encode("latin-1")) for cookie in proxy.get("cookies", [])]
    return HttpResponse(int(proxy["statusCode"]), body, headers)


def _items(proxy: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(proxy.get("headers", {}).items())


def json_response(status: int, document: object) -> HttpResponse:
    return HttpResponse(status, json.dumps(document).encode(), [(b"content-type", b"application/json")])


def _missing_answer_headers(response: HttpResponse) -> list[tuple[bytes, bytes]]:
    """The headers every answer carries (`ANSWER_HEADERS`) that `response` has not set itself."""
    present = {name for name, _ in response.headers}
    return [(name, value) for name, value in RAW_ANSWER_HEADERS if name not in present]


def error_response(error: ClassifierError) -> HttpResponse:
    """A refusal the front makes itself, in the API's error shape (`lambda_function.api.routes`)."""
    response = json_response(int(error.status), refusal_document(error.code, error.message))
    response.headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    return response


async def send_response(send: Send, response: HttpResponse, *, head_only: bool) -> None:
    """Send `response`; for HEAD, its headers alone, with the length GET's body has (the gateway's, when it
    answered the HEAD with GET's length and no body)."""
    stated = [value for name, value in response.headers if name == b"content-length"]
    length = stated[0] if head_only and stated else str(len(response.body)).encode()
    headers = [
        *((name, value) for name, value in response.headers if name != b"content-length"),
        *_missing_answer_headers(response),
        (b"content-length", length),
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else response.body})
