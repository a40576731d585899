"""Lambda entry point for tagging photos in S3: `lambda_function.tagging_handler.lambda_handler`.

What it does with S3 event notifications and S3 Batch Operations tasks is `lambda_function.tagging.lambda_tagging`'s;
this module only builds the deployed tagger and its handler.
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
