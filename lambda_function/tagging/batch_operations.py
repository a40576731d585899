"""S3 Batch Operations invocations of the tagging function: one task per object, one result per task.

S3 Batch Operations runs "invoke a Lambda function" on every object of a manifest, with its own retries,
concurrency and completion report. It sends invocation schema 1.0 (each task names its bucket by ARN) or 2.0
(by name, plus the job's user arguments); in both, keys are URL-encoded and a version id may be given. The answer
tells it what to do with each task: `Succeeded`, `TemporaryFailure` (it retries the task) or `PermanentFailure`
(the task goes into the report as failed), each with a short result string that the report shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from lambda_function.observability import logger
from lambda_function.tagging.s3_tagging import Outcome, TagResult

SCHEMA_VERSIONS = ("1.0", "2.0")
# S3 error codes that a later try can get past: throttling, S3's own faults and timeouts, and an object that
# changed between being checked and being read (the retry reads the new one).
_RETRYABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "PreconditionFailed",
    "OperationAborted",
}
_RESULT_STRING_CHARS = 1024  # the report keeps a short string per task


class ResultCode(StrEnum):
    SUCCEEDED = "Succeeded"
    TEMPORARY_FAILURE = "TemporaryFailure"
    PERMANENT_FAILURE = "PermanentFailure"


@dataclass(frozen=True)
class Task:
    task_id: str
    bucket: str
    key: str
    version_id: str | None


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    code: ResultCode
    message: str

    def as_dict(self) -> dict[str, str]:
        return {
            "taskId": self.task_id,
            "resultCode": str(self.code),
            "resultString": self.message[:_RESULT_STRING_CHARS],
        }


def is_batch_invocation(event: Any) -> bool:
    return isinstance(event, dict) and "invocationSchemaVersion" in event and "tasks" in event


class MalformedTask(ValueError):
    """A task this function cannot act on: it gets a `PermanentFailure`, the invocation's other tasks go on."""

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(reason)
        self.task_id = task_id
        self.reason = reason


def check_schema(event: dict[str, Any]) -> None:
    """
    Raises:
        ValueError: an invocation schema this function does not know (nothing in it can be answered).
    """
    version = str(event["invocationSchemaVersion"])
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown S3 Batch Operations invocation schema {version!r}")


def parse_task(task: Any) -> Task:
    """One task, its key URL-decoded (as UTF-8, strictly: a key that does not decode names no object).

    Raises:
        MalformedTask: no task id, bucket or key, or a key that is not URL-encoded UTF-8.
    """
    task_id = str(task.get("taskId", "")) if isinstance(task, dict) else ""
    if not isinstance(task, dict) or not task_id:
        raise MalformedTask(task_id, "malformed task: no taskId")
    bucket = task.get("s3Bucket") or str(task.get("s3BucketArn", "")).partition(":::")[2]
    key = task.get("s3Key")
    if not bucket or not isinstance(key, str) or not key:
        raise MalformedTask(task_id, "malformed task: it names no bucket (s3Bucket or s3BucketArn) or no s3Key")
    try:
        decoded = unquote_plus(key, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise MalformedTask(task_id, "malformed task: its s3Key is not URL-encoded UTF-8") from None
    return Task(task_id=task_id, bucket=bucket, key=decoded, version_id=task.get("s3VersionId") or None)


def result_of(task: Task, tagged: TagResult) -> TaskResult:
    """What the tagger did, as Batch Operations reads it."""
    match tagged.outcome:
        case Outcome.TAGGED:
            dropped = f" (no room for {', '.join(tagged.dropped_tags)})" if tagged.dropped_tags else ""
            return TaskResult(task.task_id, ResultCode.SUCCEEDED, f"{tagged.breed}{dropped}")
        case Outcome.ALREADY_TAGGED:
            return TaskResult(task.task_id, ResultCode.SUCCEEDED, "already tagged")
        case Outcome.NOT_AN_IMAGE:
            return TaskResult(task.task_id, ResultCode.SUCCEEDED, f"not an image ({tagged.detail})")
        case Outcome.IGNORED:
            return TaskResult(task.task_id, ResultCode.SUCCEEDED, "not an image (by its name); left alone")
        case Outcome.TOO_LARGE:
            return TaskResult(task.task_id, ResultCode.PERMANENT_FAILURE, f"object over the size cap ({tagged.detail})")
        case Outcome.NO_ROOM:
            return TaskResult(task.task_id, ResultCode.PERMANENT_FAILURE, f"no room for tags ({tagged.detail})")
        case Outcome.DELETED:
            return TaskResult(task.task_id, ResultCode.PERMANENT_FAILURE, "no such key (or version)")
    raise AssertionError(f"unhandled outcome {tagged.outcome}")


def result_of_error(task: Task, error: Exception) -> TaskResult:
    """A failure, sorted into what a retry can fix and what it cannot."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"{code or status}: {details.get('Message', '')}".strip(": ")
        if code in _RETRYABLE_CODES or status >= 500 or status in (408, 429):
            return TaskResult(task.task_id, ResultCode.TEMPORARY_FAILURE, message)
        # Access denied, no such bucket and other refusals. A missing object or version never arrives here: the
        # tagger answers it as `Outcome.DELETED`, and `result_of` reports it.
        return TaskResult(task.task_id, ResultCode.PERMANENT_FAILURE, message)
    # Connection failures and timeouts on the way to S3 (botocore's own errors), and anything unforeseen: a retry
    # may get past them, and Batch Operations stops retrying after its own limit.
    return TaskResult(task.task_id, ResultCode.TEMPORARY_FAILURE, f"{type(error).__name__}: {error}")


def answer(event: dict[str, Any], results: Iterable[TaskResult]) -> dict[str, Any]:
    """The response Batch Operations expects. A task whose key is missing is a permanent failure: retrying
    cannot make it appear."""
    return {
        "invocationSchemaVersion": str(event["invocationSchemaVersion"]),
        "treatMissingKeysAs": str(ResultCode.PERMANENT_FAILURE),
        "invocationId": event.get("invocationId", ""),
        "results": [result.as_dict() for result in results],
    }


def run_tasks(event: dict[str, Any], tag: Callable[[Task], TagResult]) -> tuple[dict[str, Any], list[TaskResult]]:
    """Tag every task's object with `tag`; each task gets its own result, whatever happens to the others: a
    malformed task a `PermanentFailure` that says why, a failed one the result its error calls for.

    Raises:
        ValueError: an unknown invocation schema.
    """
    check_schema(event)
    results = []
    for raw in event["tasks"]:
        try:
            task = parse_task(raw)
        except MalformedTask as malformed:
            logger.warning("malformed task", extra={"task": malformed.task_id, "reason": malformed.reason})
            results.append(TaskResult(malformed.task_id, ResultCode.PERMANENT_FAILURE, malformed.reason))
            continue
        try:
            results.append(result_of(task, tag(task)))
        except Exception as error:  # every task gets its answer; Batch Operations retries the temporary ones
            logger.exception("task failed", extra={"bucket": task.bucket, "key": task.key, "task": task.task_id})
            results.append(result_of_error(task, error))
    return answer(event, results), results
