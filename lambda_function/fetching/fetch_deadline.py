"""One deadline for a whole URL fetch, which no byte-at-a-time trick can extend.

Socket timeouts bound each read, not the whole: a server that sends its status line, its headers, a stream of
`100 Continue` lines or a TLS handshake one byte at a time restarts the timer with every byte, and http.client
reads all of those before urllib3 hands back a response. The `Watchdog` closes the door from outside instead:
at the deadline it shuts down every socket the fetch opened, so whatever read is blocked returns at once, and
the fetcher reports the timeout. Sockets are registered as they are created (`DeadlineHTTPConnection`), before
any byte is read, TLS handshake included.

The watchdog keeps a duplicate of each socket's descriptor, not the socket object: for HTTPS, `wrap_socket`
detaches the raw socket before the handshake (the new SSL socket takes its descriptor over), so shutting down
the registered object would act on a closed socket, and the fetch would run on. A shutdown acts on the
connection, not on one descriptor, so the duplicate stops the SSL socket's reads too; and as the watchdog owns
the duplicates until it closes them at exit, it can never shut down a descriptor number that was reused by
another connection meanwhile.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection

from lambda_function.request_deadline import Deadline


class Watchdog:
    """Shuts down the sockets registered with it when `deadline` passes."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self._sockets: list[socket.socket] = []  # duplicates, owned here: see the module docstring
        self._lock = threading.Lock()
        self._fired = False
        self._closed = False
        self._timer = threading.Timer(deadline.remaining_s(), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()
        with self._lock:  # under the lock: a firing timer never shuts down a descriptor being closed here
            self._closed = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed (whether or not the timer has fired yet)."""
        return self._fired or self.deadline.expired

    def guard(self, sock: socket.socket) -> None:
        """Register `sock` (a duplicate of it, which outlives TLS wrapping); one registered after the deadline is
        shut down at once.

        Raises:
            OSError: the descriptor cannot be duplicated (the process is out of descriptors); the fetch fails
                rather than run unguarded.
        """
        duplicate = sock.dup()
        with self._lock:
            if self._closed:
                duplicate.close()
                return
            self._sockets.append(duplicate)
            if self._fired:
                _shut_down(duplicate)

    def _fire(self) -> None:
        with self._lock:  # shutdown(2) does not block: holding the lock costs nothing
            self._fired = True
            for sock in self._sockets:
                _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the connection already ended: nothing left to interrupt
        sock.shutdown(socket.SHUT_RDWR)


# Interim (1xx) answers skipped before the final one: a few are normal (100 Continue, 103 Early Hints); a stream
# of them is a server stalling, refused here rather than waited out until the deadline.
MAX_INTERIM_ANSWERS = 10


class TooManyInterimAnswers(http.client.HTTPException):
    """The server sent more than `MAX_INTERIM_ANSWERS` 1xx answers without a final one."""


class _FinalAnswerResponse(http.client.HTTPResponse):
    """http.client's response, skipping every interim 1xx answer (it skips only `100 Continue`, and would take a
    `103 Early Hints` for the final answer), at most `MAX_INTERIM_ANSWERS` of them; the watchdog bounds the
    time they take."""

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(MAX_INTERIM_ANSWERS + 1):
            version, status, reason = super()._read_status()  # type: ignore[misc]  # http.client's private reader
            if not 100 <= status < 200 or status == 101:  # 101 (an upgrade, never asked for) is final
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim answer's header block, discarded
        raise TooManyInterimAnswers(f"more than {MAX_INTERIM_ANSWERS} interim (1xx) answers")


class _GuardedConnection:
    """Registers the connection's raw socket with the fetch's watchdog (`watchdog=` connection keyword), and
    reads answers with `_FinalAnswerResponse`."""

    response_class = _FinalAnswerResponse

    def __init__(self, *args: Any, watchdog: Watchdog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog

    def _new_conn(self) -> socket.socket:  # urllib3 2.x creates the raw socket here, before any TLS
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]  # a mixin: urllib3's class is next in line
        self._watchdog.guard(sock)
        return sock


class DeadlineHTTPConnection(_GuardedConnection, HTTPConnection):  # type: ignore[misc]  # response_class: a subclass of http.client's, as urllib3 takes
    """An urllib3 HTTP connection guarded by the fetch's watchdog."""


class DeadlineHTTPSConnection(_GuardedConnection, HTTPSConnection):  # type: ignore[misc]  # as above
    """An urllib3 HTTPS connection guarded by the fetch's watchdog from before the TLS handshake to the last byte."""
