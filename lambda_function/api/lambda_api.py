"""The API as a Lambda handler for API Gateway, built around a service that is handed in: what
`lambda_function.handler` deploys, and what the CLI's `invoke` and the tests build for themselves.

Both API Gateway payload formats are answered: REST APIs send version 1.0 events, HTTP APIs version 2.0 (the
field `version` tells them apart).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths

from lambda_function.api.gateway import resolve
from lambda_function.api.routes import serving
from lambda_function.datapath.service import BreedService
from lambda_function.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]  # the context: Lambda's, or LocalLambdaContext


def api_handler(service: BreedService) -> LambdaHandler:
    """A Lambda handler answering the API with `service`, logged, traced and its metrics printed per invocation."""
    rest_api = serving(APIGatewayRestResolver(enable_validation=True), service)
    http_api = serving(APIGatewayHttpResolver(enable_validation=True), service)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        resolver = http_api if isinstance(event, dict) and event.get("version") == "2.0" else rest_api
        return resolve(resolver, event, context)

    handler: LambdaHandler = lambda_handler  # powertools' decorators are unannotated; they keep the signature
    return handler
