"""One deadline per request, as one object that every part of the work reads: the HTTP front's answer, the wait
for a compute slot, the URL fetch and the decode. When the client is answered 504, the work under it has
stopped too, wherever it had got to, and gives back what it held.

The front door makes it: the HTTP server from its request deadline, Lambda from the time the invocation has
left, less the time the answer needs. It travels as a context variable because powertools calls the routes,
and its one shared `lambda_context` attribute is not safe across the server's threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# Time kept back from Lambda's own timeout to log and send the 504 answer.
LAMBDA_ANSWER_MARGIN_S = 0.5

Clock = Callable[[], float]


@dataclass(frozen=True)
class Deadline:
    """A moment on `clock` (`time.monotonic` but in tests) after which the work stops; `math.inf` for none."""

    at: float
    clock: Clock = field(default=time.monotonic, compare=False)

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    @classmethod
    def never(cls, clock: Clock = time.monotonic) -> Deadline:
        """No deadline (training, the CLI): only the work's own limits, read on `clock`, apply."""
        return cls(math.inf, clock)

    @classmethod
    def of_lambda_invocation(cls, context: Any) -> Deadline:
        """When an invocation must stop working to answer in time, from its Lambda context (never without one)."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return cls.never()
        return cls.after(remaining() / 1000 - LAMBDA_ANSWER_MARGIN_S)

    def within(self, seconds: float | None) -> Deadline:
        """This deadline or `seconds` from now, whichever comes first (a part of the work with a limit of its
        own: the fetch's total time, the decode's budget); `seconds` None adds no limit."""
        if seconds is None:
            return self
        return Deadline(min(self.at, self.clock() + seconds), self.clock)

    @property
    def bounded(self) -> bool:
        return self.at != math.inf

    @property
    def expired(self) -> bool:
        return self.clock() >= self.at

    def remaining_s(self) -> float:
        """Seconds left, never negative; `math.inf` for no deadline."""
        return max(0.0, self.at - self.clock())

    def wait_s(self) -> float | None:
        """Seconds left, as waits take them (`None`: wait as long as it takes)."""
        return self.remaining_s() if self.bounded else None


_current: ContextVar[Deadline | None] = ContextVar("request_deadline", default=None)


@contextmanager
def request_deadline(deadline: Deadline) -> Iterator[None]:
    """Within the block, `current_deadline()` is `deadline`."""
    token = _current.set(deadline)
    try:
        yield
    finally:
        _current.reset(token)


def current_deadline() -> Deadline:
    """The deadline of the request this thread is answering (never, outside one)."""
    return _current.get() or Deadline.never()
