"""Tag photos in S3 with their breed: the logic shared by the S3-triggered handler and the backfill command.

S3's rules shape it: PutObjectTagging replaces the whole tag set, so existing tags are read and kept; an object
holds at most 10 tags, keys up to 128 and values up to 256 characters, values only letters, digits, spaces and
`_ . : / = + - @`. Tagging does not create an object, so it never fires an ObjectCreated event: the function cannot
trigger itself. An object already tagged by the same model version is skipped, which makes retries and re-runs
harmless.

The tagger never reports more than it did: it reads and tags the object it checked (by version, or by ETag where
the bucket keeps no versions), reads at most the size cap whatever the object said its size was, and writes the
answer together with the model version (what makes a retry see "already tagged") or not at all. Where the bucket
keeps no versions, tags belong to whatever object holds the key when they are written, so the ETag is checked
again after tagging: an object replaced meanwhile is classified and tagged again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lambda_function.errors import ClassifierError, DeadlineExceeded
from lambda_function.image_names import is_image_name
from lambda_function.observability import logger
from lambda_function.request_deadline import Deadline

if TYPE_CHECKING:
    from lambda_function.datapath.service import BreedService

MAX_TAGS_PER_OBJECT = 10
MAX_TAG_VALUE_CHARS = 256
TAG_BREED = "cat-breed"
TAG_PROBABILITY = "cat-breed-probability"
TAG_DETECTED = "cat-detected"
TAG_IDENTIFIED = "cat-breed-identified"
TAG_MODEL = "cat-breed-model"
TAG_ERROR = "cat-breed-error"
TAG_COAT = "cat-coat"
TAG_DESCRIPTION = "cat-description"
# Ours in order of importance: the answer (a breed, or why there is none), the model version, then the details.
OUR_TAGS = (TAG_BREED, TAG_ERROR, TAG_MODEL, TAG_DESCRIPTION, TAG_IDENTIFIED, TAG_DETECTED, TAG_COAT, TAG_PROBABILITY)
# The answer and the model version are written together or not at all: an answer without its version would be
# classified again by every retry, and a version without its answer would claim a result that is not there.
ESSENTIAL_TAGS = 2
_NOT_ALLOWED_IN_TAGS = re.compile(r"[^\w .:/=+\-@]", re.UNICODE)
_MISSING_OBJECT_CODES = {"404", "NoSuchKey", "NoSuchVersion", "NotFound"}
# Tries at an object without versions that keeps being replaced while it is tagged, before its event is retried.
MAX_TAGGING_ATTEMPTS = 3


class ObjectKeptChanging(RuntimeError):
    """An object without versions was replaced during each try at tagging it: a retry of the event may get past."""


class Outcome(StrEnum):
    TAGGED = "tagged"
    ALREADY_TAGGED = "already_tagged"
    NOT_AN_IMAGE = "not_an_image"  # named like a photo but not one: tagged with the error
    TOO_LARGE = "too_large"  # over the size cap: tagged with the error, never read past the cap
    NO_ROOM = "no_room"  # the object's own tags leave no room for the answer: nothing written
    IGNORED = "ignored"  # not named like a photo: neither read nor tagged
    DELETED = "deleted"


@dataclass(frozen=True)
class TagResult:
    key: str
    outcome: Outcome
    breed: str | None = None
    dropped_tags: tuple[str, ...] = ()
    detail: str = ""  # the error code, the sizes, or the count of the object's own tags


def sanitise_tag_value(value: str) -> str:
    """A value S3 accepts: disallowed characters removed, spaces collapsed, at most 256 characters."""
    cleaned = re.sub(r"\s+", " ", _NOT_ALLOWED_IN_TAGS.sub("", value)).strip()
    return cleaned[:MAX_TAG_VALUE_CHARS]


def merge_tags(
    existing: list[dict[str, str]], ours: dict[str, str]
) -> tuple[list[dict[str, str]], tuple[str, ...]] | None:
    """Existing tags kept (ours replaced), ours added in order of importance while the 10-tag limit allows.

    Returns:
        The new tag set and the keys of ours that did not fit; None when not even the answer and the model
        version fit (`ESSENTIAL_TAGS`), and the tag set is to be left as it is.
    """
    kept = [tag for tag in existing if tag["Key"] not in OUR_TAGS]
    room = MAX_TAGS_PER_OBJECT - len(kept)
    ordered = [key for key in OUR_TAGS if key in ours]
    if room < min(ESSENTIAL_TAGS, len(ordered)):
        return None
    fitting, dropped = ordered[:room], tuple(ordered[room:])
    return kept + [{"Key": key, "Value": ours[key]} for key in fitting], dropped


class S3Tagger:
    """Classifies S3 objects with a `BreedService` and writes the answer into their tags."""

    def __init__(self, service: BreedService, s3: Any, max_object_bytes: int) -> None:
        self.service = service
        self.s3 = s3
        self.max_object_bytes = max_object_bytes
        card = service.classifier.card
        self.model_tag = sanitise_tag_value(f"{card.name}@{card.version}")

    def tag_object(
        self, bucket: str, key: str, version_id: str | None = None, deadline: Deadline | None = None
    ) -> TagResult:
        """Classify and tag one object: the version given, or the current one. An image that takes more than the
        decode time budget is tagged with its error, as other unusable images are: a retry would end the same way.

        Raises:
            DeadlineExceeded: `deadline` (the invocation's) passed before the object was
                classified; nothing was written, and a retry has the time.
            ClientError: any S3 failure other than the object (or version) being gone, so that the caller
                retries; among them 412 PreconditionFailed when the object changed after it was checked.
            ObjectKeptChanging: an object without versions was replaced while it was being tagged, every time.
        """
        if not is_image_name(key):
            return TagResult(key, Outcome.IGNORED)
        try:
            for attempt in range(MAX_TAGGING_ATTEMPTS):
                result, replaced = self._tag_once(bucket, key, version_id, attempt == 0, deadline)
                if not replaced:
                    return result
                # Without versions, tags belong to whatever object holds the key now: the answer about the old
                # bytes may sit on the new ones, where its model tag would make the new upload's own event skip
                # them as "already tagged". Classify what is there now, whatever its tags say.
                logger.warning("object replaced while it was tagged; tagging it again", extra={"key": key})
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_OBJECT_CODES:
                logger.warning("object deleted before it could be tagged", extra={"bucket": bucket, "key": key})
                return TagResult(key, Outcome.DELETED)
            raise
        raise ObjectKeptChanging(f"s3://{bucket}/{key} was replaced while it was tagged, {MAX_TAGGING_ATTEMPTS} times")

    def _tag_once(
        self, bucket: str, key: str, version_id: str | None, trust_existing_tags: bool, deadline: Deadline | None
    ) -> tuple[TagResult, bool]:
        """Tag the object once; and whether it was replaced meanwhile (objects without versions only), in which
        case the tags just written may describe other bytes than those it now holds."""
        head = self.s3.head_object(Bucket=bucket, Key=key, **_version(version_id))
        # From here on, every call names the object that was checked.
        pinned = _version(version_id or head.get("VersionId"))
        existing = self.s3.get_object_tagging(Bucket=bucket, Key=key, **pinned)["TagSet"]
        if trust_existing_tags and any(tag["Key"] == TAG_MODEL and tag["Value"] == self.model_tag for tag in existing):
            return TagResult(key, Outcome.ALREADY_TAGGED), False
        ours, result = self._classify(bucket, key, head, pinned, deadline)
        merged = merge_tags(existing, ours)
        if merged is None:
            logger.warning("no room for tags", extra={"key": key, "tags": len(existing)})
            return TagResult(key, Outcome.NO_ROOM, detail=f"it has {len(existing)} tags of its own"), False
        tags, dropped = merged
        self.s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tags}, **pinned)
        if dropped:
            logger.warning("tag limit reached", extra={"key": key, "dropped_tags": list(dropped)})
        tagged = TagResult(key, result.outcome, result.breed, dropped, result.detail)
        return tagged, not pinned and self._replaced_since(bucket, key, head["ETag"])

    def _replaced_since(self, bucket: str, key: str, etag: str) -> bool:
        try:
            current: str = self.s3.head_object(Bucket=bucket, Key=key)["ETag"]
            return current != etag
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_OBJECT_CODES:
                return False  # deleted since: nothing holds the tags
            raise

    def _classify(
        self, bucket: str, key: str, head: dict[str, Any], pinned: dict[str, str], deadline: Deadline | None
    ) -> tuple[dict[str, str], TagResult]:
        cap = self.max_object_bytes
        if head["ContentLength"] > cap:
            return self._refused(key, Outcome.TOO_LARGE, "image_too_large", f"{head['ContentLength']} bytes, cap {cap}")
        # Without a version, the ETag pins the read: an object replaced since the check answers 412.
        body = self.s3.get_object(Bucket=bucket, Key=key, **(pinned or {"IfMatch": head["ETag"]}))["Body"]
        try:
            data = body.read(cap + 1)  # never more than the cap, whatever the object said its size was
        finally:
            body.close()
        if len(data) > cap:
            return self._refused(key, Outcome.TOO_LARGE, "image_too_large", f"over {cap} bytes")
        try:
            classified = self.service.classify_bytes(data, top_k=1, deadline=deadline)
        except DeadlineExceeded:
            raise  # the invocation's time, not the image, ran out
        except ClassifierError as error:
            logger.info("not a usable image", extra={"key": key, "error_code": error.code})
            return self._refused(key, Outcome.NOT_AN_IMAGE, error.code, error.code)
        top = classified.predictions[0]
        ours = {
            TAG_BREED: sanitise_tag_value(top.breed),
            TAG_PROBABILITY: f"{top.probability:.4f}",
            TAG_DETECTED: _tag_value(classified.cat_detected),
            TAG_IDENTIFIED: _tag_value(classified.breed_identified),
            TAG_MODEL: self.model_tag,
        }
        if classified.description is not None:  # a cat was detected: what a shelter would write of it
            ours[TAG_DESCRIPTION] = sanitise_tag_value(classified.description)
        if classified.coat is not None:
            ours[TAG_COAT] = classified.coat.length or "unclear"
        return ours, TagResult(key, Outcome.TAGGED, top.breed)

    def _refused(self, key: str, outcome: Outcome, code: str, detail: str) -> tuple[dict[str, str], TagResult]:
        return {TAG_ERROR: code, TAG_MODEL: self.model_tag}, TagResult(key, outcome, detail=detail)


def _tag_value(value: bool | None) -> str:
    """A yes-or-no answer as a tag value: "true", "false", or "unknown" where the API answers null."""
    return "unknown" if value is None else str(value).lower()


def _version(version_id: str | None) -> dict[str, str]:
    """The VersionId argument of an S3 call, when there is a version to name."""
    return {"VersionId": version_id} if version_id and version_id != "null" else {}
