"""The fuzz targets: each takes arbitrary bytes and may only ever refuse them with the API's own errors.

Anything else that escapes (an IndexError deep in a parser, a RecursionError, a MemoryError) is a bug that
would be a 500 for a client, and the fuzzer saves the input that caused it.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from fuzz import seeds
from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from lambda_function.datapath.uploads import decode_base64_image
from lambda_function.errors import ClassifierError
from lambda_function.fetching.fetch import SafeFetcher
from lambda_function.settings import FetchSettings

# Small caps keep each run fast and within memory: the caps' logic is what is exercised, not their size.
DECODE_LIMITS = DecodeLimits(max_pixels=4_000_000, memory_budget_bytes=64_000_000)
UPLOAD_CAP_BYTES = 1_000_000


def decoder(data: bytes) -> None:
    """Image bytes through the serving preprocessing (every allowed format, every Pillow mode)."""
    with contextlib.suppress(ClassifierError):
        prepare_image(data, (64, 64), DECODE_LIMITS)


def upload(data: bytes) -> None:
    """The `image` field: base64 or a data: URI."""
    with contextlib.suppress(ClassifierError):
        decode_base64_image(data.decode("utf-8", errors="replace"), UPLOAD_CAP_BYTES)


def _addresses_from(data: bytes) -> Callable[[str, int], list]:
    """A resolver whose answers come from the fuzz input: any mix of IPv4 and IPv6 addresses."""

    def resolve(_host: str, _port: int) -> list:
        answers = []
        for start in range(0, min(len(data), 64), 16):
            chunk = data[start : start + 16]
            answers.append(ipaddress.ip_address(chunk if len(chunk) == 16 else chunk[:4].ljust(4, b"\0")))
        return answers or [ipaddress.ip_address("127.0.0.1")]

    return resolve


def url(data: bytes) -> None:
    """URL parsing, IDNA and the address policy on every resolved address (no network: the resolver is the
    input's, and nothing is fetched)."""
    fetcher = SafeFetcher(FetchSettings(allowed_ports=None), resolver=_addresses_from(data[::-1]))
    try:
        target = fetcher.check_url(data.decode("utf-8", errors="replace"))
        fetcher.resolve_checked(target)
    except ClassifierError:
        pass


def request(data: bytes) -> None:
    """A request body: the strict JSON parser, then the API's request model."""
    from pydantic import ValidationError

    from lambda_function.api.gateway import parse_json_object
    from lambda_function.api.routes import PredictRequest

    with contextlib.suppress(ClassifierError, ValidationError):
        PredictRequest.model_validate(parse_json_object(data.decode("utf-8", errors="replace")))


@dataclass(frozen=True)
class FuzzTarget:
    """What a target checks, and the real inputs it starts from."""

    check: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]


# The one list of targets, by name: `make fuzz`, its test and `python -m fuzz.run NAME` all read it.
TARGETS: dict[str, FuzzTarget] = {
    "decoder": FuzzTarget(decoder, seeds.images),
    "upload": FuzzTarget(upload, seeds.uploads),
    "url": FuzzTarget(url, seeds.urls),
    "request": FuzzTarget(request, seeds.request_bodies),
}
