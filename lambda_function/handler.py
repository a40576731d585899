"""Lambda entry point for API Gateway: `lambda_function.handler.lambda_handler`.

The model is loaded here, at import, so a broken model fails the cold start instead of the first request, and
no request pays for it. Both API Gateway payload formats are answered: REST APIs send version 1.0 events,
HTTP APIs version 2.0 (the field `version` tells them apart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths

from lambda_function.api.gateway import resolve
from lambda_function.api.routes import router
from lambda_function.datapath.service import get_service
from lambda_function.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

service = get_service()

rest_api = APIGatewayRestResolver(enable_validation=True)
rest_api.include_router(router)
http_api = APIGatewayHttpResolver(enable_validation=True)
http_api.include_router(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    resolver = http_api if isinstance(event, dict) and event.get("version") == "2.0" else rest_api
    return resolve(resolver, event, context)
