"""The HTTP API: routes, request and response models, and the one place errors become responses.

The routes live on a powertools `Router`, so the Lambda resolvers (API Gateway REST and HTTP API) and the
local ASGI server serve exactly the same code.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any, Literal, TypeVar

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, Router
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from lambda_function.api.web_page import web_page
from lambda_function.datapath.service import BreedService, ClassifiedImage
from lambda_function.errors import ClassifierError, refusal_document
from lambda_function.observability import logger, record_metric
from lambda_function.request_deadline import current_deadline
from lambda_function.settings import DEFAULT_TOP_K

API_TITLE = "Cat breed classifier"
API_VERSION = "1.0.0"
MAX_TOP_K = 100

router = Router()  # type: ignore[no-untyped-call]  # powertools leaves its __init__ unannotated


class PredictRequest(BaseModel):
    """Exactly one of `url` or `image`."""

    # The one-of rule, stated in the OpenAPI document as the validator below enforces it.
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["url"]}, {"required": ["image"]}]}
    )

    # Optional, but a string when present: the document says so (no null), and the validator refuses a null.
    url: str | SkipJsonSchema[None] = Field(
        default=None, description="An http(s) URL of a photo", examples=["https://example.com/cat.jpg"]
    )
    image: str | SkipJsonSchema[None] = Field(
        default=None, description="A photo as base64, or a data:image/...;base64, URI"
    )
    top_k: int = Field(
        default=DEFAULT_TOP_K,
        ge=1,
        le=MAX_TOP_K,
        strict=True,
        description="How many breeds to return, most likely first",
    )

    @model_validator(mode="after")
    def exactly_one_source(self) -> PredictRequest:
        for name in ("url", "image"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"'{name}' must be a string, not null")
        if (self.url is None) == (self.image is None):
            raise ValueError("give exactly one of 'url' or 'image'")
        return self


class BreedProbability(BaseModel):
    breed: str
    probability: float = Field(ge=0, le=1)


class ModelInfo(BaseModel):
    name: str
    version: str


class CoatAnswer(BaseModel):
    length: Literal["hairless", "short", "medium", "long"] | None = Field(
        description="The coat's length by the breed standards' categories; null when it is unclear"
    )
    probability: float = Field(
        ge=0, le=1, description="The length's probability (medium and long counted together, as they are judged)"
    )


class PredictResponse(BaseModel):
    predictions: list[BreedProbability]
    cat_detected: bool | None = Field(
        description="Whether the top answer is a breed rather than 'No cat'; null for a model without a 'No cat' class"
    )
    breed_identified: bool | None = Field(
        description=(
            "Whether the model names the cat's breed with enough confidence: false for a cat whose breed it cannot "
            "name (a mixed-breed cat, a breed it does not know, a photo too poor to tell), when `predictions` are "
            "only the closest breeds; null when no cat was detected or the model has no breed rule"
        )
    )
    coat: CoatAnswer | None = Field(
        description="The cat's coat length, for every cat detected; null when no cat was detected or the model has "
        "no coat rule"
    )
    description: str | None = Field(
        description=(
            "The cat as a shelter would name it: its breed when `breed_identified`, otherwise 'Domestic Short Hair', "
            "'Domestic Medium Hair', 'Domestic Long Hair' or 'Domestic Hairless' by its coat, or 'Domestic cat' when "
            "the coat is unclear too; null when no cat was detected"
        ),
        examples=["Siamese", "Domestic Short Hair"],
    )
    model: ModelInfo


class BreedsResponse(BaseModel):
    breeds: list[str]
    model: ModelInfo


class HealthResponse(BaseModel):
    status: str
    model: ModelInfo


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


def _responses(success: type[BaseModel], description: str, *error_statuses: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses of a route: its success model and the error statuses it can answer with."""
    responses: dict[int, OpenAPIResponse] = {
        200: {"description": description, "content": {"application/json": {"model": success}}}
    }
    for status in error_statuses:
        responses[status] = {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"model": ErrorResponse}},
        }
    return responses


def the_service() -> BreedService:
    """The service the routes run on: handed in by the resolver that answers (`serving`), never a global."""
    raise LookupError("no service was handed in: build the resolver with lambda_function.api.routes.serving()")


Service = Annotated[BreedService, Depends(the_service)]
Resolver = TypeVar("Resolver", bound=ApiGatewayResolver)


def serving(resolver: Resolver, service: BreedService) -> Resolver:
    """`resolver` answering these routes with `service` (what the Lambda handlers, the HTTP server's threads, the
    CLI and the tests each build for themselves)."""
    resolver.include_router(router)
    resolver.dependency_overrides[the_service] = lambda: service
    return resolver


def _model_info(service: BreedService) -> ModelInfo:
    card = service.classifier.card
    return ModelInfo(name=card.name, version=card.version)


@router.post(
    "/predict",
    summary="Classify a cat photo",
    responses=_responses(PredictResponse, "The most likely breeds", 400, 403, 413, 415, 422, 502, 504),
)
def predict(request: PredictRequest, service: Service) -> PredictResponse:
    deadline = current_deadline()
    if request.url is not None:
        result: ClassifiedImage = service.classify_url(request.url, request.top_k, deadline)
    else:
        result = service.classify_base64(request.image or "", request.top_k, deadline)
    record_metric("Predictions", MetricUnit.Count, 1)
    logger.info(
        "classified",
        extra={
            "source": "url" if request.url else "upload",
            "top": result.predictions[0].breed,
            "preprocessing_ms": round(result.preprocessing_ms, 1),
            "inference_ms": round(result.inference_ms, 1),
        },
    )
    return predict_response(result, service)


