"""Tag photos uploaded before the S3 trigger existed: `python -m lambda_function backfill s3://BUCKET/PREFIX`.

Keys are tagged as the listing yields them, with a bounded number in flight, so memory stays flat for any number
of objects (S3 calls overlap; inference is serialised by the classifier's lock). Objects already tagged by the
same model version are skipped, so a run can be stopped and started again: it resumes where it was. For millions
of photos, `--batch-operations` hands the same work to S3 Batch Operations instead
(lambda_function/tagging/batch_job.py).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from lambda_function.tagging.s3_objects import image_keys

if TYPE_CHECKING:
    from lambda_function.tagging.s3_tagging import S3Tagger

FAILED = "failed"


MAX_LISTED_FAILURES = 100  # a run over millions lists this many failed keys with their reasons, and counts the rest


DEFAULT_WORKERS = 8  # objects in flight at once: S3 calls overlap, inference is serialised by the classifier


def backfill(
    tagger: S3Tagger, bucket: str, prefix: str, workers: int = DEFAULT_WORKERS, progress: bool = True
) -> dict[str, Any]:
    """Tag every image under the prefix; returns counts per outcome and the failed keys with their reasons
    (failures do not stop the run; the next run retries them)."""
    counts: Counter[str] = Counter()
    failures: list[dict[str, str]] = []

    def tag(key: str) -> tuple[str, str | None]:
        try:
            return tagger.tag_object(bucket, key).outcome, None
        except Exception as error:  # a failed object is reported; the next run retries it
            return FAILED, f"{type(error).__name__}: {error}"

    in_flight: dict[Future[tuple[str, str | None]], str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(unit="photo", disable=not progress) as bar:

        def settle(done: set[Future[tuple[str, str | None]]]) -> None:
            for future in done:
                outcome, reason = future.result()
                counts[outcome] += 1
                if reason is not None and len(failures) < MAX_LISTED_FAILURES:
                    failures.append({"key": in_flight[future], "reason": reason})
                del in_flight[future]
                bar.update()

        for key in image_keys(tagger.s3, bucket, prefix):
            if len(in_flight) >= 2 * workers:  # keys wait in the listing, not in memory
                settle(wait(in_flight, return_when=FIRST_COMPLETED).done)
            in_flight[pool.submit(tag, key)] = key
        settle(wait(in_flight).done)
    summary: dict[str, Any] = {"images": sum(counts.values()), **counts}
    if failures:
        summary["failures"] = failures
        if counts[FAILED] > len(failures):
            summary["failures_not_listed"] = counts[FAILED] - len(failures)
    return summary
