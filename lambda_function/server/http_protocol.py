"""The HTTP server's connection-level rules, in uvicorn's httptools protocol: limits on request headers, a deadline
for them, and a graceful close while a client is still sending.

**Headers.** httptools accepts headers of any size and number, and uvicorn sets no deadline before a request's
headers are complete: one connection streaming an endless header line grew a worker by 2.2 GB, a 200 MB header
value cost 44 s of CPU, and connections dripping a header byte every 10 s stayed open (gunicorn's
`limit_request_*` settings do not reach uvicorn workers). Here the bytes received before the headers end are
counted as they arrive, and so is what the parser makes of them (the request line and each header as it is
complete: headers that arrive in one read are counted too); past `max_header_bytes` or `max_header_count` the
request gets 431 `request_header_too_large` and the connection is closed. A connection that has not completed a
request's headers within `header_timeout_s` of opening (or of its last answer) is closed.

**Pipelining.** httptools parses every request in what it is fed, and uvicorn queues each pipelined one: 64 KB of
`GET / HTTP/1.1` is 2,370 requests, and 300 connections that sent that and never read took a worker from 129 MB
to 1.6 GB. Here the bytes are fed in slices of `FEED_SLICE_BYTES`, and once `MAX_PIPELINED_REQUESTS` requests
wait behind the one being answered, the rest stay unparsed (reading paused: in the socket, not in memory) until
answers go out, and at most `WRITE_BUFFER_HIGH_BYTES` of answers wait unsent. A connection whose answers stay
unread for `write_timeout_s` (its write buffer full, or closed with answers still unsent) is aborted: a polite
close would wait for a flush that never comes. The header deadline never closes a connection while one
of its requests is being answered or waits its turn.

**Lingering close.** The server refuses an oversized body (413) as soon as it knows, without reading the rest,
and closes the connection. Closing a socket with unread bytes in its receive buffer makes the kernel send a
reset, and a client that sends its whole body before it reads the answer (curl, requests, `http.client`,
browsers) then gets "connection reset" or "broken pipe" instead of the 413. So a close that comes while the
request body is still arriving lingers, as nginx's `lingering_close` does: the answer is flushed and the sending
side shut down (the client sees the answer and the end of it), what the client still sends is read and dropped,
and the socket is closed when the client closes its side, after `LINGER_S`, or after `LINGER_MAX_BYTES`,
whichever comes first. uvicorn closes the transport itself when a `Connection: close` answer is complete, so the
lingering lives in the transport the protocol writes through.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lambda_function.errors import BadRequest, ClassifierError, RequestHeaderTooLarge, refusal_document
from lambda_function.server.asgi import RAW_ANSWER_HEADERS
from lambda_function.settings import ServerSettings

LINGER_S = 5.0  # at most this long after the answer, a refused client's remaining body is read and dropped
LINGER_MAX_BYTES = 64 * 1024 * 1024  # and at most this much of it
# Pipelined requests a connection may have waiting behind the one being answered; the bytes beyond stay unparsed.
MAX_PIPELINED_REQUESTS = 8
FEED_SLICE_BYTES = 1024  # at most about 40 tiny requests parsed past the limit
# Unsent answer bytes a connection's transport holds before it asks the protocol to wait (asyncio's own: 64 KB),
# and the kernel's send buffer for it (Linux doubles the figure, and stops growing it by itself). Answers are a few
# KB; the largest, the page and the OpenAPI document, still go out in a round trip or two.
WRITE_BUFFER_HIGH_BYTES = 16 * 1024
SEND_BUFFER_BYTES = 64 * 1024


class _HeadersRefused(Exception):
    """Raised from a parser callback to stop parsing; the protocol answers 431."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the rules above; `limits` is set by `protocol_for`."""

    limits: ServerSettings

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # the loop hands a Transport
        super().connection_made(transport)
        self.lingering = False
        self.drained_bytes = 0
        self._headers_done = False
        self._header_bytes = 0
        self._parsed_header_bytes = 0
        self._header_count = 0
        self._refusal: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._unparsed = bytearray()  # received, not yet fed: waits while the pipeline is full
        self._body_gap_bytes = 0  # bytes of a body that are no body: chunk framing, extensions, trailers
        # Request cycles are created later, and write and close through this.
        self.transport = _LingeringTransport(transport, self)  # type: ignore[assignment]  # the transport's interface
        # What a client that never reads can have the server make and hold for it: unsent answers in the
        # transport, then in the kernel (whose send buffer would otherwise grow to megabytes per connection on
        # loopback and in a pod's network, all of it answers made for nobody); past both, the write deadline runs.
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH_BYTES)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._start_header_timer()

    # Header limits and deadline

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self.drained_bytes += len(data)
            if self.drained_bytes > LINGER_MAX_BYTES:
                self.transport.close()
            return
        self._unparsed += data
        self._feed()

    def _feed(self) -> None:
        """Parse what was received, a slice at a time, while fewer than MAX_PIPELINED_REQUESTS wait."""
        while self._unparsed and not self.transport.is_closing() and not self.lingering:
            if len(self.pipeline) >= MAX_PIPELINED_REQUESTS:
                self.flow.pause_reading()  # the rest waits in the socket until answers go out
                return
            piece = bytes(self._unparsed[:FEED_SLICE_BYTES])
            del self._unparsed[:FEED_SLICE_BYTES]
            self._parse(piece)

    def _parse(self, data: bytes) -> None:
        counting = not self._headers_done
        super().data_received(data)
        if self._refusal is not None or self.transport.is_closing():
            return
        if counting and not self._headers_done:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(f"the request headers are over {self.limits.max_header_bytes:,} bytes")
        elif self._headers_done:
            # Within a body, every slice brings body bytes (which reset the count) unless it is framing: a chunk's
            # size line and extensions, or the trailers after the last chunk, which count as headers do.
            self._body_gap_bytes += len(data)
            if self._body_gap_bytes > self.limits.max_header_bytes + FEED_SLICE_BYTES:
                self._refuse(f"the request's trailers or chunk framing are over {self.limits.max_header_bytes:,} bytes")

    def on_body(self, body: bytes) -> None:
        self._body_gap_bytes = 0
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self._body_gap_bytes = 0

    def on_message_complete(self) -> None:
        self._body_gap_bytes = 0
        super().on_message_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_done = False
        self._header_count = 0
        self._parsed_header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            self._refusal = f"the request has more than {self.limits.max_header_count} header lines"
            raise _HeadersRefused
        self._count_parsed(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def _count_parsed(self, size: int) -> None:
        """The request line and headers as the parser hands them over: a limit that holds however the bytes
        arrived, a whole request in one read included (the count of raw bytes sees only reads that end before
        the headers do)."""
        self._parsed_header_bytes += size
        if self._parsed_header_bytes > self.limits.max_header_bytes:
            self._refusal = f"the request headers are over {self.limits.max_header_bytes:,} bytes"
            raise _HeadersRefused

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._header_bytes = 0
        self._body_gap_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        self._headers_done = False
        self._start_header_timer()  # the next request's headers get the same deadline
        self._feed()  # what waited while the pipeline was full

    # Unread answers: a write deadline

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.write_timeout_s, self._write_deadline)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_deadline(self) -> None:
        self._write_timer = None
        self.transport.abort()  # its answers stay unread: a close would wait for them to be flushed

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused: 431 when a header limit stopped it, otherwise 400 in the API's error shape
        (uvicorn's own is plain text without the headers every answer carries)."""
        if self._refusal is not None:
            self._refuse(self._refusal)
            return
        self._cancel_header_timer()
        self._answer_and_close(BadRequest(f"the request is not valid HTTP/1.1: {msg}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._unparsed.clear()
        super().connection_lost(exc)

    def _refuse(self, message: str) -> None:
        self._refusal = message
        self._cancel_header_timer()
        self._answer_and_close(RequestHeaderTooLarge(message))

    def _answer_and_close(self, error: ClassifierError) -> None:
        """Answer `error` in the API's error shape, with the headers every answer carries, and close."""
        body = json.dumps(refusal_document(error.code, error.message)).encode()
        head = [
            f"HTTP/1.1 {int(error.status)} {error.status.phrase}".encode(),
            b"content-type: application/json",
            *(name + b": " + value for name, value in RAW_ANSWER_HEADERS),
            f"content-length: {len(body)}".encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_deadline)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self._answering():
            return  # its answer re-arms the deadline for the next request's headers
        if not self._headers_done and not self.transport.is_closing():
            self.transport.close()  # silent, or too slow to finish its headers: nothing to answer yet

    def _answering(self) -> bool:
        """Whether a request of this connection is being answered, or waits its turn behind one."""
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    # Lingering close

    def eof_received(self) -> None:
        if self.lingering:
            self.transport.close()  # the client has sent everything it will: nothing left to drain

    def still_receiving_body(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.disconnected


def protocol_for(limits: ServerSettings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with the server's limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class _LingeringTransport:
    """The connection's transport, with a `close()` that lingers (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpToolsProtocol) -> None:
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
        if self._transport.get_write_buffer_size():
            # close() waits for the answers still buffered to be flushed: under the high-water mark no
            # pause_writing ever armed the write deadline, and a client that never reads would hold them for good.
            loop = asyncio.get_running_loop()
            self._closer = loop.call_later(self._protocol.limits.write_timeout_s, self._transport.abort)

    def abort(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # write, get_extra_info, pause_reading, ...: the transport's own
        return getattr(self._transport, name)
