"""The production HTTP server, run as a real process on loopback: the same API as Lambda, and what a
many-client server owes its clients (probes that stay fast, a body cap, deadlines, graceful shutdown)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, REPO_DIR
from tests.support import http_server
from tests.support.api_server import ServerProcess, call, running_server, wait_until
from tests.support.cgroups import memory_cgroup, oom_kills
from tests.support.images import progressive_jpeg_with_repeated_scans
from tests.support.never_reading import never_reading_connections

MAX_REQUEST_BYTES = 1_000_000
SERVER_ENV = {
    "SERVER_WORKERS": "1",
    "SERVER_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    "SERVER_DRAIN_S": "0",
    "FETCH_TOTAL_TIMEOUT_S": "4",
}


@pytest.fixture(scope="module")
def server(service_env: dict[str, str]) -> Iterator[ServerProcess]:
    with running_server({**service_env, **SERVER_ENV}) as running:
        yield running


def upload(path: Path) -> dict[str, str]:
    return {"image": base64.b64encode(path.read_bytes()).decode()}


def post_json_bytes(base_url: str, body: bytes) -> tuple[int, str | None, str]:
    """POST `body` as it is to /predict: the status, the Retry-After header and the error code (or "")."""
    request = urllib.request.Request(
        f"{base_url}/predict", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Retry-After"), ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After"), json.loads(error.read())["error"]["code"]


def raw_exchange(base_url: str, head: bytes, body_chunks: Iterator[bytes] | None = None) -> tuple[int, dict, int]:
    """Send a hand-written request, body chunk by chunk until the server answers; the status, the JSON answer
    and how many body bytes were sent before the answer came."""
    address = urlsplit(base_url)
    sent = 0
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(head)
        for chunk in body_chunks or ():
            if select.select([connection], [], [], 0)[0]:
                break
            try:
                connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            data = connection.recv(65536)
            if not data:
                break
            answer += data
    head_part, _, body = answer.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), json.loads(body), sent


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


# The API is the Lambda function's


def test_the_server_answers_the_routes_and_errors_of_the_lambda_api(server):
    assert call(server.base_url, "GET", "/health")[0] == 200
    status, breeds = call(server.base_url, "GET", "/breeds")
    assert status == 200 and len(breeds["breeds"]) == 68
    assert call(server.base_url, "POST", "/predict", {"url": "http://169.254.169.254/"}) == (
        403,
        {
            "error": {
                "code": "url_not_allowed",
                "message": "the host '169.254.169.254' resolves to a link-local "
                "address (this includes the cloud metadata service); such URLs are not allowed",
            }
        },
    )
    assert call(server.base_url, "POST", "/predict", {"image": "???"})[1]["error"]["code"] == "invalid_base64"
    status, answer = call(server.base_url, "GET", "/nope")
    assert (status, answer["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    "content_type", ["Application/JSON", "APPLICATION/JSON; charset=utf-8", "application/problem+json"]
)
def test_any_spelling_of_a_json_content_type_is_read_as_json_by_the_server(server, content_type):
    import http.client

    address = urlsplit(server.base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.request(
        "POST", "/predict", body=json.dumps(upload(CAT_PHOTOS[2])), headers={"Content-Type": content_type}
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()

    assert response.status == 200, answer
    assert answer["predictions"]


@pytest.mark.parametrize("path", ["/health", "/breeds", "/"])
def test_head_answers_like_get_without_a_body_but_with_gets_length(server, path):
    import http.client

    address = urlsplit(server.base_url)
    lengths = {}
    for method in ("GET", "HEAD"):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        lengths[method] = (response.status, response.getheader("Content-Length"), len(body))
        connection.close()

    get_status, get_length, get_body = lengths["GET"]
    assert get_status == 200 and int(get_length) == get_body > 0
    assert lengths["HEAD"] == (200, get_length, 0)


def test_the_server_keeps_answering_after_its_request_log_passes_a_pipes_64_kb(service_env):
    # One JSON access-log line per request at INFO, a few hundred bytes each: 600 requests write over 64 KB.
    with running_server({**service_env, **SERVER_ENV, "POWERTOOLS_LOG_LEVEL": "INFO"}) as logging_server:
        statuses = [call(logging_server.base_url, "GET", "/health", timeout=10)[0] for _ in range(600)]

    assert statuses == [200] * 600


def test_liveness_and_readiness_are_separate_probes(server):
    assert call(server.base_url, "GET", "/livez") == (200, {"status": "alive"})
    assert call(server.base_url, "GET", "/readyz") == (200, {"status": "ready"})


def test_concurrent_uploads_each_get_their_own_answer(server, service):
    photos = CAT_PHOTOS[:6] + DOG_PHOTOS[:6]
    expected = {p.name: [x.breed for x in service.classify_bytes(p.read_bytes(), 5).predictions] for p in photos}

    def ask(path: Path) -> tuple[str, list[str]]:
        status, body = call(server.base_url, "POST", "/predict", upload(path))
        assert status == 200, body
        return path.name, [p["breed"] for p in body["predictions"]]

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, photos * 2))

    assert answers == [(p.name, expected[p.name]) for p in photos * 2]


# Slow upstreams do not hold up anyone else


def test_health_stays_fast_and_uploads_succeed_while_eight_slow_downloads_are_in_flight(server):
    slow_photo = http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05, max_duration_s=30)
    with http_server.running({"/slow.jpg": slow_photo}) as host:
        stop = threading.Event()

        def keep_a_slow_fetch_in_flight() -> list[int]:
            statuses = []
            while not stop.is_set():
                statuses.append(call(server.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})[0])
            return statuses

        with ThreadPoolExecutor(max_workers=8) as pool:
            fetchers = [pool.submit(keep_a_slow_fetch_in_flight) for _ in range(8)]
            wait_until(lambda: len(host.requests) >= 8, timeout_s=10, what="the eight slow fetches started")

            health_seconds = []
            for _ in range(100):
                started = time.perf_counter()
                assert call(server.base_url, "GET", "/health")[0] == 200
                health_seconds.append(time.perf_counter() - started)
            uploads = [call(server.base_url, "POST", "/predict", upload(p))[0] for p in CAT_PHOTOS[:5]]
            still_in_flight = sum(not fetcher.done() for fetcher in fetchers)
            stop.set()
            fetch_statuses = [status for fetcher in fetchers for status in fetcher.result()]

    assert still_in_flight == 8
    assert uploads == [200] * 5
    # A probe queued behind the slow fetches would wait for the fetch deadline (4 s); one answered on the event
    # loop takes milliseconds, and an eighth of the deadline leaves a shared, busy machine room.
    assert sorted(health_seconds)[98] < float(SERVER_ENV["FETCH_TOTAL_TIMEOUT_S"]) / 8  # p99 of 100
    assert set(fetch_statuses) == {504}  # the fetch deadline, in the API's error shape


def test_when_the_url_fetch_slots_are_full_a_url_gets_a_fast_503_and_uploads_are_still_served(service_env):
    env = {**service_env, **SERVER_ENV, "SERVER_THREADS_PER_WORKER": "8", "SERVER_MAX_URL_FETCHES": "4"}
    env["FETCH_TOTAL_TIMEOUT_S"] = "6"
    slow_photo = http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05, max_duration_s=10)
    with (
        http_server.running({"/slow.jpg": slow_photo}) as host,
        running_server(env) as busy_server,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        slow = [
            pool.submit(call, busy_server.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})
            for _ in range(4)
        ]
        wait_until(lambda: len(host.requests) >= 4, what="four slow fetches in flight")
        started = time.monotonic()
        refused = call(busy_server.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})
        refused_after = time.monotonic() - started
        # The same request however it is spelled: an escaped key, 70 KB of padding, another key order.
        url = json.dumps(host.url("/slow.jpg"))
        spellings = [
            '{"\\u0075rl": ' + url + "}",
            '{"url": ' + url + " " * 70_000 + "}",
            '{"top_k": 3, "url": ' + url + "}",
        ]
        respelled = [post_json_bytes(busy_server.base_url, body.encode()) for body in spellings]
        readiness = call(busy_server.base_url, "GET", "/readyz")
        uploads = [call(busy_server.base_url, "POST", "/predict", upload(p))[0] for p in CAT_PHOTOS[:3]]
        results = [future.result(timeout=30)[0] for future in slow]
        wait_until(lambda: call(busy_server.base_url, "GET", "/readyz")[0] == 200, what="readiness coming back")

    assert refused[0] == 503 and refused[1]["error"]["code"] == "server_busy"
    assert refused_after < 2  # at once, not after a slow fetch's deadline
    assert [(status, retry_after, code) for status, retry_after, code in respelled] == [(503, "1", "server_busy")] * 3
    assert readiness[0] == 503  # saturated: the load balancer sends traffic elsewhere
    assert uploads == [200] * 3
    assert results == [504] * 4


def test_with_64_slow_url_fetches_at_once_uploads_are_served_at_their_usual_speed(server):
    photos = CAT_PHOTOS[:4]

    def upload_seconds() -> list[float]:
        seconds = []
        for photo in photos:
            started = time.monotonic()
            assert call(server.base_url, "POST", "/predict", upload(photo))[0] == 200
            seconds.append(time.monotonic() - started)
        return seconds

    idle = upload_seconds()
    slow_photo = http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05, max_duration_s=10)
    with http_server.running({"/slow.jpg": slow_photo}) as host, ThreadPoolExecutor(max_workers=64) as pool:
        slow = [
            pool.submit(call, server.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")}) for _ in range(64)
        ]
        wait_until(lambda: len(host.requests) >= 24, what="the URL slots filling")  # 24 of 32 threads by default
        loaded = upload_seconds()
        statuses = sorted(future.result(timeout=60)[0] for future in slow)

    # Usual speed: the same order as idle on a shared machine, far from the fetch deadline (4 s) a starved upload
    # would wait for a thread.
    assert max(loaded) < 3 * max(idle) + 1
    assert set(statuses) == {503, 504} and statuses.count(504) <= 24  # fetched until the deadline, or refused


# The body cap


def test_a_body_announced_over_the_cap_is_refused_before_it_is_sent(server):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {MAX_REQUEST_BYTES * 7}\r\n\r\n".encode()
    )

    status, answer, sent = raw_exchange(server.base_url, head)

    assert status == 413 and answer["error"]["code"] == "request_too_large"
    assert sent == 0


def test_a_chunked_body_is_refused_once_it_passes_the_cap_without_reading_the_rest(server):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 65536
    chunks = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(200))  # 13 MB if all were sent

    status, answer, sent = raw_exchange(server.base_url, head, chunks)

    assert status == 413 and answer["error"]["code"] == "request_too_large"
    assert sent < 200 * 65536 / 2


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
def test_a_client_that_sends_its_whole_oversized_body_before_reading_gets_the_413(server, announced):
    import http.client

    address = urlsplit(server.base_url)
    body = b"x" * (MAX_REQUEST_BYTES * 8)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if announced:
        connection.request("POST", "/predict", body=body, headers=headers)
    else:  # http.client sends an iterable in chunks, without a Content-Length
        connection.request(
            "POST", "/predict", body=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]), headers=headers
        )
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()

    assert response.status == 413 and answer["error"]["code"] == "request_too_large"


def test_a_refused_client_that_never_stops_sending_is_cut_off_after_a_bounded_drain(server):
    from lambda_function.server.http_protocol import LINGER_MAX_BYTES

    address = urlsplit(server.base_url)
    head = b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {LINGER_MAX_BYTES * 16}\r\n\r\n".encode()
    chunk, sent, answer = b"x" * 1_000_000, 0, b""
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(head)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < LINGER_MAX_BYTES * 16:
                connection.sendall(chunk)
                sent += len(chunk)
                while select.select([connection], [], [], 0)[0]:
                    data = connection.recv(65536)
                    if not data:
                        break
                    answer += data

    assert answer.startswith(b"HTTP/1.1 413 ") and b"request_too_large" in answer
    assert sent < LINGER_MAX_BYTES * 4  # cut off after draining at most LINGER_MAX_BYTES, not the 1 GB announced


# Request headers: size, count and deadline


def worker_pid(master_pid: int) -> int:
    """The server's (one) worker process, the master's child."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master_pid:  # its ppid
                return int(stat.parent.name)
    raise AssertionError("no worker process found")


