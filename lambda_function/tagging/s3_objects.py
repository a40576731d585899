"""S3 objects as the tagging commands name and list them: `s3://` URLs, and the photos under a prefix.

Used on the operator's machine (`backfill`, `batch_job`) as well as in Lambda, so it imports boto3's client
only through its caller and nothing of the model or the decoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from lambda_function.image_names import is_image_name


def parse_s3_url(url: str, *, key_required: bool = False) -> tuple[str, str]:
    """`s3://bucket/prefix` (or `s3://bucket/key`) to (bucket, prefix or key).

    Raises:
        ValueError: not an s3:// URL with a bucket, or (`key_required`) with nothing after the bucket.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or (key_required and not parts.path.strip("/")):
        raise ValueError(f"{url!r} is not like s3://BUCKET/{'KEY' if key_required else 'PREFIX'}")
    return parts.netloc, parts.path.lstrip("/")


def image_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """The keys under the prefix named like photos, page by page as S3 lists them."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if is_image_name(item["Key"]):
                yield item["Key"]
