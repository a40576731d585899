"""The deployment files pass their linters and say what they must: SAM template, Dockerfile, Kubernetes manifests.

The tools live in their own virtual environments (`make test` installs them): .venv-infra (SAM CLI, cfn-lint,
hadolint, kubernetes-validate) and .venv-checkov.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_DIR

INFRA_BIN = REPO_DIR / ".venv-infra" / "bin"
CHECKOV = REPO_DIR / ".venv-checkov" / "bin" / "checkov"
K8S_MANIFESTS = ["namespace.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "networkpolicy.yaml", "pdb.yaml"]
TOOL_ENV = {**os.environ, "AWS_DEFAULT_REGION": "eu-west-1", "SAM_CLI_TELEMETRY": "0"}


def run_tool(*command: str | Path) -> subprocess.CompletedProcess[str]:
    executable = Path(command[0])
    if not executable.exists():
        pytest.fail(f"{executable} is missing: `make test` installs the infrastructure tools")
    return subprocess.run(
        [str(c) for c in command], cwd=REPO_DIR, env=TOOL_ENV, capture_output=True, text=True, timeout=300, check=False
    )


def test_sam_validate_with_lint_passes():
    result = run_tool(INFRA_BIN / "sam", "validate", "--lint", "--template", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint_passes():
    result = run_tool(INFRA_BIN / "cfn-lint", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_passes_on_the_dockerfile():
    result = run_tool(INFRA_BIN / "hadolint", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("target", "framework"),
    [("template.yaml", "cloudformation"), ("Dockerfile", "dockerfile"), ("kube-config", "kubernetes")],
)
def test_checkov_passes_with_every_skip_justified(target, framework):
    flag = "-d" if (REPO_DIR / target).is_dir() else "-f"
    result = run_tool(CHECKOV, flag, target, "--framework", framework, "--compact", "--quiet", "--skip-download")
    assert result.returncode == 0, result.stdout[-3000:]


def test_every_checkov_skip_carries_a_reason():
    template = (REPO_DIR / "template.yaml").read_text()
    skips = re.findall(r"- id: (CKV\w+)\n\s+comment: (.+)", template)
    assert len(skips) == template.count("- id: CKV") and all(len(reason) > 20 for _, reason in skips)
    dockerfile_skips = re.findall(r"checkov:skip=(CKV\w+):(.*)", (REPO_DIR / "Dockerfile").read_text())
    assert dockerfile_skips and all(len(reason.strip()) > 20 for _, reason in dockerfile_skips)
    for manifest in (REPO_DIR / "kube-config").glob("*.yaml"):
        for _, reason in re.findall(r"checkov.io/skip\d+: (CKV\w+)=(.+)", manifest.read_text()):
            assert len(reason) > 20


def test_kubernetes_manifests_validate_offline_against_the_api_schema():
    result = run_tool(
        INFRA_BIN / "kubernetes-validate",
        "--strict",
        "-k",
        "1.33.0",
        *[f"kube-config/{name}" for name in K8S_MANIFESTS],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(K8S_MANIFESTS)
    cluster = yaml.safe_load((REPO_DIR / "kube-config" / "eksctl-cluster.yaml").read_text())
    assert cluster["kind"] == "ClusterConfig" and cluster["managedNodeGroups"][0]["minSize"] >= 2


def test_deployment_runs_the_server_as_non_root_on_a_read_only_filesystem_with_probes():
    deployment = yaml.safe_load((REPO_DIR / "kube-config" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"]["limits"]["cpu"] == "1"
    assert {"name": "SERVER_WORKERS", "value": "1"} in container["env"]
    assert {"name": "INFERENCE_THREADS", "value": "1"} in container["env"]


def test_shutdown_outlasts_the_server_drain_and_deadline_and_pods_spread_across_zones():
    from lambda_function.settings import ServerSettings

    deployment = yaml.safe_load((REPO_DIR / "kube-config" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    server = ServerSettings()
    budget = yaml.safe_load((REPO_DIR / "kube-config" / "pdb.yaml").read_text())

    assert pod["terminationGracePeriodSeconds"] > server.graceful_timeout_s > server.drain_s + server.request_deadline_s
    assert "topology.kubernetes.io/zone" in {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert budget["spec"]["selector"] == deployment["spec"]["selector"] and budget["spec"]["minAvailable"] >= 1


def test_the_cluster_enforces_network_policies():
    cluster = yaml.safe_load((REPO_DIR / "kube-config" / "eksctl-cluster.yaml").read_text())
    (cni,) = [addon for addon in cluster["addons"] if addon["name"] == "vpc-cni"]

    assert json.loads(cni["configurationValues"]) == {"enableNetworkPolicy": "true"}


@pytest.fixture(scope="module")
def cloudformation() -> dict[str, Any]:
    result = run_tool(
        REPO_DIR / ".venv-infra" / "bin" / "python", "tests/support/transform_template.py", "template.yaml"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def test_api_routes_are_the_three_of_the_api(cloudformation):
    (api,) = of_type(cloudformation, "AWS::ApiGatewayV2::Api").values()
    paths = api["Properties"]["Body"]["paths"]

    assert {(path, method) for path, methods in paths.items() for method in methods} == {
        ("/predict", "post"),
        ("/breeds", "get"),
        ("/health", "get"),
    }


def test_both_functions_run_the_one_image_with_their_own_handler(cloudformation):
    functions = of_type(cloudformation, "AWS::Lambda::Function")
    commands = {name: f["Properties"]["ImageConfig"]["Command"] for name, f in functions.items()}

    assert commands == {
        "PredictFunction": ["lambda_function.handler.lambda_handler"],
        "TaggingFunction": ["lambda_function.tagging_handler.lambda_handler"],
    }
    assert all(f["Properties"]["TracingConfig"]["Mode"] == "Active" for f in functions.values())
    assert all("ReservedConcurrentExecutions" in f["Properties"] for f in functions.values())


def test_uploads_under_the_prefix_with_image_suffixes_trigger_tagging(cloudformation):
    bucket = cloudformation["ImagesBucket"]["Properties"]
    rules = [c["Filter"]["S3Key"]["Rules"] for c in bucket["NotificationConfiguration"]["LambdaConfigurations"]]

    assert all(c["Event"] == "s3:ObjectCreated:*" for c in bucket["NotificationConfiguration"]["LambdaConfigurations"])
    assert all({"Name": "prefix", "Value": {"Ref": "ImagesPrefix"}} in r for r in rules)
    suffixes = {rule["Value"] for r in rules for rule in r if rule["Name"] == "suffix"}
    assert suffixes == {".jpg", ".JPG", ".jpeg", ".png", ".PNG", ".heic", ".HEIC", ".webp"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "BucketEncryption" in bucket


def test_failed_tagging_events_end_in_the_dead_letter_queue(cloudformation):
    (config,) = of_type(cloudformation, "AWS::Lambda::EventInvokeConfig").values()

    assert config["Properties"]["FunctionName"] == {"Ref": "TaggingFunction"}
    assert config["Properties"]["MaximumRetryAttempts"] == 2
    assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["TaggingDeadLetterQueue", "Arn"]
    }


def iam_statements(resources: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for name, resource in of_type(resources, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in resource["Properties"], f"{name}: every policy is written out"
        found[name] = [s for p in resource["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    return found


def test_no_iam_action_has_a_wildcard_and_roles_are_the_two_written_out(cloudformation):
    statements = iam_statements(cloudformation)

    assert set(statements) == {"PredictFunctionRole", "TaggingFunctionRole"}
    for role_statements in statements.values():
        for statement in role_statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), statement
            if statement["Resource"] == "*":
                assert set(actions) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_tagging_may_only_read_and_tag_objects_under_its_prefix(cloudformation):
    statements = iam_statements(cloudformation)["TaggingFunctionRole"]
    s3 = [
        s
        for s in statements
        if any(str(a).startswith("s3:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
    ]
    objects = next(s for s in s3 if isinstance(s["Action"], list))

    assert sorted(objects["Action"]) == ["s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectTagging"]
    assert objects["Resource"]["Fn::Sub"].endswith("/${ImagesPrefix}*")
    listing = next(s for s in s3 if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${ImagesPrefix}*"}}}
    assert not [s for s in iam_statements(cloudformation)["PredictFunctionRole"] if "s3:" in json.dumps(s)]


def test_the_image_copies_only_runtime_files_and_installs_requirements_before_code():
    dockerfile = (REPO_DIR / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (.+) \$\{LAMBDA_TASK_ROOT\}", dockerfile, re.M)

    assert copied[0] == "requirements.txt"
    assert dockerfile.index("pip install") < dockerfile.index("COPY lambda_function/")
    sources = {part for line in copied for part in line.split()}
    assert sources == {"requirements.txt", "models/${MODEL}.tflite", "models/${MODEL}.json", "lambda_function/"}
    ignored = (REPO_DIR / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*" and {"!requirements.txt", "!lambda_function/", "!models/"} <= set(ignored)