def worker_rss_mb(master_pid: int) -> float:
    """The resident memory of the server's (one) worker process, the master's child."""
    status = Path(f"/proc/{worker_pid(master_pid)}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def send_headers(base_url: str, lines: Iterator[bytes]) -> bytes:
    """Send a request line and header lines until the server answers or closes; what it answered."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for line in lines:
                connection.sendall(line)
                if select.select([connection], [], [], 0)[0]:
                    break
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while data := connection.recv(65536):
                answer += data
    return answer


@pytest.mark.parametrize(
    "flood",
    ["one endless header line", "many header lines", "300,000 repeated header lines"],
)
def test_a_header_flood_gets_431_and_the_worker_stays_small(server, flood):
    def lines() -> Iterator[bytes]:
        if flood == "one endless header line":
            yield b"X-Long: "
            for _ in range(2000):  # 200 MB if it were all sent
                yield b"a" * 100_000
        elif flood == "many header lines":
            for i in range(20_000):
                yield f"X-Header-{i}: {'v' * 50}\r\n".encode()
        else:
            for _ in range(300_000):
                yield b"Cookie: a=b\r\n"

    before = worker_rss_mb(server.process.pid)
    answer = send_headers(server.base_url, lines())
    grown = worker_rss_mb(server.process.pid) - before

    assert answer.startswith(b"HTTP/1.1 431 ") and b"request_header_too_large" in answer
    assert grown < 50
    assert call(server.base_url, "GET", "/livez", timeout=1) == (200, {"status": "alive"})


def test_slow_and_silent_connections_are_closed_by_the_header_deadline(service_env):
    env = {**service_env, **SERVER_ENV, "SERVER_HEADER_TIMEOUT_S": "2"}
    with running_server(env) as strict_server:
        address = urlsplit(strict_server.base_url)
        connections = [socket.create_connection((address.hostname, address.port), timeout=30) for _ in range(64)]
        try:
            for index, connection in enumerate(connections):
                if index % 2:  # half drip a header byte now and then, half never say a word
                    connection.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
            started = time.monotonic()
            closed = set()
            while len(closed) < len(connections) and time.monotonic() - started < 10:
                for index, connection in enumerate(connections):
                    if index in closed:
                        continue
                    if select.select([connection], [], [], 0)[0]:
                        with contextlib.suppress(OSError):
                            if connection.recv(1) == b"":
                                closed.add(index)
                                continue
                    if index % 2:
                        with contextlib.suppress(OSError):
                            connection.send(b"a")
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            alive = call(strict_server.base_url, "GET", "/livez", timeout=2)
        finally:
            for connection in connections:
                connection.close()

    assert len(closed) == 64
    assert elapsed < 2 + 3  # the header deadline, not the 10 s this test waits at most
    assert alive == (200, {"status": "alive"})


def test_livez_answers_within_a_second_while_repeated_header_lines_stream_in(server):
    with ThreadPoolExecutor(max_workers=1) as pool:
        flood = pool.submit(send_headers, server.base_url, (b"Cookie: a=b\r\n" for _ in range(300_000)))
        probes = []
        for _ in range(20):
            started = time.monotonic()
            probes.append((call(server.base_url, "GET", "/livez", timeout=5)[0], time.monotonic() - started))
        flood.result(timeout=60)

    assert all(status == 200 and seconds < 1 for status, seconds in probes), probes


# Deadlines


@pytest.fixture(scope="module")
def impatient_server(service_env: dict[str, str]) -> Iterator[ServerProcess]:
    """A server whose request deadline (1 s) comes before its fetch deadline (4 s)."""
    with running_server({**service_env, **SERVER_ENV, "SERVER_REQUEST_DEADLINE_S": "1"}) as running:
        yield running


def test_a_request_past_its_deadline_gets_a_504_in_the_api_error_shape(impatient_server):
    slow_photo = http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05, max_duration_s=10)
    with http_server.running({"/slow.jpg": slow_photo}) as host:
        started = time.monotonic()
        status, answer = call(impatient_server.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})
        elapsed = time.monotonic() - started

    assert (status, answer["error"]["code"]) == (504, "deadline_exceeded")
    assert elapsed < float(SERVER_ENV["FETCH_TOTAL_TIMEOUT_S"])  # ended by the request deadline (1 s), not the fetch's


@pytest.fixture(scope="module")
def server_with_a_stuck_resolver(service_env: dict[str, str]) -> Iterator[ServerProcess]:
    """A server whose system resolver hangs on names under `.stuck.test`: a start-up hook in the server process
    itself (tests/support/slow_dns) makes the lookup sleep, as a resolver that never answers does."""
    env = {
        **service_env,
        **SERVER_ENV,
        "PYTHONPATH": f"{REPO_DIR / 'tests' / 'support' / 'slow_dns'}{os.pathsep}{REPO_DIR}",
        "SLOW_DNS_SUFFIX": ".stuck.test",
        "SLOW_DNS_SECONDS": "8",
    }
    with running_server(env) as running:
        yield running


@pytest.mark.parametrize(
    "upstream", ["dripping status line", "dripping headers", "1xx flood", "dripping body", "stuck DNS"]
)
def test_a_slow_upstream_ends_within_the_fetch_deadline_plus_a_second(server_with_a_stuck_resolver, upstream):
    routes = {
        "/body": http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05, max_duration_s=8),
        "/status": http_server.drip_status_line(max_duration_s=6),
        "/headers": http_server.drip_headers(max_duration_s=6),
        "/continue": http_server.continue_flood(interval_s=0.5, max_duration_s=8),
    }
    with http_server.running(routes) as host:
        url = {
            "dripping status line": host.url("/status"),
            "dripping body": host.url("/body"),
            "dripping headers": host.url("/headers"),
            "1xx flood": host.url("/continue"),
            "stuck DNS": "http://photos.stuck.test/cat.jpg",
        }[upstream]
        started = time.monotonic()
        status, answer = call(server_with_a_stuck_resolver.base_url, "POST", "/predict", {"url": url})
        elapsed = time.monotonic() - started

    assert (status, answer["error"]["code"]) == (504, "upstream_timeout")
    assert elapsed < float(SERVER_ENV["FETCH_TOTAL_TIMEOUT_S"]) + 1


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> http_server.ThrowawayAuthority:
    return http_server.throwaway_authority(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server_trusting_a_test_ca(service_env: dict[str, str], authority) -> Iterator[ServerProcess]:
    with running_server({**service_env, **SERVER_ENV, "FETCH_CA_BUNDLE": str(authority.ca_file)}) as running:
        yield running


@pytest.mark.parametrize("dripping", ["TLS handshake", "status line", "headers", "1xx lines", "body"])
def test_an_https_upstream_that_drips_ends_within_the_fetch_deadline_plus_a_second(
    server_trusting_a_test_ca, authority, dripping
):
    routes = {
        "/status.jpg": http_server.drip_status_line(),
        "/headers.jpg": http_server.drip_headers(),
        "/continue.jpg": http_server.continue_flood(interval_s=0.5),
        "/body.jpg": http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05),
        "/cat.jpg": http_server.serve_bytes(CAT_PHOTOS[0].read_bytes()),
    }
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(http_server.running(routes, tls=authority.server_context))
        url = {
            "status line": host.url("/status.jpg"),
            "headers": host.url("/headers.jpg"),
            "1xx lines": host.url("/continue.jpg"),
            "body": host.url("/body.jpg"),
        }.get(dripping) or f"https://127.0.0.1:{stack.enter_context(http_server.slow_relay(host.port))}/cat.jpg"
        started = time.monotonic()
        status, answer = call(server_trusting_a_test_ca.base_url, "POST", "/predict", {"url": url})
        elapsed = time.monotonic() - started

    assert (status, answer["error"]["code"]) == (504, "upstream_timeout")
    assert elapsed < float(SERVER_ENV["FETCH_TOTAL_TIMEOUT_S"]) + 1


def test_a_client_that_stops_sending_its_body_gets_a_408(impatient_server):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )

    status, answer, _sent = raw_exchange(impatient_server.base_url, head, iter([b'{"image": "']))

    assert (status, answer["error"]["code"]) == (408, "request_timeout")


# Graceful shutdown


def test_sigterm_turns_readiness_off_and_lets_the_request_in_flight_finish(service_env):
    env = {**service_env, **SERVER_ENV, "SERVER_DRAIN_S": "1", "FETCH_TOTAL_TIMEOUT_S": "8"}
    photo = CAT_PHOTOS[1]
    with (
        http_server.running({"/slow.jpg": http_server.slowly(photo.read_bytes(), duration_s=3)}) as host,
        running_server(env) as server,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        in_flight = pool.submit(call, server.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})
        wait_until(lambda: bool(host.requests), what="the fetch starting")
        server.terminate()
        wait_until(lambda: call(server.base_url, "GET", "/readyz")[0] != 200, what="readiness turning off")
        readiness = call(server.base_url, "GET", "/readyz")
        liveness = call(server.base_url, "GET", "/livez")
        status, answer = in_flight.result(timeout=30)
        exit_code = server.process.wait(timeout=30)

    assert readiness[0] == 503 and readiness[1]["error"]["code"] == "not_ready"
    assert liveness[0] == 200
    assert status == 200 and answer["cat_detected"] is not None
    assert exit_code == 0


def test_a_second_sigterm_stops_the_server_at_once_without_waiting_for_requests_in_flight(service_env):
    env = {**service_env, **SERVER_ENV, "FETCH_TOTAL_TIMEOUT_S": "12", "SERVER_GRACEFUL_TIMEOUT_S": "30"}
    with (
        http_server.running({"/slow.jpg": http_server.slowly(CAT_PHOTOS[1].read_bytes(), duration_s=10)}) as host,
        running_server(env) as server,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        in_flight = pool.submit(call, server.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})
        wait_until(lambda: bool(host.requests), what="the fetch starting")
        server.terminate()
        wait_until(lambda: call(server.base_url, "GET", "/readyz")[0] != 200, what="the first SIGTERM's drain")
        started = time.monotonic()
        server.terminate()
        exit_code = server.process.wait(timeout=30)
        elapsed = time.monotonic() - started
        with contextlib.suppress(Exception):  # the request in flight was cut off: that is the point
            in_flight.result(timeout=30)

    assert exit_code == 0
    assert elapsed < 5  # the request in flight needs about 9 s more: one SIGTERM waits for it


def test_ctrl_c_stops_the_server_at_once_not_after_the_graceful_timeout(service_env):
    with running_server({**service_env, **SERVER_ENV}) as server:
        assert call(server.base_url, "GET", "/health")[0] == 200
        started = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        exit_code = server.process.wait(timeout=30)
        elapsed = time.monotonic() - started

    assert exit_code == 0
    assert elapsed < 5  # the graceful timeout is 20 s: a worker that ignored the quick shutdown waited it out


# The OpenAPI document, checked against the running server by schemathesis

api_schema = schemathesis.openapi.from_path(REPO_DIR / "docs" / "openapi.json")


@api_schema.parametrize()
@hypothesis.settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(hypothesis.HealthCheck)
)
def test_the_server_answers_as_its_openapi_document_says(case, server):
    """Generated requests, valid and invalid: answers match the document, and none is a 500.

    Two of schemathesis' default checks do not fit this API and are replaced by the assertion below: a 502 or 504
    for a generated URL that cannot be fetched here is the documented answer (`not_a_server_error`), and a
    schema-valid string is rarely a decodable image, so its documented 400, 413, 415 or 422 is right
    (`positive_data_acceptance`).
    """
    response = case.call_and_validate(
        base_url=server.base_url, excluded_checks=[not_a_server_error, positive_data_acceptance], timeout=30
    )

    assert response.status_code != 500, response.text


def _answer_head(base_url: str, request: bytes) -> bytes:
    """The status line and headers of the server's answer to a hand-written request."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = connection.recv(65536)
            if not data:
                break
            answer += data
    return answer.partition(b"\r\n\r\n")[0]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{",
        f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n".encode(),
        b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(200)) + b"\r\n",
        b"NOT HTTP AT ALL\x00\r\n\r\n",
    ],
    ids=["livez", "readyz", "health", "head-page", "404", "bad-json", "413", "431", "400-unparsable"],
)
def test_every_answer_of_the_server_tells_browsers_not_to_sniff_its_type(server, request_bytes):
    head = _answer_head(server.base_url, request_bytes)
    headers = [line.lower() for line in head.split(b"\r\n")[1:]]

    assert headers.count(b"x-content-type-options: nosniff") == 1, head


