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
from lambda_function.s3_tagging import Outcome, TagResult

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


def parse_tasks(event: dict[str, Any]) -> list[Task]:
    """The tasks of an invocation, keys decoded.

    Raises:
        ValueError: an invocation schema this function does not know.
    """
    version = str(event["invocationSchemaVersion"])
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown S3 Batch Operations invocation schema {version!r}")
    tasks = []
    for task in event["tasks"]:
        bucket = task.get("s3Bucket") or str(task["s3BucketArn"]).split(":::", 1)[1]
        tasks.append(
            Task(
                task_id=str(task["taskId"]),
                bucket=bucket,
                key=unquote_plus(task["s3Key"], encoding="utf-8"),
                version_id=task.get("s3VersionId") or None,
            )
        )
    return tasks


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
    """Tag every task's object with `tag`; each task gets its own result, whatever happens to the others."""
    results = []
    for task in parse_tasks(event):
        try:
            results.append(result_of(task, tag(task)))
        except Exception as error:  # every task gets its answer; Batch Operations retries the temporary ones
            logger.exception("task failed", extra={"bucket": task.bucket, "key": task.key, "task": task.task_id})
            results.append(result_of_error(task, error))
    return answer(event, results), results
