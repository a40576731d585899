"""Runtime configuration, read once from the environment into a frozen dataclass.

Every knob of the serving path lives here so that the table of variables (docs/configuration.md) and the code
cannot drift apart: `Settings.from_env()` is the only place that reads `os.environ`. Values are validated at cold
start, so a typo in a deployment fails the first invocation loudly instead of misbehaving quietly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from lambda_function.container_limits import ContainerLimits, affinity_cpus

Number = TypeVar("Number", int, float)

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
# The default model (34 breeds and "No cat", docs/model.md) is committed here; `make breed-model` rebuilds it.
DEFAULT_MODEL_PATH = REPO_DIR / "models" / "cat-breeds-34.tflite"

# Lambda caps a synchronous invocation's payload at 6 MB (API Gateway's HTTP API would take 10 MB); base64 inflates
# by 4/3, and the JSON envelope needs some room, so about 4.5 MB of image is what a client can really send.
DEFAULT_MAX_UPLOAD_BYTES = 4_500_000
DEFAULT_MAX_FETCH_BYTES = 10_000_000
# A 48-megapixel phone photo passes; a decompression bomb (typically gigapixels) does not.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
# Photos in the bucket come straight from cameras and phones, so they may be larger than a URL download.
DEFAULT_S3_MAX_OBJECT_BYTES = 20_000_000
# One decode's time: accepted images decode in under 2 s on 2 cores (`make bench`); a hostile one that
# would take longer is abandoned and refused with 413 image_too_complex, also on Lambda's fractional CPUs.
DEFAULT_DECODE_TIME_BUDGET_S = 5.0
# Where `python -m lambda_function serve` listens unless told (the image listens on 0.0.0.0:8080).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9696
# How many breeds an answer lists unless the request says (`top_k`).
DEFAULT_TOP_K = 5
# What Lambda takes in a synchronous invocation, the event around the request's body included ("Request must be
# smaller than 6291456 bytes").
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
# The HTTP server's request body cap: the largest upload in base64 and room for the JSON around it, so that both
# front doors accept the same requests (6,065,536 bytes; an API Gateway event around it stays within Lambda's limit).
REQUEST_ENVELOPE_BYTES = 64 * 1024
DEFAULT_MAX_REQUEST_BYTES = 4 * math.ceil(DEFAULT_MAX_UPLOAD_BYTES / 3) + REQUEST_ENVELOPE_BYTES


class SettingsError(ValueError):
    """A configuration variable holds a value the service cannot run with."""


# Lambda credits one vCPU per 1,769 MB of memory but shows two cores from 128 MB to 3,008 MB: a second inference
# thread below 3,538 MB competes for the same credit and is throttled (docs/benchmarks.md).
LAMBDA_MB_PER_VCPU = 1769


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask's, capped by the container's CPU limit (cgroup v2), so that
    in a pod the default counts of workers and threads follow the pod, not the node (`container_limits`)."""
    return ContainerLimits.read({}).usable_cpus(affinity_cpus())


