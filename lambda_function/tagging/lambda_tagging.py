"""S3 tagging as a Lambda handler, built around a tagger that is handed in: what
`lambda_function.tagging_handler` deploys, and what the CLI's `invoke` and the tests build for themselves.

Two kinds of caller, told apart by the event's shape:
- **S3 event notifications** (an upload under the watched prefix). Every record is processed, not just the
  first; keys arrive URL-encoded (spaces as `+`) and are decoded; the bucket and the version come from each
  record. Not-an-image, no-room and deleted objects are normal outcomes. Any other failure is raised after the
  remaining records were processed, so that Lambda retries the event (the records already tagged are then
  skipped) and, when retries run out, the on-failure destination keeps it: nothing is lost.
- **S3 Batch Operations** (a job over a manifest: `backfill --batch-operations`). Each task gets its own result
  code, so Batch Operations retries what a retry can fix and reports the rest
  (lambda_function/tagging/batch_operations.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event

from lambda_function.datapath.service import BreedService
from lambda_function.observability import logger, metrics, record_metric, tracer
from lambda_function.request_deadline import Deadline
from lambda_function.tagging.batch_operations import Task, is_batch_invocation, run_tasks
from lambda_function.tagging.s3_tagging import S3Tagger, TagResult

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]  # the context: Lambda's, or LocalLambdaContext


class TaggingFailed(RuntimeError):
    """Some records could not be processed; raised so that Lambda retries the event."""


def s3_tagger(service: BreedService) -> S3Tagger:
    """A tagger for `service`, speaking to S3 (or the S3-compatible server of `S3_ENDPOINT_URL`)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=service.settings.s3_endpoint_url)
    return S3Tagger(service, s3, max_object_bytes=service.settings.s3_max_object_bytes)


def tagging_handler(tagger: S3Tagger) -> LambdaHandler:
    """A Lambda handler tagging with `tagger`, logged, traced and its metrics printed per invocation."""

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        deadline = Deadline.of_lambda_invocation(context)  # an object still being decoded then is retried, not lost
        if is_batch_invocation(event):
            return _batch_operations(tagger, event, deadline)
        return _notifications(tagger, S3Event(event), deadline)

    handler: LambdaHandler = lambda_handler  # powertools' decorators are unannotated; they keep the signature
    return handler


def _notifications(tagger: S3Tagger, event: S3Event, deadline: Deadline) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    failures = []
    records = 0
    for record in event.records:
        records += 1
        bucket, key = record.s3.bucket.name, unquote_plus(record.s3.get_object.key)
        try:
            outcomes[tagger.tag_object(bucket, key, record.s3.get_object.version_id, deadline).outcome] += 1
        except Exception as error:  # every record gets its turn; the failures are raised together below
            logger.exception("tagging failed", extra={"bucket": bucket, "key": key})
            failures.append(f"s3://{bucket}/{key}: {type(error).__name__}")
    summary = {"records": records, **outcomes, "failed": len(failures)}
    for outcome, count in {**outcomes, "failed": len(failures)}.items():
        if count:
            record_metric(f"Tagging_{outcome}", MetricUnit.Count, count)
    logger.info("tagging batch done", extra={"summary": summary})
    if failures:
        raise TaggingFailed(f"{len(failures)} of {summary['records']} objects failed: {'; '.join(failures)}")
    return summary


def _batch_operations(tagger: S3Tagger, event: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
    def tag(task: Task) -> TagResult:
        return tagger.tag_object(task.bucket, task.key, task.version_id, deadline)

    response, results = run_tasks(event, tag)
    codes = Counter(str(result.code) for result in results)
    for code, count in codes.items():
        record_metric(f"BatchTasks{code}", MetricUnit.Count, count)
    logger.info("batch operations tasks done", extra={"job": event.get("job", {}).get("id"), "results": dict(codes)})
    return response
