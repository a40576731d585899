"""A bucket listing of any size, served page by page as S3 serves it, and what measures the memory it costs.

`peak_bytes` runs in a fresh interpreter (`python -m tests.support.many_keys`), so that nothing else the test
process does (other threads, caches filled by earlier tests) counts in the measurement.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

from tests.conftest import REPO_DIR

BUCKET = "cat-photos-listing"
PAGE_KEYS = 1000


class ManyKeys:
    """An S3 client whose listing holds `count` keys, served page by page (1,000 a page, as S3 does)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def get_paginator(self, _name: str) -> Any:
        return self

    def paginate(self, **_kwargs: Any) -> Iterator[dict[str, Any]]:
        for start in range(0, self.count, PAGE_KEYS):
            keys = range(start, min(start + PAGE_KEYS, self.count))
            yield {"Contents": [{"Key": f"uploads/{n:09d}.jpg"} for n in keys]}


class CountingSink(io.TextIOBase):
    """A text file that keeps only how many lines it was given."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


class InstantTagger:
    """A tagger that answers at once, so that a backfill measures its own bookkeeping."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def tag_object(self, _bucket: str, key: str, version_id: str | None = None) -> Any:
        from lambda_function.tagging.s3_tagging import Outcome, TagResult

        return TagResult(key, Outcome.ALREADY_TAGGED)


def peak_bytes(work: str, count: int) -> tuple[int, Any]:
    """The peak traced memory of `work` ("manifest" or "backfill") over `count` keys, and its result."""
    completed = subprocess.run(
        [sys.executable, "-m", "tests.support.many_keys", work, str(count)],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    return answer["peak"], answer["result"]


def _measure(work: str, count: int) -> dict[str, Any]:
    from lambda_function.tagging.backfill import backfill
    from lambda_function.tagging.batch_job import write_manifest
    from lambda_function.tagging.s3_objects import image_keys

    def run(n: int) -> Any:
        if work == "manifest":
            sink = CountingSink()
            return [write_manifest(image_keys(ManyKeys(n), BUCKET, "uploads/"), BUCKET, sink), sink.lines]
        return backfill(InstantTagger(ManyKeys(n)), BUCKET, "uploads/", progress=False)

    run(PAGE_KEYS)  # imports and caches, before the measurement
    tracemalloc.start()
    result = run(count)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"peak": peak, "result": result}


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], int(sys.argv[2]))))
