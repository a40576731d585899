"""The client-facing error family: each error carries a stable code and the HTTP status it maps to.

Modules on the data path (fetch, decode, request parsing) raise these; the API maps them to
`{"error": {"code", "message"}}` in one place. Messages are written for the client and never contain
a stack trace, a local path or an internal address.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import ClassVar

MAX_ERROR_MESSAGE_CHARS = 1000  # whatever a message quotes, an error answer stays small (Lambda allows 6 MB)
# Headers of every answer, whichever layer makes it (the API, the server's front, its connection rules): a browser
# must never read a JSON answer, or an error quoting a client's input, as anything but what its Content-Type says.
ANSWER_HEADERS = {"X-Content-Type-Options": "nosniff"}


def error_document(code: str, message: str) -> dict[str, dict[str, str]]:
    """The body of an error answer (`ErrorResponse`), its message capped at `MAX_ERROR_MESSAGE_CHARS`. Answers
    are built with `refusal_document`, which also counts them."""
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."
    return {"error": {"code": code, "message": message}}


def refusal_document(code: str, message: str) -> dict[str, dict[str, str]]:
    """The body of every error answer, whichever layer refuses the request (the routes, the event checks, the
    server's front and its connection rules), counted as it is built under `ErrorCode_<code>`: the dashboard's
    "error answers by code", which so shows header floods (431) and a full server (503) too."""
    from lambda_function.observability import count_error_answer  # observability's powertools stay off this import

    count_error_answer(code)
    return error_document(code, message)


class ClassifierError(Exception):
    """Base class: a request the service cannot honour, through the client's or the upstream's fault."""

    code = "bad_request"
    status = HTTPStatus.BAD_REQUEST
    # Headers its answer carries besides ANSWER_HEADERS (whichever layer answers it).
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ClassifierError):
    """Malformed body, missing or conflicting fields."""


class UnsupportedContentType(ClassifierError):
    """The request body is declared as something other than JSON."""

    code = "unsupported_content_type"
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class MethodNotAllowed(ClassifierError):
    """The route exists, but not with this method (the answer carries an `Allow` header)."""

    code = "method_not_allowed"
    status = HTTPStatus.METHOD_NOT_ALLOWED


class InvalidUrl(ClassifierError):
    """The URL cannot be parsed or uses a scheme, port or form the fetcher refuses on its face."""

    code = "invalid_url"


class InvalidBase64(ClassifierError):
    """The `image` field is not valid base64 or a well-formed `data:` URI."""

    code = "invalid_base64"


class UrlNotAllowed(ClassifierError):
    """The URL's host resolves to an address the service must not reach (SSRF protection)."""

    code = "url_not_allowed"
    status = HTTPStatus.FORBIDDEN


class ImageTooLarge(ClassifierError):
    """Too many bytes (upload or download)."""

    code = "image_too_large"
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class TooManyPixels(ClassifierError):
    """The image declares more pixels than the cap: a decompression bomb or an absurdly large photo."""

    code = "too_many_pixels"
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedImage(ClassifierError):
    """Not an image in one of the allowed formats (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIF)."""

    code = "unsupported_image"
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class UndecodableImage(ClassifierError):
    """An allowed format whose data is broken (truncated, corrupt)."""

    code = "undecodable_image"
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class UpstreamError(ClassifierError):
    """The image URL could not be fetched: connection refused, TLS failure, non-2xx answer, too many redirects."""

    code = "upstream_error"
    status = HTTPStatus.BAD_GATEWAY


class UpstreamTimeout(ClassifierError):
    """The image URL did not deliver within the deadline."""

    code = "upstream_timeout"
    status = HTTPStatus.GATEWAY_TIMEOUT


class RequestTooLarge(ClassifierError):
    """The request body is over the HTTP server's cap (refused before it is read in full)."""

    code = "request_too_large"
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class RequestTimeout(ClassifierError):
    """The client did not finish sending its request body within the request deadline."""

    code = "request_timeout"
    status = HTTPStatus.REQUEST_TIMEOUT


class DeadlineExceeded(ClassifierError):
    """The service could not answer within the request deadline (the server queues, or the work is slow)."""

    code = "deadline_exceeded"
    status = HTTPStatus.GATEWAY_TIMEOUT


class NotReady(ClassifierError):
    """The server is starting or draining; the load balancer should send the request elsewhere."""

    code = "not_ready"
    status = HTTPStatus.SERVICE_UNAVAILABLE


class ServerBusy(ClassifierError):
    """Every slot for URL fetches is taken by slow upstreams (uploads are still served), or the worker holds as
    many request bodies as it may; the answer says when to retry."""

    code = "server_busy"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}
    status = HTTPStatus.SERVICE_UNAVAILABLE


class RequestHeaderTooLarge(ClassifierError):
    """The request's headers are over the server's size or count limit (the HTTP server's front only)."""

    code = "request_header_too_large"
    status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE


class ImageTooComplex(ClassifierError):
    """The image would take too long to decode for its size: a progressive JPEG with hundreds of scans, a TIFF
    cut into tens of thousands of strips or tiles (refused before decoding, as too many pixels are), or one whose
    decode took its whole time budget (abandoned then)."""

    code = "image_too_complex"
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class TooMuchDecodeMemory(ClassifierError):
    """Decoding the image would take more memory than a request may use (its shape, mode and format, not only its
    pixel count: a 1 x 50,000,000 image costs more in rows than in pixels). Refused before decoding."""

    code = "too_much_decode_memory"
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
