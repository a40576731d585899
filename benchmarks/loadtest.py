"""A bounded load test of the HTTP server on loopback: `make loadtest` (results in benchmarks/results/).

The server is started as the image starts it (`python -m lambda_function serve`, a worker per CPU, the default
model); only the fetcher is allowed to reach loopback, where this test runs its own slow image host. Every phase
has a fixed request count and a time cap, so the test stops by itself:

1. uploads of a shared photo (base64 JSON, as a client sends it) from 1, 4 and 16 concurrent clients;
2. a mix: 64 URL fetches from a host that drips its answer are kept in flight (more than the server's URL slots:
   the rest get 503 `server_busy` and retry after `Retry-After`, as a polite client does) while `/health` and
   uploads go on, so that the table shows whether slow upstreams slow the uploads down;
3. uploads beside clients that pipeline and never read: 100 connections, each 64 KB of pipelined requests (2,000)
   and never a read, kept open while uploads go on;
4. uploads beside costly JSON: 4 clients keep sending 6 MB bodies of empty containers (answered 400);
5. memory: the server's resident memory (master and workers) after a warm-up and after 2,000 more uploads from
   16 clients.

Each client keeps one connection open (HTTP/1.1 keep-alive), as a real client or load balancer does. Figures are
ratios within one run where they compare, because machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lambda_function.errors import ServerBusy
from lambda_function.settings import FetchSettings
from tests.support.never_reading import never_reading_connections

REPO_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PHOTO = REPO_DIR.parent / "shared" / "photos" / "cats" / "Maine_Coon_136.jpg"
SLOW_FETCHES = 64
NEVER_READING_CONNECTIONS = 100
COSTLY_JSON = ('{"x": [' + ",".join(["{}"] * 2_000_000) + "]}").encode()  # 6 MB of empty objects
COSTLY_CLIENTS = 4
NEVER_READING_PHASE = "uploads beside never-reading pipelined clients"
PHASE_CAP_S = 240.0


@dataclass
class Phase:
    """What one phase of the test saw."""

    name: str
    clients: int
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        ordered = sorted(self.latencies_s) or [0.0]

        def percentile(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1)

        return {
            "phase": self.name,
            "clients": self.clients,
            "requests": len(self.latencies_s),
            "requests_per_s": round(len(self.latencies_s) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": percentile(0.50),
            "p95_ms": percentile(0.95),
            "p99_ms": percentile(0.99),
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
        }


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int, timeout_s: float = 60) -> None:
        self.port, self.timeout_s = port, timeout_s
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
        started = time.perf_counter()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            response.read()
            status = response.status
            if response.getheader("connection", "").lower() == "close":
                self._reconnect()
        except (OSError, http.client.HTTPException):
            status = 0  # connection-level failure, counted apart from HTTP statuses
            self._reconnect()
        return status, time.perf_counter() - started

    def _reconnect(self) -> None:
        self.connection.close()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)


@contextmanager
def kept_in_flight(name: str, port: int, clients: int, body: bytes, settle_s: float) -> Iterator[Phase]:
    """`clients` clients that keep POSTing `body` to /predict while the block runs (backing off as `Retry-After`
    says when told 503 `server_busy`); what they saw is the yielded phase, complete once the block ends."""
    phase = Phase(name, clients)
    done = threading.Event()

    def keep_sending() -> None:
        client = Client(port)
        while not done.is_set():
            status, seconds = client.request("POST", "/predict", body)
            phase.statuses[status] += 1
            phase.latencies_s.append(seconds)
            if status == 503:  # server_busy: every URL slot is taken
                done.wait(float(ServerBusy.headers["Retry-After"]))

    with ThreadPoolExecutor(max_workers=clients) as pool:
        senders = [pool.submit(keep_sending) for _ in range(clients)]
        time.sleep(settle_s)
        started = time.perf_counter()
        try:
            yield phase
        finally:
            done.set()
            for sender in senders:
                sender.result()
            phase.seconds = time.perf_counter() - started


def run_phase(
    name: str, port: int, clients: int, requests: int, make_request: Callable[[Client], tuple[int, float]]
) -> Phase:
    """`requests` requests from `clients` concurrent clients, or fewer if the phase's time cap comes first."""
    phase = Phase(name, clients)
    lock = threading.Lock()
    issued = iter(range(requests))
    stop_at = time.monotonic() + PHASE_CAP_S

    def client_loop() -> None:
        client = Client(port)
        while time.monotonic() < stop_at:
            with lock:
                if next(issued, None) is None:
                    return
            status, seconds = make_request(client)
            with lock:
                phase.statuses[status] += 1
                phase.latencies_s.append(seconds)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(client_loop) for _ in range(clients)]:
            future.result()
    phase.seconds = time.perf_counter() - started
    return phase


