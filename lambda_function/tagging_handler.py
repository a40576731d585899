"""Lambda entry point for S3 uploads: `lambda_function.tagging_handler.lambda_handler`.

Every record of the event is processed (not just the first); keys arrive URL-encoded (spaces as `+`) and are
decoded; the bucket is taken from each record. Not-an-image and deleted objects are normal outcomes. Any other
failure is raised after the remaining records were processed, so that Lambda retries the event (the records
already tagged are then skipped) and, when retries run out, the on-failure destination keeps it: nothing is lost.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source

from lambda_function.observability import logger, metrics, tracer
from lambda_function.s3_tagging import S3Tagger
from lambda_function.service import get_service

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


class TaggingFailed(RuntimeError):
    """Some records could not be processed; raised so that Lambda retries the event."""


service = get_service()
tagger = S3Tagger(service, boto3.client("s3"), max_object_bytes=service.settings.s3_max_object_bytes)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    failures = []
    records = 0
    for record in event.records:
        records += 1
        bucket, key = record.s3.bucket.name, unquote_plus(record.s3.get_object.key)
        try:
            outcomes[tagger.tag_object(bucket, key).outcome] += 1
        except Exception as error:  # every record gets its turn; the failures are raised together below
            logger.exception("tagging failed", extra={"bucket": bucket, "key": key})
            failures.append(f"s3://{bucket}/{key}: {type(error).__name__}")
    summary = {"records": records, **outcomes, "failed": len(failures)}
    logger.info("tagging batch done", extra={"summary": summary})
    if failures:
        raise TaggingFailed(f"{len(failures)} of {summary['records']} objects failed: {'; '.join(failures)}")
    return summary