def predict_response(result: ClassifiedImage, service: BreedService) -> PredictResponse:
    """The answer to a prediction, as the API and `python -m lambda_function predict --json` give it."""
    return PredictResponse(
        predictions=[BreedProbability(breed=p.breed, probability=round(p.probability, 6)) for p in result.predictions],
        cat_detected=result.cat_detected,
        breed_identified=result.breed_identified,
        coat=None
        if result.coat is None
        else CoatAnswer(length=result.coat.length, probability=round(result.coat.probability, 6)),  # type: ignore[arg-type]  # one of COAT_LENGTHS
        description=result.description,
        model=_model_info(service),
    )


@router.get(
    "/",
    summary="The page for people: choose, drop, paste or link a photo and see the breeds",
    responses={
        200: {"description": "A self-contained HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
    },
)
def page() -> Response[str]:
    served = web_page()
    return Response(
        status_code=HTTPStatus.OK, content_type="text/html; charset=utf-8", body=served.html, headers=served.headers
    )


@router.get(
    "/breeds",
    summary="The labels the loaded model can answer with",
    responses=_responses(BreedsResponse, "The labels, in the model's output order"),
)
def breeds(service: Service) -> BreedsResponse:
    return BreedsResponse(breeds=list(service.classifier.card.labels), model=_model_info(service))


@router.get("/health", summary="Liveness: the model is loaded", responses=_responses(HealthResponse, "Ready"))
def health(service: Service) -> HealthResponse:
    return HealthResponse(status="ok", model=_model_info(service))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=refusal_document(code, message),
        headers=headers or None,
    )


@router.exception_handler(ClassifierError)  # type: ignore[untyped-decorator]  # powertools' decorator is unannotated
def handle_classifier_error(error: ClassifierError) -> Response[dict[str, Any]]:
    logger.info("request refused", extra={"error_code": error.code, "status": int(error.status)})
    return _error(error.status, error.code, error.message, error.headers)


# An error answer names at most this many problems (and counts the rest) and this much of a field's name: a body
# of 400,000 unknown fields once got a 16 MB answer, over Lambda's 6 MB response limit.
MAX_LISTED_PROBLEMS = 5
MAX_ECHOED_NAME_CHARS = 40


@router.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]  # powertools' decorator is unannotated
def handle_validation_error(error: RequestValidationError) -> Response[dict[str, Any]]:
    problems = error.errors()
    listed = [_describe(item) for item in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed.append(f"and {len(problems) - MAX_LISTED_PROBLEMS:,} more")
    message = "; ".join(listed) or "the request body is invalid"
    logger.info("request refused", extra={"error_code": "bad_request", "status": 400})
    return _error(HTTPStatus.BAD_REQUEST, "bad_request", message)


@router.exception_handler(NotFoundError)  # type: ignore[untyped-decorator]  # powertools' decorator is unannotated
def handle_not_found(_error_: NotFoundError) -> Response[dict[str, Any]]:
    return _error(
        HTTPStatus.NOT_FOUND, "not_found", "no such route: see GET /, GET /breeds, GET /health, POST /predict"
    )


@router.exception_handler(Exception)  # type: ignore[untyped-decorator]  # powertools' decorator is unannotated
def handle_unexpected(error: Exception) -> Response[dict[str, Any]]:
    """A fault of the service, never of the client: logged with its stack, counted (the `InternalError` metric
    and its alarm in template.yaml), and answered 500 without details. Lambda's own `Errors` metric never sees
    it, because the function returns normally."""
    logger.exception("unexpected error")
    record_metric("InternalError", MetricUnit.Count, 1)
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "the service failed; the error was logged")


def _describe(item: dict[str, Any]) -> str:
    """One validation problem, without echoing the client's input back (it may be megabytes of base64)."""
    location = ".".join(_shortened(str(part)) for part in item.get("loc", ()) if part not in ("body",))
    kind = item.get("type", "")
    if kind == "json_invalid":
        return "the body is not valid JSON"
    message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def _shortened(name: str) -> str:
    return name if len(name) <= MAX_ECHOED_NAME_CHARS else f"{name[:MAX_ECHOED_NAME_CHARS]}..."


def build_openapi_json(resolver: ApiGatewayResolver) -> str:
    """The OpenAPI document of the routes, as committed in docs/openapi.json.

    Powertools documents request validation failures as 422 with its own schema; this API answers them with
    400 and the common error shape (`handle_validation_error`), so its 422 entries are dropped.
    """
    document = json.loads(
        resolver.get_openapi_json_schema(
            title=API_TITLE,
            version=API_VERSION,
            description="Send a photo (URL or base64), get the most likely cat breeds.",
        )
    )
    validation_ref = "#/components/schemas/HTTPValidationError"
    for operations in document["paths"].values():
        for operation in operations.values():
            schema = operation["responses"].get("422", {}).get("content", {}).get("application/json", {})
            if schema.get("schema", {}).get("$ref") == validation_ref:
                del operation["responses"]["422"]
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        document.get("components", {}).get("schemas", {}).pop(unused, None)
    return json.dumps(document, indent=2) + "\n"
