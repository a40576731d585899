"""The predict function's pre-traffic hook: a new version takes traffic only if it answers a prediction from the
model its image carries. The "version" here is the real Lambda handler, invoked in-process as Lambda would."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from lambda_function.deploy_check import CHECK_PHOTO, problems_of_version, run_check
from lambda_function.local_context import LocalLambdaContext


@pytest.fixture
def version(handler) -> Any:
    """Invoke the predict handler of this process, as `lambda:Invoke` of a version would."""
    return lambda event: handler.lambda_handler(event, LocalLambdaContext())


def checked(invoke: Any, card: Any) -> tuple[str, list[tuple[str, ...]]]:
    """The status of one lifecycle event's check, and what CodeDeploy was told."""
    reports: list[tuple[str, ...]] = []
    event = {"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "e-1"}
    status = run_check(event, invoke, lambda *args: reports.append(args), card, CHECK_PHOTO.read_bytes())
    return status, reports


def test_a_version_that_serves_the_images_model_passes_and_codedeploy_hears_succeeded(version, service):
    assert checked(version, service.classifier.card) == ("Succeeded", [("d-1", "e-1", "Succeeded")])


def test_a_version_that_serves_another_model_fails(version, service):
    expected = dataclasses.replace(service.classifier.card, version="9.9.9")

    problems = problems_of_version(version, expected, CHECK_PHOTO.read_bytes())

    assert len(problems) == 2 and all("not {'name'" in problem for problem in problems)


def test_a_version_that_answers_errors_or_cannot_be_invoked_fails_and_codedeploy_hears_failed(service):
    def broken(event: dict[str, Any]) -> dict[str, Any]:
        if event["rawPath"] == "/health":
            raise RuntimeError("Unhandled: the function crashed at init")
        return {"statusCode": 500, "body": json.dumps({"error": {"code": "internal_error", "message": "..."}})}

    assert checked(broken, service.classifier.card) == ("Failed", [("d-1", "e-1", "Failed")])


def test_the_check_photo_is_a_committed_demo_photo():
    from tests.conftest import REPO_DIR

    assert CHECK_PHOTO.read_bytes() == (REPO_DIR / "demo" / "photos" / "Siamese_109.jpg").read_bytes()
