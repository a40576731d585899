"""Tag photos in S3 with their breed: the logic shared by the S3-triggered handler and the backfill command.

S3's rules shape it: PutObjectTagging replaces the whole tag set, so existing tags are read and kept; an object
holds at most 10 tags, keys up to 128 and values up to 256 characters, values only letters, digits, spaces and
`_ . : / = + - @`. Tagging does not create an object, so it never fires an ObjectCreated event: the function cannot
trigger itself. An object already tagged by the same model version is skipped, which makes retries and re-runs
harmless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from lambda_function.errors import ClassifierError
from lambda_function.observability import logger
from lambda_function.service import BreedService

MAX_TAGS_PER_OBJECT = 10
MAX_TAG_VALUE_CHARS = 256
TAG_BREED = "cat-breed"
TAG_PROBABILITY = "cat-breed-probability"
TAG_DETECTED = "cat-detected"
TAG_MODEL = "cat-breed-model"
TAG_ERROR = "cat-breed-error"
OUR_TAGS = (TAG_BREED, TAG_DETECTED, TAG_MODEL, TAG_PROBABILITY, TAG_ERROR)  # in order of importance
_NOT_ALLOWED_IN_TAGS = re.compile(r"[^\w .:/=+\-@]", re.UNICODE)
_MISSING_OBJECT_CODES = {"404", "NoSuchKey", "NotFound"}


class Outcome(StrEnum):
    TAGGED = "tagged"
    ALREADY_TAGGED = "already_tagged"
    NOT_AN_IMAGE = "not_an_image"
    DELETED = "deleted"


@dataclass(frozen=True)
class TagResult:
    key: str
    outcome: Outcome
    breed: str | None = None
    dropped_tags: tuple[str, ...] = ()


def sanitise_tag_value(value: str) -> str:
    """A value S3 accepts: disallowed characters removed, spaces collapsed, at most 256 characters."""
    cleaned = re.sub(r"\s+", " ", _NOT_ALLOWED_IN_TAGS.sub("", value)).strip()
    return cleaned[:MAX_TAG_VALUE_CHARS]


def merge_tags(existing: list[dict[str, str]], ours: dict[str, str]) -> tuple[list[dict[str, str]], tuple[str, ...]]:
    """Existing tags kept (ours replaced), ours added in order of importance while the 10-tag limit allows.

    Returns:
        The new tag set and the keys of ours that did not fit.
    """
    kept = [tag for tag in existing if tag["Key"] not in OUR_TAGS]
    room = MAX_TAGS_PER_OBJECT - len(kept)
    ordered = [key for key in OUR_TAGS if key in ours]
    fitting, dropped = ordered[: max(room, 0)], tuple(ordered[max(room, 0) :])
    return kept + [{"Key": key, "Value": ours[key]} for key in fitting], dropped


class S3Tagger:
    """Classifies S3 objects with a `BreedService` and writes the answer into their tags."""

    def __init__(self, service: BreedService, s3: Any, max_object_bytes: int) -> None:
        self.service = service
        self.s3 = s3
        self.max_object_bytes = max_object_bytes
        card = service.classifier.card
        self.model_tag = sanitise_tag_value(f"{card.name}@{card.version}")

    def tag_object(self, bucket: str, key: str) -> TagResult:
        """Classify and tag one object.

        Raises:
            ClientError: any S3 failure other than the object having been deleted (so Lambda retries).
        """
        try:
            head = self.s3.head_object(Bucket=bucket, Key=key)
            existing = self.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            if any(tag["Key"] == TAG_MODEL and tag["Value"] == self.model_tag for tag in existing):
                return TagResult(key, Outcome.ALREADY_TAGGED)
            ours, outcome, breed = self._classify(bucket, key, head["ContentLength"])
            tags, dropped = merge_tags(existing, ours)
            self.s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tags})
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_OBJECT_CODES:
                logger.warning("object deleted before it could be tagged", extra={"bucket": bucket, "key": key})
                return TagResult(key, Outcome.DELETED)
            raise
        if dropped:
            logger.warning("tag limit reached", extra={"key": key, "dropped_tags": list(dropped)})
        return TagResult(key, outcome, breed, dropped)

    def _classify(self, bucket: str, key: str, size_bytes: int) -> tuple[dict[str, str], Outcome, str | None]:
        if size_bytes > self.max_object_bytes:
            return {TAG_ERROR: "image_too_large", TAG_MODEL: self.model_tag}, Outcome.NOT_AN_IMAGE, None
        data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            result = self.service.classify_bytes(data, top_k=1)
        except ClassifierError as error:
            logger.info("not a usable image", extra={"key": key, "error_code": error.code})
            return {TAG_ERROR: error.code, TAG_MODEL: self.model_tag}, Outcome.NOT_AN_IMAGE, None
        top = result.predictions[0]
        detected = "unknown" if result.cat_detected is None else str(result.cat_detected).lower()
        ours = {
            TAG_BREED: sanitise_tag_value(top.breed),
            TAG_PROBABILITY: f"{top.probability:.4f}",
            TAG_DETECTED: detected,
            TAG_MODEL: self.model_tag,
        }
        return ours, Outcome.TAGGED, top.breed
