"""Tagging a whole bucket with S3 Batch Operations, on paper: cost and wall-clock time for 1 and 100 million photos.

`python -m benchmarks.tagging_scale` (part of `make bench`) reads the measured tagging throughput of the last
benchmark run (benchmarks/results/bench.json: photos a second through the tagging code on one thread) and the
prices of benchmarks/prices.py, and writes benchmarks/results/tagging_scale.md, which docs/deploy.md quotes.
What is not measured here (no AWS account) is stated as an assumption below, once.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.prices import (
    BATCH_OPERATIONS_USD_PER_JOB,
    BATCH_OPERATIONS_USD_PER_OBJECT,
    LAMBDA_USD_PER_GB_SECOND,
    LAMBDA_USD_PER_REQUEST,
    S3_USD_PER_GET_REQUEST,
    S3_USD_PER_PUT_REQUEST,
)
from lambda_function.settings import LAMBDA_MB_PER_VCPU

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TAGGING_MEMORY_MB = LAMBDA_MB_PER_VCPU  # template.yaml's MemorySize: one vCPU, the inference thread it runs
PHOTO_COUNTS = (1_000_000, 100_000_000)
CONCURRENCIES = (100, 1000)
# Assumptions (not measured from here): the four S3 calls a photo takes (HeadObject, GetObjectTagging,
# GetObject, PutObjectTagging) at 30 ms each (AWS: small requests' median latency is "often in the tens of
# milliseconds"), and S3's documented request rates per partitioned prefix (3,500 writes a second: each photo
# writes its tags once).
S3_GET_CLASS_CALLS, S3_PUT_CLASS_CALLS = 3, 1
S3_CALL_S = 0.030
S3_WRITES_PER_S_PER_PREFIX = 3500
MODELS = {
    "cat-breeds-34 (Lite2, float16, 260 px)": "the default model",
    "EfficientNetB4 (float16, 380 px)": "a B4 model",
}


@dataclass(frozen=True)
class Scale:
    model: str
    photos: int
    task_s: float
    lambda_usd: float
    batch_usd: float
    s3_usd: float
    hours_by_concurrency: dict[int, float]

    @property
    def total_usd(self) -> float:
        return self.lambda_usd + self.batch_usd + self.s3_usd


def scale(model: str, photos_per_s_1t: float, photos: int) -> Scale:
    """Cost and time of one Batch Operations job over `photos` photos, from the measured per-photo time."""
    task_s = 1 / photos_per_s_1t + (S3_GET_CLASS_CALLS + S3_PUT_CLASS_CALLS) * S3_CALL_S
    billed_s = math.ceil(task_s * 1000) / 1000
    lambda_usd = photos * (billed_s * TAGGING_MEMORY_MB / 1024 * LAMBDA_USD_PER_GB_SECOND + LAMBDA_USD_PER_REQUEST)
    batch_usd = BATCH_OPERATIONS_USD_PER_JOB + photos * BATCH_OPERATIONS_USD_PER_OBJECT
    s3_usd = photos * (S3_GET_CLASS_CALLS * S3_USD_PER_GET_REQUEST + S3_PUT_CLASS_CALLS * S3_USD_PER_PUT_REQUEST)
    hours = {}
    for concurrency in CONCURRENCIES:
        rate = min(concurrency / task_s, S3_WRITES_PER_S_PER_PREFIX)  # photos a second, one prefix
        hours[concurrency] = photos / rate / 3600
    return Scale(model, photos, task_s, lambda_usd, batch_usd, s3_usd, hours)


def table(bench: dict[str, Any]) -> str:
    """The markdown docs/deploy.md quotes."""
    lines = [
        "| model | photos | Lambda | Batch Operations | S3 requests | total | time at 100 concurrent | at 1,000 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for name, label in MODELS.items():
        photos_per_s = bench["serving"][name]["tagging_photos_per_s_1t"]
        for photos in PHOTO_COUNTS:
            row = scale(name, photos_per_s, photos)
            hours = " | ".join(_hours(row.hours_by_concurrency[c]) for c in CONCURRENCIES)
            lines.append(
                f"| {label} | {photos // 1_000_000} million | ${row.lambda_usd:,.0f} | ${row.batch_usd:,.0f} "
                f"| ${row.s3_usd:,.0f} | **${row.total_usd:,.0f}** | {hours} |"
            )
        notes.append(f"{label} {1000 / photos_per_s:.0f} ms")
    calls = S3_GET_CLASS_CALLS + S3_PUT_CLASS_CALLS
    lines += [
        "",
        f"Per photo: the measured tagging time ({', '.join(notes)}; `make bench`) plus {calls} S3 calls assumed at "
        f"{S3_CALL_S * 1000:.0f} ms each, billed at {TAGGING_MEMORY_MB} MB. The time is capped by S3's "
        f"{S3_WRITES_PER_S_PER_PREFIX:,} writes a second per prefix.",
    ]
    return "\n".join(lines) + "\n"


def _hours(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:,.1f} h"


def main() -> int:
    bench = json.loads((RESULTS_DIR / "bench.json").read_text())
    markdown = table(bench)
    (RESULTS_DIR / "tagging_scale.md").write_text(markdown)
    sys.stdout.write(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
