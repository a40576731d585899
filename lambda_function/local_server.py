"""A local HTTP server with the same routes and handler code as the Lambda function (like `sam local start-api`).

Powertools' `HttpResolverLocal` turns the shared `Router` into an ASGI app, and uvicorn serves it. Route
handlers are synchronous and run on the event loop, so requests are served one at a time, as a Lambda
container serves them; the classifier's lock keeps inference correct if that ever changes.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import HttpResolverLocal

from lambda_function.api import router
from lambda_function.service import get_service

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9696


def create_app() -> HttpResolverLocal:
    """The ASGI app; loads the model first, so a broken model fails at start-up."""
    get_service()
    app = HttpResolverLocal(enable_validation=True)
    app.include_router(router)
    return app


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workers: int = 1) -> None:
    """Serve until interrupted; with several workers, each process loads its own model and takes one request
    at a time, as a Lambda container does (the Kubernetes deployment scales pods rather than workers)."""
    import uvicorn

    if workers > 1:
        uvicorn.run("lambda_function.local_server:create_app", factory=True, host=host, port=port, workers=workers)
    else:
        uvicorn.run(create_app(), host=host, port=port, log_level="info")
