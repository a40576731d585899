"""Lambda entry point for API Gateway: `lambda_function.handler.lambda_handler`.

The one place the deployed API's service is built: here, at import, which is Lambda's init, so that a broken
model fails the cold start instead of the first request, and no request pays for loading it. The routes take the
service from the handler (`lambda_function.api.lambda_api`), not from a global.
"""

from __future__ import annotations

from lambda_function.api.lambda_api import api_handler
from lambda_function.datapath.service import BreedService
from lambda_function.settings import Settings

service = BreedService(Settings.from_env())
lambda_handler = api_handler(service)
