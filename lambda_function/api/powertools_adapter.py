"""The two places the service relies on powertools internals, kept here and nowhere else.

`tests/unit/test_powertools_adapter.py` fails loudly when a powertools upgrade changes either:
- **The routes' methods.** The gateway answers a wrong method with 405 and `Allow`, which needs each route's
  methods before any request. Powertools keeps them in `Router._routes`, keyed by (rule, methods, ...); its only
  public listing is the OpenAPI schema, which takes pydantic's schema generation at every cold start.
- **Request state per thread.** Powertools keeps the current event and Lambda context in class attributes shared
  by every resolver (`BaseRouter.current_event`, `BaseRouter.lambda_context`): right for Lambda, which resolves
  one event per process at a time, wrong for the HTTP server's threads resolving at once, which then read each
  other's request (the concurrency test caught an upload answered with another photo's breeds).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import Router


def route_methods(router: Router) -> dict[str, frozenset[str]]:
    """Each route's rule (`/predict`) with the methods it answers."""
    methods: dict[str, frozenset[str]] = {}
    for key in router._routes:
        rule, its_methods = key[0], key[1]
        methods[rule] = methods.get(rule, frozenset()) | frozenset(its_methods)
    return methods


_request_state = threading.local()


class ConcurrentHttpResolver(APIGatewayHttpResolver):
    """The HTTP API resolver, with the event being resolved kept per thread.

    The current event and Lambda context live in thread-local storage (see the module's docstring). The
    resolver's `context` dict, where validation leaves the parsed arguments, is per instance: each thread has its
    own resolver.
    """

    @property
    def current_event(self) -> Any:
        return getattr(_request_state, "event", None)

    @current_event.setter
    def current_event(self, value: Any) -> None:
        _request_state.event = value

    @property
    def lambda_context(self) -> Any:
        return getattr(_request_state, "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        _request_state.lambda_context = value

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        _request_state.event = self._to_proxy_event(dict(event))
        _request_state.lambda_context = context
        return super().resolve(event, context)
