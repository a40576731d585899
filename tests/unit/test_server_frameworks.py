"""The uvicorn and gunicorn internals the server relies on (lambda_function/server/http_protocol.py overrides
uvicorn's httptools protocol; lambda_function/server/serve.py, uvicorn-worker's `_serve` and gunicorn's
`Arbiter.signal`) are still there and still work as the overrides take them to: an upgrade that changes them
fails here, by name, as the powertools adapter's test does for powertools."""

from __future__ import annotations

import inspect

from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from lambda_function.server.http_protocol import GuardedHttpToolsProtocol
from lambda_function.server.serve import QuickQuitUvicornWorker, SecondTermQuitsArbiter

# The protocol's callbacks the connection rules wrap, each calling uvicorn's own.
WRAPPED_CALLBACKS = (
    "connection_made",
    "data_received",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "pause_writing",
    "resume_writing",
    "send_400_response",
    "connection_lost",
    "eof_received",
)


def test_every_callback_the_connection_rules_wrap_is_still_uvicorns_to_wrap():
    for name in WRAPPED_CALLBACKS:
        assert callable(getattr(HttpToolsProtocol, name, None)), name
        assert name in vars(GuardedHttpToolsProtocol), name


def test_uvicorn_still_queues_pipelined_requests_and_starts_the_next_when_an_answer_completes():
    """The pipeline bound counts `self.pipeline`, and feeds again from `on_response_complete`."""
    init = inspect.getsource(HttpToolsProtocol.__init__)
    completed = inspect.getsource(HttpToolsProtocol.on_response_complete)

    assert "self.pipeline" in init and "self.cycle" in init and "self.flow" in inspect.getsource(HttpToolsProtocol)
    assert "self.pipeline" in completed and "resume_reading" in completed
    assert "self.pipeline.appendleft" in inspect.getsource(HttpToolsProtocol.on_headers_complete)


def test_uvicorn_worker_still_serves_as_the_override_repeats_it():
    """`QuickQuitUvicornWorker._serve` is the stock one with a SIGQUIT handler added: the stock one must still
    be what it copies."""
    stock = inspect.getsource(UvicornWorker._serve)

    for step in ("Server(config=self.config)", "server.serve(sockets=self.sockets)", "WORKER_BOOT_ERROR"):
        assert step in stock, step
    assert QuickQuitUvicornWorker._serve is not UvicornWorker._serve


def test_gunicorn_still_takes_signals_through_arbiter_signal_into_its_queue():
    """A second SIGTERM becomes SIGQUIT in `Arbiter.signal`, before gunicorn queues it."""
    parameters = list(inspect.signature(Arbiter.signal).parameters)

    assert parameters == ["self", "sig", "frame"]
    assert "SIG_QUEUE" in inspect.getsource(Arbiter.signal)
    assert "signal" in vars(SecondTermQuitsArbiter)