class _DripHandler(BaseHTTPRequestHandler):
    """Announces a photo, then sends it a byte every 50 ms: each read succeeds, the whole never arrives in time."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            for _ in range(400):  # 20 s at most
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


class _DripHost(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 would turn away fetches that all connect at once


@contextmanager
def drip_host() -> Iterator[int]:
    server = _DripHost(("127.0.0.1", 0), _DripHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(repo: Path, port: int, log_path: Path) -> Iterator[subprocess.Popen]:
    env = {
        **os.environ,
        "FETCH_ALLOW_LOOPBACK": "true",  # the slow image host of phase 2 runs on loopback
        "FETCH_ALLOWED_PORTS": "any",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lambda_function", "serve", "--port", str(port)],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while Client(port, timeout_s=1).request("GET", "/health")[0] != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start; see {log_path}")
                time.sleep(0.2)
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def server_rss_mb(master_pid: int) -> float:
    """Resident memory of the server's processes (the master and its workers), in MB."""
    pids = [master_pid]
    for task in Path(f"/proc/{master_pid}/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    total_kb = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="uploads per concurrency level (default 200)")
    parser.add_argument("--memory-requests", type=int, default=2000, help="uploads between the memory readings")
    parser.add_argument("--repo", type=Path, default=REPO_DIR, help="serve from this checkout (to compare versions)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where loadtest.json and loadtest.md go")
    args = parser.parse_args(argv)

    body = json.dumps({"image": base64.b64encode(PHOTO.read_bytes()).decode()}).encode()
    port = free_port()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def upload(client: Client) -> tuple[int, float]:
        return client.request("POST", "/predict", body)

    def health(client: Client) -> tuple[int, float]:
        return client.request("GET", "/health")

    phases: list[Phase] = []
    log_path = REPO_DIR / "build" / "loadtest-server.log"
    log_path.parent.mkdir(exist_ok=True)
    with running_server(args.repo, port, log_path) as server:
        run_phase("warm-up", port, 4, 40, upload)
        for clients in (1, 4, 16):
            phases.append(run_phase("uploads", port, clients, args.requests, upload))
            print(json.dumps(phases[-1].summary()), flush=True)

        with drip_host() as drip_port:
            slow_body = json.dumps({"url": f"http://127.0.0.1:{drip_port}/photo.jpg"}).encode()
            slow_name = "slow URL fetches (in flight meanwhile)"
            with kept_in_flight(slow_name, port, SLOW_FETCHES, slow_body, settle_s=1.0) as slow:
                phases.append(run_phase("/health during slow fetches", port, 1, 200, health))
                phases.append(run_phase("uploads during slow fetches", port, 4, args.requests // 2, upload))
            phases.append(slow)
        for phase in phases[-3:]:
            print(json.dumps(phase.summary()), flush=True)

        rss_quiet = server_rss_mb(server.pid)
        with never_reading_connections(port, NEVER_READING_CONNECTIONS):
            time.sleep(1.0)
            rss_never_reading = server_rss_mb(server.pid)
            phases.append(run_phase(NEVER_READING_PHASE, port, 4, args.requests // 2, upload))
        print(json.dumps(phases[-1].summary()), flush=True)

        costly_name = "costly JSON bodies (in flight meanwhile)"
        with kept_in_flight(costly_name, port, COSTLY_CLIENTS, COSTLY_JSON, settle_s=0.5) as costly:
            phases.append(run_phase("uploads beside costly JSON", port, 4, args.requests // 2, upload))
        phases.append(costly)
        for phase in phases[-2:]:
            print(json.dumps(phase.summary()), flush=True)

        rss_before = server_rss_mb(server.pid)
        phases.append(run_phase("memory: uploads", port, 16, args.memory_requests, upload))
        rss_after = server_rss_mb(server.pid)
        print(json.dumps(phases[-1].summary()), flush=True)

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "photo": PHOTO.name,
        "photo_bytes": PHOTO.stat().st_size,
        "seconds": round(time.perf_counter() - started),
        "phases": [phase.summary() for phase in phases],
        "never_reading": {
            "connections": NEVER_READING_CONNECTIONS,
            "rss_quiet_mb": rss_quiet,
            "rss_with_them_mb": rss_never_reading,
        },
        "memory": {
            "rss_before_mb": rss_before,
            "rss_after_mb": rss_after,
            "growth_percent": round((rss_after / rss_before - 1) * 100, 1),
            "requests_between": args.memory_requests,
        },
    }
    (args.out / "loadtest.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "loadtest.md").write_text(markdown(results))
    print(markdown(results))
    # The slow fetches end in 504 or are turned away with 503 by design; every other phase must be answered.
    errors = sum(
        count
        for p in results["phases"]
        if not p["phase"].startswith(("slow", "costly"))
        for status, count in p["statuses"].items()
        if status == "0" or status.startswith("5")
    )
    return 1 if errors else 0


def markdown(results: dict) -> str:
    lines = [
        f"Load test on loopback: {results['machine']['cpus']} CPUs, Python {results['machine']['python']}, "
        f"{results['seconds']} s; uploads are {results['photo']} ({results['photo_bytes'] / 1000:.0f} KB) as base64.",
        "",
        "| phase | clients | requests | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | answers by status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in results["phases"]:
        statuses = ", ".join(f"{code}: {count}" for code, count in p["statuses"].items())
        lines.append(
            f"| {p['phase']} | {p['clients']} | {p['requests']} | {p['requests_per_s']} | {p['p50_ms']} | "
            f"{p['p95_ms']} | {p['p99_ms']} | {statuses} |"
        )
    memory = results["memory"]
    uploads = {p["phase"]: p for p in results["phases"] if p["clients"] == 4 and "uploads" in p["phase"]}
    alone = uploads.get("uploads")
    beside = {
        "uploads during slow fetches": f"with {SLOW_FETCHES} slow URL fetches in flight",
        NEVER_READING_PHASE: (
            f"beside {NEVER_READING_CONNECTIONS} connections that pipelined 2,000 requests each and never read"
        ),
        "uploads beside costly JSON": f"beside {COSTLY_CLIENTS} clients sending 6 MB bodies of empty containers",
    }
    for phase, what in beside.items():
        during = uploads.get(phase)
        if alone and during:
            lines += [
                "",
                f"Uploads from 4 clients {what}: p50 {during['p50_ms'] / alone['p50_ms']:.2f}x and p99 "
                f"{during['p99_ms'] / alone['p99_ms']:.2f}x the same uploads alone, in this run.",
            ]
    never = results.get("never_reading")
    if never:
        lines += [
            "",
            f"Server memory with the {never['connections']} never-reading connections open: "
            f"{never['rss_with_them_mb']} MB, against {never['rss_quiet_mb']} MB just before.",
        ]
    lines += [
        "",
        f"Server memory (master and workers, resident): {memory['rss_before_mb']} MB after the warm-up and the "
        f"phases above, {memory['rss_after_mb']} MB after {memory['requests_between']:,} more uploads from 16 "
        f"clients: {memory['growth_percent']:+.1f}%.",
        f"The slow fetches end in 504 `upstream_timeout` by design: the fetch deadline "
        f"({FetchSettings().total_timeout_s:g} s) cuts a host that drips; those beyond the URL slots get 503 "
        "`server_busy` at once and retry.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
