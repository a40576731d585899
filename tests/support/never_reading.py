"""Clients that pipeline requests and never read an answer (issue 30): what the HTTP server must bound. Used by
the server's tests and by `make loadtest`; imports nothing of the project's, so the load test can use it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress

# 2,000 requests in 64 KB: httptools would parse them all from one read.
PIPELINED = b"GET /livez HTTP/1.1\r\nHost: never-reading\r\n\r\n" * 2000


@contextmanager
def never_reading_connections(port: int, count: int, payload: bytes = PIPELINED) -> Iterator[list[socket.socket]]:
    """`count` connections to 127.0.0.1:`port` that each send `payload` at once (what their socket takes) with a
    small receive buffer, and never read; closed when the block ends."""
    connections: list[socket.socket] = []
    try:
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            connection.setblocking(False)
            with suppress(BlockingIOError, ConnectionError):  # what the socket does not take is never sent
                connection.send(payload)
            connections.append(connection)
        yield connections
    finally:
        for connection in connections:
            connection.close()
