"""Lambda entry point for tagging photos in S3: `lambda_function.tagging_handler.lambda_handler`.

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

from lambda_function.datapath.service import BreedService
from lambda_function.observability import patch_aws_sdk
from lambda_function.settings import Settings
from lambda_function.tagging.lambda_tagging import s3_tagger, tagging_handler

patch_aws_sdk()
# The one place the deployed tagger is built: at import, Lambda's init (a broken model fails the cold start).
service = BreedService(Settings.from_env())
tagger = s3_tagger(service)
lambda_handler = tagging_handler(tagger)
