"""The powertools internals the service relies on (lambda_function/api/powertools_adapter.py) are still there,
and still mean what the adapter takes them to mean: an upgrade that changes them fails here, by name."""

from __future__ import annotations

import inspect

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

from lambda_function.api.powertools_adapter import ConcurrentHttpResolver, route_methods
from lambda_function.api.routes import router


def test_the_routes_methods_read_from_the_router_are_those_of_the_public_openapi_schema():
    resolver = APIGatewayHttpResolver(enable_validation=True)
    resolver.include_router(router)
    schema = resolver.get_openapi_schema()
    documented = {
        path: frozenset(method.upper() for method in item.model_dump(exclude_none=True))
        for path, item in (schema.paths or {}).items()
    }

    assert route_methods(router) == documented
    assert route_methods(router)["/predict"] == {"POST"}


def test_powertools_still_keeps_the_request_state_in_class_attributes_the_adapter_overrides():
    assert "current_event" in BaseRouter.__annotations__ or hasattr(BaseRouter, "current_event")
    assert "lambda_context" in BaseRouter.__annotations__ or hasattr(BaseRouter, "lambda_context")
    resolve_source = inspect.getsource(APIGatewayHttpResolver.resolve) + inspect.getsource(
        inspect.getmro(APIGatewayHttpResolver)[1].resolve
    )
    # The resolver sets the event and context on the class (BaseRouter.current_event = ...), which the adapter's
    # per-thread properties take over; a powertools that stores them elsewhere must be looked at again.
    assert "current_event" in resolve_source and "lambda_context" in resolve_source
    assert callable(getattr(ConcurrentHttpResolver, "_to_proxy_event", None))


def test_each_thread_reads_its_own_request():
    import threading

    from tests.conftest import http_api_event

    seen: dict[str, str] = {}
    ready = threading.Barrier(2)

    def resolve_in_thread(name: str) -> None:
        resolver = ConcurrentHttpResolver()
        resolver.current_event = resolver._to_proxy_event(http_api_event("GET", f"/{name}"))
        ready.wait(5)
        seen[name] = resolver.current_event.path

    threads = [threading.Thread(target=resolve_in_thread, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert seen == {"one": "/one", "two": "/two"}
