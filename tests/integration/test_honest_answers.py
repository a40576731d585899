"""`breed_identified` with the committed default model: the rule of its sidecar, applied the same way in the API
answer and in the S3 tags (the page's sentence is tested in test_page_in_browser.py).

The photos are the shared cats; which of them the rule accepts is the model's business, so each test finds a
photo of each kind through the API first and fails if the default model accepts all of them or none.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_function.api.routes import MAX_TOP_K
from lambda_function.datapath.model_contract import load_sidecar
from lambda_function.datapath.service import BreedService
from lambda_function.settings import Settings
from lambda_function.tagging.s3_tagging import S3Tagger
from tests.conftest import CAT_PHOTOS, REPO_DIR
from tests.support.api_server import ServerProcess, call, running_server

DEFAULT_MODEL = REPO_DIR / "models" / "cat-breeds-34.tflite"
BUCKET = "honest-answers"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with running_server({"MODEL_PATH": str(DEFAULT_MODEL), "SERVER_WORKERS": "1", "SERVER_DRAIN_S": "0"}) as running:
        yield running


@pytest.fixture(scope="module")
def answers(server: ServerProcess) -> dict[Path, dict]:
    """The API's whole answer (every label) for every shared cat photo."""
    result = {}
    for photo in CAT_PHOTOS:
        # top_k at its maximum: every label, so P(No cat) is always in the answer
        body = {"image": base64.b64encode(photo.read_bytes()).decode(), "top_k": MAX_TOP_K}
        status, answer = call(server.base_url, "POST", "/predict", body)
        assert status == 200, answer
        result[photo] = answer
    return result


def first_photo(answers: dict[Path, dict], identified: bool) -> Path:
    found = [photo for photo, answer in answers.items() if answer["breed_identified"] is identified]
    assert found, f"the default model answers breed_identified={identified} for no shared cat photo"
    return found[0]


def test_the_api_names_a_breed_exactly_when_its_share_of_the_cat_probability_meets_the_sidecar_rule(answers):
    rule = load_sidecar(DEFAULT_MODEL).breed_rule
    assert rule is not None

    for photo, answer in answers.items():
        probability = {p["breed"]: p["probability"] for p in answer["predictions"]}
        breeds = {breed: value for breed, value in probability.items() if breed != "No cat"}
        top_is_a_breed = answer["predictions"][0]["breed"] != "No cat"
        if not (answer["cat_detected"] and top_is_a_breed):
            assert answer["breed_identified"] is None, photo.name
            continue
        share = max(breeds.values()) / sum(breeds.values())
        assert answer["breed_identified"] is (share >= rule.min_probability - 1e-6), photo.name
    assert {answer["breed_identified"] for answer in answers.values()} >= {True, False}


@pytest.fixture(scope="module")
def tagger(s3_endpoint: str) -> S3Tagger:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    service = BreedService(Settings.from_env({"MODEL_PATH": str(DEFAULT_MODEL), "INFERENCE_THREADS": "2"}))
    return S3Tagger(service, s3, max_object_bytes=20_000_000)


@pytest.mark.parametrize("identified", [True, False])
def test_the_s3_tag_records_what_the_api_answers(answers, tagger: S3Tagger, identified: bool):
    photo = first_photo(answers, identified)
    key = f"shelter/{photo.name}"
    tagger.s3.put_object(Bucket=BUCKET, Key=key, Body=photo.read_bytes())

    tagger.tag_object(BUCKET, key)

    tags: dict[str, Any] = {
        t["Key"]: t["Value"] for t in tagger.s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    }
    assert tags["cat-breed-identified"] == str(identified).lower()
    assert tags["cat-breed"] == answers[photo]["predictions"][0]["breed"]
