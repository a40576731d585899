"""Powertools singletons: structured logger, X-Ray tracer, CloudWatch EMF metrics.

Outside Lambda they are harmless: the tracer disables itself when no Lambda environment is detected (or
POWERTOOLS_TRACE_DISABLED is set), and metrics are only printed when a handler decorated with
`log_metrics` returns. Logs go to stderr so that the CLI's stdout carries only its answer; Lambda ships
both streams to CloudWatch.
"""

from __future__ import annotations

import os
import sys
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "cat-breed-classifier")
METRICS_NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "CatBreedClassifier")

logger = Logger(service=SERVICE_NAME, stream=sys.stderr)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(service=SERVICE_NAME, namespace=METRICS_NAMESPACE)

# GET /health and refused requests record no metric by design; powertools would warn on every such call.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