def default_inference_threads(env: Mapping[str, str]) -> int:
    """Threads the CPU credit pays for: on Lambda, one per 1,769 MB of memory; elsewhere, every available CPU."""
    memory_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory_mb.isdigit():
        return max(1, min(available_cpus(), int(memory_mb) // LAMBDA_MB_PER_VCPU))
    return available_cpus()


@dataclass(frozen=True)
class FetchSettings:
    """Limits of the URL fetcher (see `lambda_function.fetching.fetch`)."""

    allowed_ports: frozenset[int] | None = frozenset({80, 443})  # None: any port
    allow_loopback: bool = False
    connect_timeout_s: float = 3.0
    total_timeout_s: float = 10.0
    max_bytes: int = DEFAULT_MAX_FETCH_BYTES
    max_redirects: int = 3
    ca_bundle_path: str | None = None  # None: the system's certificate authorities
    user_agent: str = "cat-breed-classifier/0.1 (image fetcher)"

    def __post_init__(self) -> None:
        if self.connect_timeout_s > self.total_timeout_s:
            raise SettingsError(
                f"FETCH_CONNECT_TIMEOUT_S ({self.connect_timeout_s:g}) must not exceed "
                f"FETCH_TOTAL_TIMEOUT_S ({self.total_timeout_s:g}): the total deadline covers the connection"
            )
        if self.ca_bundle_path is not None and not Path(self.ca_bundle_path).is_file():
            raise SettingsError(f"FETCH_CA_BUNDLE={self.ca_bundle_path!r} is not a file")


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server of `python -m lambda_function serve` and the image's `server` target
    (`lambda_function.server.serve`).

    The request deadline sits above the fetch deadline, so a slow upstream is reported as the upstream's
    timeout; the graceful timeout sits above the deadline, so SIGTERM lets every request in flight finish.
    """

    workers: int = field(default_factory=available_cpus)
    # Requests in flight per worker beyond which they queue: URL fetches wait on the network, not on a CPU.
    threads_per_worker: int = 32
    # Of those, how many may be URL requests (None: three quarters): the rest are kept for uploads, which slow
    # upstreams can then never starve; a URL request beyond it gets a fast 503 `server_busy`.
    max_url_fetches: int | None = None
    # Request headers (lambda_function.server.http_protocol): bytes before they end, header lines, and the time a
    # connection has to complete them, from opening or from its last answer. Browsers send 1 to 2 KB in a dozen
    # lines; API Gateway allows 10 KB of headers in all.
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    header_timeout_s: float = 10.0
    # A connection whose answers stay unread this long (the socket's buffers full) is aborted: a client that sends
    # pipelined requests and never reads holds nothing longer.
    write_timeout_s: float = 10.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Request bodies one worker holds at once, from their first byte until their work ends (JSON parsing and
    # base64 decoding copy them once or twice more): many clients uploading at once cannot take a pod's memory.
    # A body beyond gets 503 `server_busy`; ten bodies of the largest size fit.
    max_body_bytes_in_flight: int = 10 * DEFAULT_MAX_REQUEST_BYTES
    request_deadline_s: float = 14.0
    # After SIGTERM, /readyz answers 503 this long before the worker stops accepting connections, so that the
    # load balancer stops sending first (Kubernetes removes the endpoint while the pod is still serving).
    drain_s: float = 5.0
    graceful_timeout_s: float = 20.0
    # The metrics a worker gathered are printed (EMF, on standard output) this often and at shutdown, so that a quiet
    # pod's refusals reach CloudWatch too.
    metrics_flush_s: float = 60.0

    def __post_init__(self) -> None:
        fetches = self.max_url_fetches
        if fetches is None:
            fetches = max(1, self.threads_per_worker * 3 // 4)
            object.__setattr__(self, "max_url_fetches", fetches)
        if self.threads_per_worker >= 2 and not 1 <= fetches < self.threads_per_worker:
            raise SettingsError(
                "SERVER_MAX_URL_FETCHES must be at least 1 and below SERVER_THREADS_PER_WORKER, "
                "so that uploads always have threads of their own"
            )
        if self.max_body_bytes_in_flight < self.max_request_bytes:
            raise SettingsError(
                "SERVER_MAX_BODY_BYTES_IN_FLIGHT must be at least SERVER_MAX_REQUEST_BYTES, or the largest request "
                "could never be received"
            )
        if self.graceful_timeout_s <= self.drain_s + self.request_deadline_s:
            raise SettingsError(
                "SERVER_GRACEFUL_TIMEOUT_S must exceed SERVER_DRAIN_S + SERVER_REQUEST_DEADLINE_S, "
                "or SIGTERM would cut requests in flight"
            )


@dataclass(frozen=True)
class ObservabilitySettings:
    """Names under which logs, traces and metrics appear (powertools' own variables)."""

    service_name: str = "cat-breed-classifier"
    metrics_namespace: str = "CatBreedClassifier"
    log_level: str | None = None  # None: not set, powertools' default (INFO)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ObservabilitySettings:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            service_name=env.get("POWERTOOLS_SERVICE_NAME") or default.service_name,
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or default.metrics_namespace,
            log_level=env.get("POWERTOOLS_LOG_LEVEL") or None,
        )


@dataclass(frozen=True)
class Settings:
    """Everything the serving path can be configured with."""

    model_path: Path = DEFAULT_MODEL_PATH
    inference_threads: int = field(default_factory=available_cpus)
    jpeg_draft: bool = True
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    s3_max_object_bytes: int = DEFAULT_S3_MAX_OBJECT_BYTES
    # None: AWS's own S3 endpoint; a URL: an S3-compatible server (how `sam local invoke` reaches a test one).
    s3_endpoint_url: str | None = None
    decode_time_budget_s: float = DEFAULT_DECODE_TIME_BUDGET_S
    # Images one process decodes at once; None: as many as the container's CPUs and memory allow (decode_slots).
    decode_concurrency: int | None = None
    container: ContainerLimits = field(default_factory=lambda: ContainerLimits(cpus=None, memory_bytes=None))
    fetch: FetchSettings = field(default_factory=FetchSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)

    def decode_slots(self, processes: int, decode_budget_bytes: int) -> int:
        """How many images each of `processes` serving processes may decode at once: DECODE_CONCURRENCY, or
        what the container's limits hold when each decode may take the decoder's whole memory budget."""
        if self.decode_concurrency is not None:
            return self.decode_concurrency
        cpus = self.container.usable_cpus(affinity_cpus())
        return self.container.decode_slots(processes, cpus, decode_budget_bytes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables (names in docs/configuration.md).

        Raises:
            SettingsError: a variable is set to a value that cannot be parsed or is out of range.
        """
        env = os.environ if env is None else env
        default = cls(inference_threads=default_inference_threads(env))  # every default, written once above
        return cls(
            model_path=Path(env.get("MODEL_PATH") or default.model_path),
            inference_threads=_number(env, "INFERENCE_THREADS", default.inference_threads, int),
            jpeg_draft=_bool(env, "JPEG_DRAFT", default=default.jpeg_draft),
            max_image_pixels=_number(env, "MAX_IMAGE_PIXELS", default.max_image_pixels, int),
            max_upload_bytes=_number(env, "MAX_UPLOAD_BYTES", default.max_upload_bytes, int),
            s3_max_object_bytes=_number(env, "S3_MAX_OBJECT_BYTES", default.s3_max_object_bytes, int),
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or default.s3_endpoint_url,
            decode_time_budget_s=_number(env, "DECODE_TIME_BUDGET_S", default.decode_time_budget_s, float, minimum=0.1),
            decode_concurrency=_optional_number(env, "DECODE_CONCURRENCY", int),
            container=ContainerLimits.read(env),
            fetch=_fetch_settings(env),
            server=_server_settings(env),
            observability=ObservabilitySettings.from_env(env),
        )


def _fetch_settings(env: Mapping[str, str]) -> FetchSettings:
    default = FetchSettings()
    ports = env.get("FETCH_ALLOWED_PORTS")
    return FetchSettings(
        allowed_ports=_ports(ports) if ports else default.allowed_ports,
        allow_loopback=_bool(env, "FETCH_ALLOW_LOOPBACK", default=default.allow_loopback),
        connect_timeout_s=_number(env, "FETCH_CONNECT_TIMEOUT_S", default.connect_timeout_s, float),
        total_timeout_s=_number(env, "FETCH_TOTAL_TIMEOUT_S", default.total_timeout_s, float),
        max_bytes=_number(env, "FETCH_MAX_BYTES", default.max_bytes, int),
        max_redirects=_number(env, "FETCH_MAX_REDIRECTS", default.max_redirects, int, minimum=0),
        ca_bundle_path=env.get("FETCH_CA_BUNDLE") or default.ca_bundle_path,
    )


def _server_settings(env: Mapping[str, str]) -> ServerSettings:
    default = ServerSettings()
    return ServerSettings(
        workers=_number(env, "SERVER_WORKERS", default.workers, int),
        threads_per_worker=_number(env, "SERVER_THREADS_PER_WORKER", default.threads_per_worker, int),
        max_url_fetches=_optional_number(env, "SERVER_MAX_URL_FETCHES", int),
        max_header_bytes=_number(env, "SERVER_MAX_HEADER_BYTES", default.max_header_bytes, int, minimum=1024),
        max_header_count=_number(env, "SERVER_MAX_HEADERS", default.max_header_count, int, minimum=8),
        header_timeout_s=_number(env, "SERVER_HEADER_TIMEOUT_S", default.header_timeout_s, float, minimum=0.1),
        write_timeout_s=_number(env, "SERVER_WRITE_TIMEOUT_S", default.write_timeout_s, float, minimum=0.1),
        max_request_bytes=_number(env, "SERVER_MAX_REQUEST_BYTES", default.max_request_bytes, int),
        max_body_bytes_in_flight=_number(env, "SERVER_MAX_BODY_BYTES_IN_FLIGHT", default.max_body_bytes_in_flight, int),
        request_deadline_s=_number(env, "SERVER_REQUEST_DEADLINE_S", default.request_deadline_s, float, minimum=0.1),
        drain_s=_number(env, "SERVER_DRAIN_S", default.drain_s, float, minimum=0),
        graceful_timeout_s=_number(env, "SERVER_GRACEFUL_TIMEOUT_S", default.graceful_timeout_s, float),
        metrics_flush_s=_number(env, "SERVER_METRICS_FLUSH_S", default.metrics_flush_s, float, minimum=0.1),
    )


def _bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def _number(env: Mapping[str, str], name: str, default: Number, kind: type[Number], *, minimum: float = 1) -> Number:
    value = _optional_number(env, name, kind, minimum=minimum)
    return default if value is None else value


def _optional_number(env: Mapping[str, str], name: str, kind: type[Number], *, minimum: float = 1) -> Number | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}={raw!r} must be a finite number")
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _ports(raw: str) -> frozenset[int] | None:
    if raw.strip().lower() == "any":
        return None
    try:
        ports = frozenset(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"FETCH_ALLOWED_PORTS={raw!r} is not a comma-separated list of ports or 'any'") from None
    if not ports or any(not 0 < port < 65536 for port in ports):
        raise SettingsError(f"FETCH_ALLOWED_PORTS={raw!r} must name ports between 1 and 65535")
    return ports