def test_a_url_request_answered_504_stops_its_fetch_and_frees_its_slot_at_once(service_env):
    """One deadline per request: the fetch stops at the request's deadline (3 s here), not at its own (8 s), so
    its thread and its URL slot are free when the client gets the 504."""
    env = {**service_env, **SERVER_ENV, "SERVER_THREADS_PER_WORKER": "2", "SERVER_MAX_URL_FETCHES": "1"}
    env.update(SERVER_REQUEST_DEADLINE_S="3", FETCH_TOTAL_TIMEOUT_S="8", SERVER_GRACEFUL_TIMEOUT_S="12")
    slow_photo = http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05, max_duration_s=15)
    with http_server.running({"/slow.jpg": slow_photo}) as host, running_server(env) as busy_server:
        timed_out = call(busy_server.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})
        readiness = call(busy_server.base_url, "GET", "/readyz")[0]
        next_fetch = call(busy_server.base_url, "POST", "/predict", {"url": host.url("/missing.jpg")})

    assert (timed_out[0], timed_out[1]["error"]["code"]) == (504, "deadline_exceeded")
    assert readiness == 200  # the slot is free: no fetch is left running for an answered request
    assert next_fetch[0] == 502  # fetched (the host answers 404), not refused with 503 server_busy


MANY_MIDDLING_HEADERS = b"".join(b"X-%02d: %b\r\n" % (n, b"b" * 700) for n in range(50))


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 33_000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n",
        b"GET /health?" + b"q" * 40_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: t\r\n" + MANY_MIDDLING_HEADERS + b"\r\n",
    ],
    ids=["33 KB header", "60 KB header", "40 KB URL", "50 headers of 700 bytes"],
)
def test_headers_over_the_limit_get_431_even_when_the_whole_request_arrives_in_one_read(server, request_bytes):
    head = _answer_head(server.base_url, request_bytes)

    assert head.startswith(b"HTTP/1.1 431 "), head[:200]


