"""A real HTTP server on loopback whose routes each misbehave in one way a remote image host might."""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Route = Callable[[BaseHTTPRequestHandler], None]


class ImageHost(ThreadingHTTPServer):
    """Serves `routes` (path -> writer) and records every request path it receives; over TLS with `tls`, each
    connection's handshake in its own thread (a slow client never holds up the others)."""

    daemon_threads = True
    # socketserver's default listen backlog is 5: dozens of fetches connecting at once (the slow-upstream load
    # tests) would overflow it, and their connects would wait for SYN retransmits past the connect deadline.
    request_queue_size = 128

    def __init__(self, routes: dict[str, Route], host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.requests: list[str] = []
        self.host_headers: list[str | None] = []
        self.tls = tls
        super().__init__((host, 0), _Handler)

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client gave up during the handshake (the deadline tests make it)
        super().finish_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-request is what several tests provoke on purpose

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ImageHost

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        self.server.host_headers.append(self.headers.get("Host"))
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        # The client hanging up mid-answer is what the deadline and byte-cap tests expect of it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            route(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def running(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> Iterator[ImageHost]:
    server = ImageHost(routes, tls=tls)
    # shutdown() waits for serve_forever's next poll: half a second by default, at the end of every test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def serve_bytes(data: bytes, content_type: str = "image/jpeg") -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return route


def redirect_to(location: str, status: int = 302) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def status(code: int) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def chunked_stream(total_bytes: int, chunk_bytes: int = 64 * 1024, claimed_length: int | None = None) -> Route:
    """A chunked body of `total_bytes`, optionally under a false Content-Length header as well."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Transfer-Encoding", "chunked")
        if claimed_length is not None:
            handler.send_header("Content-Length", str(claimed_length))
        handler.end_headers()
        sent = 0
        chunk = b"\xff" * chunk_bytes
        while sent < total_bytes:
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
        handler.wfile.write(b"0\r\n\r\n")

    return route


def drip(data: bytes, interval_s: float, max_duration_s: float = 15.0) -> Route:
    """Announces the whole body, then sends it one byte per interval: each read succeeds, the whole never ends."""
    return _paced(data, piece_bytes=1, interval_s=interval_s, max_duration_s=max_duration_s)


def slowly(data: bytes, duration_s: float, pieces: int = 10) -> Route:
    """The whole body, delivered in `pieces` spread over `duration_s`: slow, but it arrives."""
    return _paced(data, piece_bytes=-(-len(data) // pieces), interval_s=duration_s / pieces, max_duration_s=math.inf)


def _paced(data: bytes, piece_bytes: int, interval_s: float, max_duration_s: float) -> Route:
    """A JPEG answer whose announced body comes a piece per interval, until it is sent or `max_duration_s` is up."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        stop_at = time.monotonic() + max_duration_s
        for start in range(0, len(data), piece_bytes):
            if time.monotonic() > stop_at:
                return
            handler.wfile.write(data[start : start + piece_bytes])
            handler.wfile.flush()
            time.sleep(interval_s)

    return route


def drip_headers(interval_s: float = 0.05, max_duration_s: float = 15.0) -> Route:
    """A status line, then a header one byte per interval: the headers never end, each read succeeds."""

    return _trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", interval_s, max_duration_s)


def continue_flood(interval_s: float = 0.01, max_duration_s: float = 15.0) -> Route:
    """`100 Continue` interim answers, one after another, never the final one (slowly: a few within the
    fetcher's cap of interim answers, and the deadline ends it; quickly: the cap does)."""

    return _trickle(b"", b"HTTP/1.1 100 Continue\r\n\r\n", interval_s, max_duration_s)


def early_hints_then(data: bytes, hints: int = 2) -> Route:
    """`103 Early Hints` interim answers (with a header each), then the image: a final answer after interims."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        for _ in range(hints):
            handler.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        serve_bytes(data)(handler)

    return route


def _trickle(first: bytes, repeated: bytes, interval_s: float, max_duration_s: float) -> Route:
    """Raw bytes: `first`, then `repeated` once per interval until `max_duration_s` has passed."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(first)
        stop_at = time.monotonic() + max_duration_s
        while time.monotonic() < stop_at:
            handler.wfile.write(repeated)
            handler.wfile.flush()
            time.sleep(interval_s)

    return route


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that completes the handshake (the kernel's backlog) and then never says a word."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@dataclass(frozen=True)
class ThrowawayAuthority:
    """A throwaway certificate authority: `ca_file` for the fetcher to trust (FETCH_CA_BUNDLE), and a server
    context with a certificate for 127.0.0.1, localhost and cats.test."""

    ca_file: Path
    server_context: ssl.SSLContext


def throwaway_authority(folder: Path) -> ThrowawayAuthority:
    import trustme

    authority = trustme.CA()
    ca_file = folder / "test-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost", "cats.test").configure_cert(context)
    return ThrowawayAuthority(ca_file, context)


def drip_status_line(interval_s: float = 0.25, max_duration_s: float = 15.0) -> Route:
    """The status line one byte per interval, over and over: no read waits long, no answer ever starts."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        stop_at = time.monotonic() + max_duration_s
        line = b"HTTP/1.1 200 OK"  # never the line's end
        while time.monotonic() < stop_at:
            for byte in line:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(interval_s)

    return route


@contextmanager
def slow_relay(target_port: int, interval_s: float = 0.05, max_duration_s: float = 15.0) -> Iterator[int]:
    """A TCP port that relays to `target_port` on loopback, passing the client's bytes on at once and the server's
    one byte per interval: wrapped around a TLS server, it drips the handshake itself."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket, paced: bool) -> None:
        stop_at = time.monotonic() + max_duration_s
        with contextlib.suppress(OSError):
            while not stop.is_set() and time.monotonic() < stop_at:
                data = source.recv(1 if paced else 65536)
                if not data:
                    return
                sink.sendall(data)
                if paced:
                    time.sleep(interval_s)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", target_port))
                for source, sink, paced in ((client, upstream, False), (upstream, client, True)):
                    threading.Thread(target=pump, args=(source, sink, paced), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
