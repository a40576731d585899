"""CodeDeploy's pre-traffic hook for the predict function: `lambda_function.deploy_check.lambda_handler`.

Before CodeDeploy sends a single request to a new version, this invokes that version (the `NEW_VERSION` ARN the
template hands in) the way API Gateway would: `GET /health`, then `POST /predict` with a committed photo (a
Siamese cat from the Oxford-IIIT Pet Dataset, CC BY-SA 4.0, as in demo/photos). The version passes when both
answer 200, the prediction lists breeds, and both name the model this image carries (its sidecar): the same
image as the new version, so a version that loads another model, or none, or answers errors, fails here and the
deployment stops before any user sees it. The result goes back to CodeDeploy either way.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lambda_function.api.gateway import http_api_event
from lambda_function.datapath.model_contract import ModelCard, load_sidecar
from lambda_function.observability import logger, patch_aws_sdk
from lambda_function.settings import Settings

CHECK_PHOTO = Path(__file__).with_name("deploy_check_photo.jpg")
REQUEST_ID = "pre-traffic-check"
JSON_HEADERS = {"content-type": "application/json"}

patch_aws_sdk()  # its Lambda and CodeDeploy calls, traced as X-Ray subsegments

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Report = Callable[[str, str, str], None]


def problems_of_version(invoke: Invoke, card: ModelCard, photo: bytes) -> list[str]:
    """What is wrong with the version `invoke` reaches; empty when it may take traffic."""
    expected = {"name": card.name, "version": card.version}
    upload = json.dumps({"image": base64.b64encode(photo).decode()}).encode()
    problems = []
    for what, event in (
        ("GET /health", http_api_event("GET", "/health", request_id=REQUEST_ID)),
        ("POST /predict", http_api_event("POST", "/predict", upload, JSON_HEADERS, request_id=REQUEST_ID)),
    ):
        try:
            response = invoke(event)
            answer = json.loads(response.get("body") or "null")
        except Exception as error:  # an invocation that fails is the finding, whatever its kind
            problems.append(f"{what}: the invocation failed ({type(error).__name__}: {error})")
            continue
        if response.get("statusCode") != 200 or not isinstance(answer, dict):
            problems.append(f"{what}: answered {response.get('statusCode')}: {str(answer)[:300]}")
            continue
        if answer.get("model") != expected:
            problems.append(f"{what}: serves model {answer.get('model')}, not {expected}")
        if what == "POST /predict" and not answer.get("predictions"):
            problems.append(f"{what}: no predictions in {str(answer)[:300]}")
    return problems


def run_check(event: dict[str, Any], invoke: Invoke, report: Report, card: ModelCard, photo: bytes) -> str:
    """Check the version and report the result for the CodeDeploy lifecycle event `event`; the status sent."""
    problems = problems_of_version(invoke, card, photo)
    status = "Failed" if problems else "Succeeded"
    logger.info("pre-traffic check", extra={"status": status, "problems": problems, "model": card.name})
    report(event["DeploymentId"], event["LifecycleEventHookExecutionId"], status)
    return status


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    import boto3

    version_arn = os.environ["NEW_VERSION"]
    functions, codedeploy = boto3.client("lambda"), boto3.client("codedeploy")

    def invoke(payload: dict[str, Any]) -> dict[str, Any]:
        response = functions.invoke(FunctionName=version_arn, Payload=json.dumps(payload).encode())
        if response.get("FunctionError"):
            raise RuntimeError(f"{response['FunctionError']}: {response['Payload'].read()[:300]!r}")
        answer: dict[str, Any] = json.loads(response["Payload"].read())
        return answer

    def report(deployment_id: str, execution_id: str, status: str) -> None:
        codedeploy.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status
        )

    card = load_sidecar(Settings.from_env().model_path)
    return {"status": run_check(event, invoke, report, card, CHECK_PHOTO.read_bytes())}
