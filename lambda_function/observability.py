"""Powertools singletons: structured logger, X-Ray tracer, CloudWatch EMF metrics.

Outside Lambda they are harmless: the tracer disables itself when no Lambda environment is detected (or
POWERTOOLS_TRACE_DISABLED is set), and metrics are only printed when a handler decorated with
`log_metrics` returns. Logs go to stderr so that the CLI's stdout carries only its answer; Lambda ships
both streams to CloudWatch.
"""

from __future__ import annotations

import sys
import threading
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from lambda_function.settings import ObservabilitySettings

_names = ObservabilitySettings.from_env()  # module singletons, as powertools intends: read once, at import
SERVICE_NAME = _names.service_name
METRICS_NAMESPACE = _names.metrics_namespace

logger = Logger(service=SERVICE_NAME, stream=sys.stderr)
# No library is patched for X-Ray here (powertools would patch all it knows, botocore among them): predicting calls
# no AWS API, and patching botocore imports it, which costs the predict function's cold start (docs/benchmarks.md,
# "The image"). The entry points that call AWS patch what they use: `patch_aws_sdk()`.
tracer = Tracer(service=SERVICE_NAME, auto_patch=False)
metrics = Metrics(service=SERVICE_NAME, namespace=METRICS_NAMESPACE)
_metrics_lock = threading.Lock()  # powertools' metric set is not thread-safe, and the HTTP server uses threads


def patch_aws_sdk() -> None:
    """Trace the AWS SDK's calls as X-Ray subsegments (S3 for tagging), for the entry points that make them."""
    tracer.patch(modules=("botocore",))


def record_metric(name: str, unit: MetricUnit, value: float) -> None:
    """Add one EMF metric value (printed when the Lambda handler returns; in the HTTP server, at least once a
    minute and at shutdown, `flush_metrics`)."""
    with _metrics_lock:
        metrics.add_metric(name=name, unit=unit, value=value)


def count_error_answer(code: str) -> None:
    record_metric(f"ErrorCode_{code}", MetricUnit.Count, 1)


def flush_metrics() -> None:
    """Print the metric values gathered so far as one EMF document, if there are any (the HTTP server's
    periodic flush: powertools alone prints only when a Lambda handler returns or 100 values have gathered)."""
    with _metrics_lock:
        if metrics.metric_set:
            metrics.flush_metrics()


# GET /health and refused requests record no metric by design; powertools would warn on every such call.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
