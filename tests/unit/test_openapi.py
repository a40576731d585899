"""The committed OpenAPI document (docs/openapi.json) is the one the code generates."""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from lambda_function.api.routes import build_openapi_json, router
from tests.conftest import REPO_DIR

COMMITTED = REPO_DIR / "docs" / "openapi.json"


def generated_document() -> dict:
    resolver = APIGatewayRestResolver(enable_validation=True)
    resolver.include_router(router)
    return json.loads(build_openapi_json(resolver))


def test_committed_openapi_document_matches_the_routes():
    assert json.loads(COMMITTED.read_text()) == generated_document(), "run `make openapi` and commit the result"


def test_openapi_document_describes_every_route_and_error():
    document = generated_document()

    assert set(document["paths"]) == {"/", "/predict", "/breeds", "/health"}
    assert set(document["paths"]["/"]["get"]["responses"]["200"]["content"]) == {"text/html"}
    predict = document["paths"]["/predict"]["post"]
    assert {"200", "400", "403", "413", "415", "422", "502", "504"} <= set(predict["responses"])
    assert {"PredictRequest", "PredictResponse", "ErrorResponse"} <= set(document["components"]["schemas"])


def test_every_schema_reference_resolves():
    document = generated_document()
    text = json.dumps(document)
    references = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}

    assert references and references <= set(document["components"]["schemas"])


def test_the_document_states_that_a_prediction_takes_exactly_one_of_url_or_image():
    document = json.loads((REPO_DIR / "docs" / "openapi.json").read_text())
    request = document["components"]["schemas"]["PredictRequest"]

    assert request["oneOf"] == [{"required": ["url"]}, {"required": ["image"]}]
    assert request["properties"]["url"]["type"] == request["properties"]["image"]["type"] == "string"
    assert request["properties"]["top_k"]["type"] == "integer"
