"""What every API event goes through before the routes: the checks the powertools resolver does not make.

Left to itself, the resolver answers a wrong method with 404, reads any content type as JSON, and lets a body
that is not UTF-8, a bad `isBase64Encoded` body, JSON nested a thousand deep or an integer of 5,000 digits raise
inside its parser: a 500 for the client's mistake. An event that is not an API Gateway event at all raises a
`KeyError`. Both front doors (the Lambda handler and the HTTP server) resolve through `resolve` here, so every
malformed request is refused the same way, with a stable code, before any route code runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from lambda_function.api.powertools_adapter import route_methods
from lambda_function.api.routes import router
from lambda_function.errors import (
    ANSWER_HEADERS,
    BadRequest,
    ClassifierError,
    InvalidBase64,
    MethodNotAllowed,
    UnsupportedContentType,
    refusal_document,
)
from lambda_function.observability import logger
from lambda_function.request_deadline import Deadline, request_deadline

ROUTE_METHODS = route_methods(router)

# A request body is one small JSON object: `{"url": ...}` or `{"image": ...}` and `top_k`.
MAX_JSON_DEPTH = 8
MAX_INTEGER_DIGITS = 20
# A request has at most three fields (url or image, and top_k); far more is refused here, before the model
# validation lists each unknown one (400,000 of them took seconds and a 16 MB answer).
MAX_JSON_FIELDS = 32
# A request's JSON with its strings' contents left out and its whitespace dropped is a handful of characters
# (`{"":"","":5}`). One of 6 MB of empty containers took 273 MB and 2.6 s to parse and walk: a body with more
# structure than this is refused from its text, before any object is built (linear in its bytes, whatever its shape).
MAX_JSON_SKELETON_CHARS = 1024
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: one step per run of plain characters
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]+")


def resolve(resolver: ApiGatewayResolver, event: Any, context: Any, deadline: Deadline | None = None) -> dict[str, Any]:
    """Check `event`, then let `resolver` answer it; a refusal is answered in the API's error shape.

    HEAD is answered as GET without a body (RFC 9110), so `HEAD /health` works as load balancers expect. The work
    stops at `deadline`, by default the Lambda invocation's (`lambda_function.request_deadline`).
    """
    with request_deadline(deadline or Deadline.of_lambda_invocation(context)):
        response = _resolve_checked(resolver, event, context)
    return _with_answer_headers(response)


def _with_answer_headers(response: dict[str, Any]) -> dict[str, Any]:
    """The response with the headers every answer carries, in the form it already uses (a REST API answer keeps
    its headers in `multiValueHeaders`)."""
    if response.get("multiValueHeaders") and not response.get("headers"):
        added = {name: [value] for name, value in ANSWER_HEADERS.items()}
        return {**response, "multiValueHeaders": {**added, **response["multiValueHeaders"]}}
    return {**response, "headers": {**ANSWER_HEADERS, **(response.get("headers") or {})}}


def _resolve_checked(resolver: ApiGatewayResolver, event: Any, context: Any) -> dict[str, Any]:
    request = _read_request(event)
    if isinstance(request, dict):
        return request
    method, path, headers = request
    allowed = ROUTE_METHODS.get(path)
    if allowed is not None and method not in allowed and not (method == "HEAD" and "GET" in allowed):
        methods = ", ".join(sorted(allowed | ({"HEAD"} if "GET" in allowed else set())))
        refusal = MethodNotAllowed(f"{path} answers {methods}, not {method}")
        return _refuse(refusal, event, extra_headers={"Allow": methods})
    if method == "HEAD":
        response = resolver.resolve(_with_method(event, "GET"), context)
        # GET's length, not the empty body's (RFC 9110, 9.3.2: HEAD's Content-Length is what GET would send).
        headers = {**response.get("headers", {}), "Content-Length": str(_body_bytes(response))}
        return {**response, "headers": headers, "body": "", "isBase64Encoded": False}
    if method in {"POST", "PUT", "PATCH"}:
        try:
            event = _with_checked_json_body(event, headers)
        except ClassifierError as error:
            return _refuse(error, event)
    return resolver.resolve(event, context)


def http_api_event(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    query: str = "",
    source_ip: str = "",
    request_id: str = "",
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """A request as the API Gateway HTTP API (payload format 2.0) event Lambda receives for it: how the HTTP
    server and the pre-traffic check hand requests to the one API. `headers` are lower-cased, repeats joined."""
    headers = headers or {}
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode("ascii"), True
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def _body_bytes(response: dict[str, Any]) -> int:
    """The byte length of a proxy response's body, base64-encoded or text."""
    body = response.get("body") or ""
    return len(base64.b64decode(body)) if response.get("isBase64Encoded") else len(body.encode("utf-8"))