# Pipelining


def server_side_connections(port: int) -> list[list[str]]:
    """The server side's established TCP connections on `port`, as rows of /proc/net/tcp and tcp6."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                rows.append(fields)
    return rows


def established_connections(port: int) -> int:
    return len(server_side_connections(port))


def unsent_bytes(port: int) -> list[int]:
    """Bytes in the kernel's send queue of each of the server's connections on `port`."""
    return [int(fields[4].split(":")[0], 16) for fields in server_side_connections(port)]


def test_clients_that_pipeline_and_never_read_hold_little_memory_and_are_aborted(service_env):
    """100 connections each send 64 KB of pipelined requests (2,000 of them) and never read an answer: the worker
    stays small, the kernel holds little for them (answers made for nobody), and each is aborted."""
    env = {**service_env, **SERVER_ENV, "SERVER_WRITE_TIMEOUT_S": "2"}
    with running_server(env) as busy_server:
        port = urlsplit(busy_server.base_url).port
        before_mb = worker_rss_mb(busy_server.process.pid)
        with never_reading_connections(port, 100):
            time.sleep(1)  # the worker parses what it was sent
            during_mb = worker_rss_mb(busy_server.process.pid)
            live = call(busy_server.base_url, "GET", "/livez", timeout=5)[0]
            unsent_seen = [0]

            def all_aborted() -> bool:
                unsent = unsent_bytes(port)
                unsent_seen.append(max(unsent, default=0))
                return not unsent

            wait_until(all_aborted, timeout_s=30, what="the unread connections aborted")

    assert live == 200
    assert during_mb - before_mb < 50, (before_mb, during_mb)  # 10 MB here; 117 MB and growing before the bound
    assert max(unsent_seen) < 192 * 1024  # 112 KB here; growing past 300 KB with the kernel's own send buffer


def test_a_pipelined_request_that_runs_past_the_header_deadline_still_gets_its_answer(service_env):
    env = {**service_env, **SERVER_ENV, "SERVER_HEADER_TIMEOUT_S": "1.5", "FETCH_TOTAL_TIMEOUT_S": "8"}
    photo = CAT_PHOTOS[0].read_bytes()
    with (
        http_server.running({"/slow.jpg": http_server.slowly(photo, duration_s=3)}) as host,
        running_server(env) as slow_server,
    ):
        body = json.dumps({"url": host.url("/slow.jpg")}).encode()
        address = urlsplit(slow_server.base_url)
        with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
            connection.sendall(
                b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
                b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while received.count(b"HTTP/1.1 ") < 2 or not received.rstrip().endswith(b"}"):
                    data = connection.recv(65536)
                    if not data:
                        break
                    received += data

    statuses = [int(part.split(b" ", 1)[0]) for part in received.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [200, 200], received[:500]


@pytest.mark.parametrize(
    ("body_start", "endless"),
    [(b'5\r\n{"a":\r\n0\r\nT: ', b"v" * 1024), (b"5;", b"x" * 1024)],
    ids=["an endless trailer", "an endless chunk extension"],
)
def test_trailers_and_chunk_framing_count_against_the_header_limit(server, body_start, endless):
    address = urlsplit(server.base_url)
    sent = 0
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body_start
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 20_000_000 and not select.select([connection], [], [], 0)[0]:
                connection.sendall(endless)
                sent += len(endless)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while data := connection.recv(65536):
                answer += data

    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert sent < 2_000_000  # refused after about 32 KB, not at the request's deadline


def test_readiness_reports_a_worker_whose_decodes_take_every_compute_slot(service_env):
    """A slow decode (a progressive JPEG of 90 scans at 16 megapixels) holds the one compute slot meanwhile."""
    env = {**service_env, **SERVER_ENV, "DECODE_CONCURRENCY": "1"}
    slow = {"image": base64.b64encode(progressive_jpeg_with_repeated_scans(80, side_px=4000)).decode()}
    with running_server(env) as busy_server, ThreadPoolExecutor(max_workers=1) as pool:
        decoding = pool.submit(call, busy_server.base_url, "POST", "/predict", slow)
        readiness = []
        while not decoding.done():
            readiness.append(call(busy_server.base_url, "GET", "/readyz", timeout=5))
            time.sleep(0.02)
        after = call(busy_server.base_url, "GET", "/readyz")[0]

    saturated = [answer for status, answer in readiness if status == 503]
    assert saturated and "decodes" in saturated[0]["error"]["message"]
    assert decoding.result()[0] == 200 and after == 200


# A pod's memory limit


def test_in_a_1_gib_pod_never_reading_pipeliners_costly_json_and_many_uploads_leave_the_worker_alive(service_env):
    """kube-config's limit (1 GiB) in a memory cgroup of the test's own, with its one worker: 300 connections that
    pipeline 2,000 requests each and never read, then 8 bodies of 6 MB of empty containers at once, then 100
    uploads of 6 MB at once (of bytes that are no image)."""
    env = {**service_env, **SERVER_ENV, "INFERENCE_THREADS": "1", "DECODE_CONCURRENCY": "1"}
    env.pop("SERVER_MAX_REQUEST_BYTES")  # the default cap, which a 6 MB body is under
    costly = ('{"x": [' + ",".join(["{}"] * 2_000_000) + "]}").encode()
    not_an_image = json.dumps({"image": base64.b64encode(os.urandom(4_400_000)).decode()}).encode()
    with memory_cgroup(1024 * 1024 * 1024) as procs, running_server(env, cgroup_procs=procs) as pod:
        worker = worker_pid(pod.process.pid)
        with never_reading_connections(urlsplit(pod.base_url).port, 300), ThreadPoolExecutor(max_workers=100) as pool:
            costly_answers = list(pool.map(lambda _: post_json_bytes(pod.base_url, costly), range(8)))
            alive = call(pod.base_url, "GET", "/livez", timeout=10)[0]
            upload_answers = list(pool.map(lambda _: post_json_bytes(pod.base_url, not_an_image), range(100)))
        same_worker = worker_pid(pod.process.pid) == worker
        killed = oom_kills(procs)

    assert [(status, code) for status, _, code in costly_answers] == [(400, "bad_request")] * 8
    assert (alive, same_worker, killed) == (200, True, 0)
    # Those the worker could hold were read and refused for what they are; the rest were told to come back.
    assert {(status, code) for status, _, code in upload_answers} == {(415, "unsupported_image"), (503, "server_busy")}


def error_codes_counted(stdout: Path) -> dict[str, float]:
    """The `ErrorCode_<code>` metric values the server printed (EMF documents, one per line), summed by code."""
    counted: dict[str, float] = {}
    for line in stdout.read_text().splitlines():
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            for name, value in document.items():
                if name.startswith("ErrorCode_"):
                    values = value if isinstance(value, list) else [value]
                    counted[name.removeprefix("ErrorCode_")] = counted.get(name.removeprefix("ErrorCode_"), 0) + sum(
                        values
                    )
    return counted


def test_a_header_flood_and_a_full_server_are_counted_and_printed_after_a_quiet_spell(service_env, tmp_path):
    """The refusals the server's front makes itself reach the dashboard's error-code widget: printed by the
    periodic flush with no other traffic (1 s here; a minute by default), not only once 100 values gathered."""
    env = {**service_env, **SERVER_ENV, "SERVER_THREADS_PER_WORKER": "2", "SERVER_MAX_URL_FETCHES": "1"}
    env.update(SERVER_METRICS_FLUSH_S="1", FETCH_TOTAL_TIMEOUT_S="8")
    stdout = tmp_path / "stdout"
    slow_photo = http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05, max_duration_s=6)
    with http_server.running({"/slow.jpg": slow_photo}) as host, running_server(env, stdout=stdout) as pod:
        flood = raw_exchange(pod.base_url, b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        with ThreadPoolExecutor(max_workers=1) as pool:
            holding = pool.submit(call, pod.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})
            wait_until(lambda: call(pod.base_url, "GET", "/readyz")[0] == 503, what="the URL slot taken")
            busy = call(pod.base_url, "POST", "/predict", {"url": host.url("/slow.jpg")})
            wait_until(lambda: {"request_header_too_large", "server_busy"} <= set(error_codes_counted(stdout)), 10)
            holding.result()

    assert (flood[0], busy[0]) == (431, 503)
    assert error_codes_counted(stdout)["request_header_too_large"] == 1
    assert error_codes_counted(stdout)["server_busy"] >= 1


def test_metrics_still_unprinted_at_sigterm_are_printed_after_the_drain(service_env, tmp_path):
    env = {**service_env, **SERVER_ENV}  # the default flush: a minute, which this test never waits for
    stdout = tmp_path / "stdout"
    with running_server(env, stdout=stdout) as pod:
        status = call(pod.base_url, "POST", "/predict", {"image": "not base64!"})[0]
        assert error_codes_counted(stdout) == {}
        pod.terminate()
        pod.process.wait(timeout=30)

    assert status == 400
    assert error_codes_counted(stdout) == {"invalid_base64": 1}
