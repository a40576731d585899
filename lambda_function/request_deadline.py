"""The deadline of the request being answered, which the work under it (waiting for a compute slot, decoding)
stops at, so that a request the client was already answered for holds nothing.

The front door sets it around the request: the HTTP server from its own request deadline, Lambda from the time
the invocation has left, less the time the answer needs. It travels as a context variable because powertools
calls the routes, and its one shared `lambda_context` attribute is not safe across the server's threads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# Time kept back from Lambda's own timeout to log and send the 504 answer.
LAMBDA_ANSWER_MARGIN_S = 0.5

_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


@contextmanager
def request_deadline(deadline: float | None) -> Iterator[None]:
    """Within the block, `current_deadline()` is `deadline` (a `time.monotonic()` value, or None for none)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    """The deadline of the request this thread is answering, or None."""
    return _deadline.get()


def lambda_deadline(context: Any) -> float | None:
    """When an invocation must stop working to answer in time, from its Lambda context (None without one)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + remaining() / 1000 - LAMBDA_ANSWER_MARGIN_S