def _read_request(event: Any) -> tuple[str, str, dict[str, str]] | dict[str, Any]:
    """(method, path, lower-cased headers) of an API Gateway event, or the answer to an event that is not one."""
    try:
        if event.get("version") == "2.0":
            method, path = event["requestContext"]["http"]["method"], event["rawPath"]
        else:
            method, path = event["httpMethod"], event["path"]
        headers = {str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()}
        if not isinstance(method, str) or not isinstance(path, str):
            raise TypeError("method and path must be strings")
    except (AttributeError, KeyError, TypeError) as error:
        logger.warning("not an API Gateway event", extra={"problem": repr(error)[:200]})
        return _proxy_response(
            HTTPStatus.BAD_REQUEST,
            refusal_document("bad_event", "the event is not an API Gateway proxy event (REST API or HTTP API)"),
        )
    return method.upper(), path, headers


def _with_method(event: dict[str, Any], method: str) -> dict[str, Any]:
    if event.get("version") == "2.0":
        http = {**event["requestContext"]["http"], "method": method}
        return {**event, "requestContext": {**event["requestContext"], "http": http}}
    return {**event, "httpMethod": method}


def _with_checked_json_body(event: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The event with its body checked to be one small JSON object, as plain text.

    Raises:
        UnsupportedContentType: a Content-Type other than JSON (none at all is read as JSON).
        InvalidBase64: `isBase64Encoded` with a body that is not base64.
        BadRequest: not UTF-8, not JSON, not an object, nested too deep, or a number too long.
    """
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedContentType(
            f"the body must be JSON (Content-Type: application/json), not {content_type[:100]}"
        )
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise BadRequest("the body must be JSON text")
    raw: bytes | str = body
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidBase64("the request body is flagged as base64 but is not valid base64") from None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8 text") from None
    parse_json_object(raw)  # to check it; powertools parses the text again for validation
    # powertools' own check of the content type is case-sensitive and knows no `+json`: once accepted here, the
    # body is JSON, and the event says so in the one spelling it reads (else a 500 for Application/JSON).
    headers_out = {
        name: ("application/json" if name.lower() == "content-type" else value)
        for name, value in (event.get("headers") or {}).items()
    }
    checked = {**event, "body": raw, "isBase64Encoded": False, "headers": headers_out}
    if event.get("multiValueHeaders"):
        checked["multiValueHeaders"] = {
            name: (["application/json"] if name.lower() == "content-type" else values)
            for name, values in event["multiValueHeaders"].items()
        }
    return checked


def parse_json_object(text: str) -> dict[str, Any]:
    """Parse a request body strictly: a JSON object, at most `MAX_JSON_DEPTH` deep, no huge numbers, no NaN.

    Raises:
        BadRequest: with a message that says which rule the body broke.
    """
    skeleton_chars = len(_JSON_WHITESPACE.sub("", _JSON_STRING.sub('""', text)))
    if skeleton_chars > MAX_JSON_SKELETON_CHARS:
        raise BadRequest(
            f"the JSON body has more structure than a request needs ({skeleton_chars:,} characters outside its "
            f"strings; a request has url or image, and top_k)"
        )
    try:
        document = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except BadRequest:
        raise
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest('the JSON body must be an object, such as {"url": "https://..."}')
    if len(document) > MAX_JSON_FIELDS:
        raise BadRequest(f"the JSON body has {len(document):,} fields; a request has url or image, and top_k")
    if _depth(document) > MAX_JSON_DEPTH:
        raise BadRequest(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
    return document


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise BadRequest(f"the JSON body holds a number longer than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _no_constant(name: str) -> float:
    raise BadRequest(f"the JSON body holds {name}, which JSON does not allow")


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (the parser already refused what would overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _refuse(
    error: ClassifierError, event: dict[str, Any], extra_headers: dict[str, str] | None = None
) -> dict[str, Any]:
    logger.info("request refused", extra={"error_code": error.code, "status": int(error.status)})
    return _proxy_response(error.status, refusal_document(error.code, error.message), extra_headers)


def _proxy_response(
    status: int, document: dict[str, Any], extra_headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": int(status),
        "headers": {"Content-Type": "application/json", **(extra_headers or {})},
        "body": json.dumps(document),
        "isBase64Encoded": False,
    }
