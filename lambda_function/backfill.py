"""Tag photos uploaded before the S3 trigger existed: `python -m lambda_function backfill s3://BUCKET/PREFIX`.

Lists the prefix, and classifies and tags every image with bounded concurrency (S3 calls overlap; inference is
serialised by the classifier's lock). Objects already tagged by the same model version are skipped, so a run can
be stopped and started again: it resumes where it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from tqdm import tqdm

from lambda_function.preprocessing import IMAGE_SUFFIXES
from lambda_function.s3_tagging import S3Tagger


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` to (bucket, prefix).

    Raises:
        ValueError: not an s3:// URL with a bucket.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r} is not like s3://BUCKET/PREFIX")
    return parts.netloc, parts.path.lstrip("/")


def image_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].lower().endswith(tuple(IMAGE_SUFFIXES)):
                yield item["Key"]


def backfill(tagger: S3Tagger, bucket: str, prefix: str, workers: int = 8, progress: bool = True) -> dict[str, int]:
    """Tag every image under the prefix; returns counts per outcome, failures included (they do not stop the run)."""
    keys = list(image_keys(tagger.s3, bucket, prefix))
    counts: Counter[str] = Counter()

    def tag(key: str) -> str:
        try:
            return tagger.tag_object(bucket, key).outcome
        except Exception:  # a failed object is counted and reported; the next run retries it
            return "failed"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for outcome in tqdm(pool.map(tag, keys), total=len(keys), unit="photo", disable=not progress):
            counts[outcome] += 1
    return {"images": len(keys), **counts}
