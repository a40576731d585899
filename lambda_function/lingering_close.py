"""A connection closed while its client is still sending is closed gracefully, so the client reads the answer.

The server refuses an oversized body (413) as soon as it knows, without reading the rest, and closes the
connection. Closing a socket with unread bytes in its receive buffer makes the kernel send a reset, and a client
that sends its whole body before it reads the answer (curl, requests, `http.client`, browsers) then gets
"connection reset" or "broken pipe" instead of the 413. So a close that comes while the request body is still
arriving lingers, as nginx's `lingering_close` does: the answer is flushed and the sending side shut down (the
client sees the answer and the end of it), what the client still sends is read and dropped, and the socket is
closed when the client closes its side, after `LINGER_S`, or after `LINGER_MAX_BYTES`, whichever comes first.

uvicorn closes the transport itself when a `Connection: close` answer is complete, so the lingering lives in
the transport its protocol writes through (`LingeringHttpToolsProtocol`, uvicorn's httptools protocol with
that transport).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LINGER_S = 5.0  # at most this long after the answer, a refused client's remaining body is read and dropped
LINGER_MAX_BYTES = 64 * 1024 * 1024  # and at most this much of it


class LingeringHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, whose close lingers while the client is still sending its body."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.lingering = False
        self.drained_bytes = 0
        # Request cycles are created later, and write and close through this.
        self.transport = _LingeringTransport(transport, self)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.lingering:
            super().data_received(data)
            return
        self.drained_bytes += len(data)
        if self.drained_bytes > LINGER_MAX_BYTES:
            self.transport.close()

    def eof_received(self) -> bool | None:
        if self.lingering:
            self.transport.close()  # the client has sent everything it will: nothing left to drain
        return None

    def still_receiving_body(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.disconnected


class _LingeringTransport:
    """The connection's transport, with a `close()` that lingers (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, protocol: LingeringHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        if self._protocol.lingering or not self._protocol.still_receiving_body() or not self._can_linger():
            self._close_now()
            return
        self._protocol.lingering = True
        self._transport.resume_reading()  # reading may have been paused at the high-water mark
        self._transport.write_eof()  # after the answer is flushed: the client sees it end
        self._closer = asyncio.get_running_loop().call_later(LINGER_S, self._close_now)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def _can_linger(self) -> bool:
        return not self._transport.is_closing() and self._transport.can_write_eof()

    def _close_now(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # write, get_extra_info, pause_reading, ...: the transport's own
        return getattr(self._transport, name)
