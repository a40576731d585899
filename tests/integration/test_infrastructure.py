"""The deployment files pass their linters and say what they must: SAM template, Dockerfile, Kubernetes manifests.

The tools live in their own virtual environments (`make test` installs them): .venv-infra (SAM CLI, cfn-lint,
hadolint, kubernetes-validate) and .venv-checkov.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_DIR
from tests.support.sam_template import functions_of, read_template

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


# A c7i.large's 2 vCPU, less the system's reservations and daemons, hold three pods of 500m CPU requested.
PODS_PER_NODE = {("c7i.large", "500m"): 3}


def kubernetes_file(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO_DIR / "kube-config" / name).read_text())


def test_nodes_scale_with_cluster_autoscaler_as_far_as_the_pod_autoscaler_and_a_rolling_update_go():
    cluster, hpa = kubernetes_file("eksctl-cluster.yaml"), kubernetes_file("hpa.yaml")
    (group,) = cluster["managedNodeGroups"]
    (container,) = kubernetes_file("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    pods_per_node = PODS_PER_NODE[(group["instanceType"], container["resources"]["requests"]["cpu"])]
    (account,) = cluster["iam"]["serviceAccounts"]
    surge = math.ceil(hpa["spec"]["maxReplicas"] * 0.25)  # a Deployment's default maxSurge, 25%
    page = re.sub(r"\\\n\s*", "", (REPO_DIR / "docs" / "kubernetes.md").read_text())
    install = next(line for line in page.splitlines() if line.startswith("helm install cluster-autoscaler"))

    assert group["minSize"] * pods_per_node >= hpa["spec"]["minReplicas"]
    assert group["maxSize"] * pods_per_node >= hpa["spec"]["maxReplicas"] + surge
    # its own role, on its own service account only, which the Helm release uses rather than creating one
    assert account == {
        "metadata": {"name": "cluster-autoscaler", "namespace": "kube-system"},
        "wellKnownPolicies": {"autoScaler": True},
    }
    assert f"--set autoDiscovery.clusterName={cluster['metadata']['name']}" in install
    assert "--set rbac.serviceAccount.create=false --set rbac.serviceAccount.name=cluster-autoscaler" in install
    assert re.search(r"--set image\.tag=v(\d+\.\d+)\.\d+", install).group(1) == cluster["metadata"]["version"]


def test_the_eks_commands_use_the_clusters_region_and_build_for_its_nodes_architecture():
    cluster = kubernetes_file("eksctl-cluster.yaml")
    region = cluster["metadata"]["region"]
    page = (REPO_DIR / "docs" / "kubernetes.md").read_text()
    commands = re.sub(r"\\\n\s*", "", page.split("## Deploying to EKS", 1)[1].split("```bash", 1)[1].split("```", 1)[0])
    aws_calls = [line for line in commands.splitlines() if re.search(r"\baws (?!sts)", line)]
    (build,) = [line for line in commands.splitlines() if line.startswith("docker build")]
    (group,) = cluster["managedNodeGroups"]

    assert set(re.findall(r"\b(?:us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d\b", page)) == {region}
    assert commands.lstrip().startswith(f"REGION={region} ")
    assert aws_calls and all("--region $REGION" in line for line in aws_calls)
    assert "--set awsRegion=$REGION" in commands
    # Graviton instance types carry a g after the generation (c7g); these nodes are x86_64
    assert not re.match(r"[a-z]+\d+[a-z]*g[a-z]*\.", group["instanceType"])
    assert "--platform linux/amd64" in build and "--target server" in build


def test_a_busy_pod_that_answers_readyz_late_is_not_taken_out_at_once():
    from lambda_function.settings import FetchSettings

    deployment = kubernetes_file("deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    readiness = container["readinessProbe"]

    # one CPU for the event loop, decoding and inference: a single late or missed answer must not pull the pod
    assert readiness["failureThreshold"] >= 3 and 2 <= readiness["timeoutSeconds"] < readiness["periodSeconds"]
    # but a saturated pod (503 at once) leaves before its URL fetches would have freed their slots anyway
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < FetchSettings().total_timeout_s


def test_the_cluster_enforces_network_policies():
    cluster = yaml.safe_load((REPO_DIR / "kube-config" / "eksctl-cluster.yaml").read_text())
    (cni,) = [addon for addon in cluster["addons"] if addon["name"] == "vpc-cni"]

    assert json.loads(cni["configurationValues"]) == {"enableNetworkPolicy": "true"}


@pytest.fixture(scope="module")
def transformed_template() -> dict[str, Any]:
    result = run_tool(
        REPO_DIR / ".venv-infra" / "bin" / "python", "tests/support/transform_template.py", "template.yaml"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cloudformation(transformed_template: dict[str, Any]) -> dict[str, Any]:
    return transformed_template["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def test_api_gateway_routes_are_exactly_the_routes_of_the_api(cloudformation):
    from lambda_function.api.gateway import ROUTE_METHODS

    (api,) = of_type(cloudformation, "AWS::ApiGatewayV2::Api").values()
    paths = api["Properties"]["Body"]["paths"]

    routes = {(path, method.upper()) for path, methods in paths.items() for method in methods}
    assert routes == {(path, method) for path, methods in ROUTE_METHODS.items() for method in methods}
    assert ("/", "GET") in routes


def test_every_function_runs_the_one_image_with_its_own_handler(cloudformation):
    functions = of_type(cloudformation, "AWS::Lambda::Function")
    commands = {name: f["Properties"]["ImageConfig"]["Command"] for name, f in functions.items()}

    assert commands == {
        "PredictFunction": ["lambda_function.handler.lambda_handler"],
        "TaggingFunction": ["lambda_function.tagging_handler.lambda_handler"],
        "PredictPreTrafficCheck": ["lambda_function.deploy_check.lambda_handler"],
    }
    assert all(f["Properties"]["TracingConfig"]["Mode"] == "Active" for f in functions.values())


def evaluated(value: Any, parameters: dict[str, str], conditions: dict[str, Any]) -> Any:
    """A property of the transformed template as CloudFormation resolves it for these parameter values (strings,
    as CloudFormation passes them): `Ref` to a parameter, `Fn::If` on a condition of `Fn::Not` and `Fn::Equals`;
    `AWS::NoValue` comes out as None, the property left out."""
    if not (isinstance(value, dict) and len(value) == 1):
        return value
    ((function, argument),) = value.items()
    if function == "Ref":
        return None if argument == "AWS::NoValue" else parameters[argument]
    if function == "Fn::If":
        condition, when_true, when_false = argument
        chosen = when_true if evaluated(conditions[condition], parameters, conditions) else when_false
        return evaluated(chosen, parameters, conditions)
    if function == "Fn::Not":
        return not evaluated(argument[0], parameters, conditions)
    if function == "Fn::Equals":
        left, right = (str(evaluated(side, parameters, conditions)) for side in argument)
        return left == right
    raise AssertionError(f"not evaluated here: {function}")


def reserved_concurrency(transformed_template: dict[str, Any], **overrides: str) -> dict[str, int | None]:
    parameters = {name: str(p.get("Default", "")) for name, p in transformed_template["Parameters"].items()}
    parameters |= overrides
    functions = of_type(transformed_template["Resources"], "AWS::Lambda::Function")
    reserved = {
        name: evaluated(
            f["Properties"].get("ReservedConcurrentExecutions"), parameters, transformed_template["Conditions"]
        )
        for name, f in functions.items()
    }
    return {name: None if value is None else int(value) for name, value in reserved.items()}


def test_no_function_reserves_concurrency_by_default_so_a_new_accounts_small_quota_deploys(transformed_template):
    parameters = transformed_template["Parameters"]

    # Lambda keeps 100 executions unreserved: any reservation fails a first deploy where the quota is 10
    assert reserved_concurrency(transformed_template) == {
        "PredictFunction": None,
        "TaggingFunction": None,
        "PredictPreTrafficCheck": None,
    }
    for name in ("PredictReservedConcurrency", "TaggingReservedConcurrency"):
        assert parameters[name]["Default"] == parameters[name]["MinValue"] == 0, name


def test_the_reservation_parameters_reserve_what_they_say_and_the_check_one_beside_predictions(transformed_template):
    both = reserved_concurrency(transformed_template, PredictReservedConcurrency="10", TaggingReservedConcurrency="5")
    tagging_only = reserved_concurrency(transformed_template, TaggingReservedConcurrency="100")

    assert both == {"PredictFunction": 10, "TaggingFunction": 5, "PredictPreTrafficCheck": 1}
    assert tagging_only == {"PredictFunction": None, "TaggingFunction": 100, "PredictPreTrafficCheck": None}


def test_the_docs_give_the_quota_check_and_keep_provisioned_concurrency_within_the_reservation():
    deploy = re.sub(r"\s+", " ", (REPO_DIR / "docs" / "deploy.md").read_text())
    security = (REPO_DIR / "docs" / "security.md").read_text()

    assert "aws lambda get-account-settings" in deploy
    assert "UnreservedConcurrentExecutions" in deploy and "ConcurrentExecutions" in deploy
    assert "service-quotas request-service-quota-increase" in deploy
    assert "With a `PredictReservedConcurrency`, it must stay at or below it" in deploy
    assert "none by default" in deploy and "10 by default" not in security + deploy


def test_every_upload_under_the_prefix_triggers_tagging_and_the_function_decides_by_name(cloudformation):
    bucket = cloudformation["ImagesBucket"]["Properties"]
    (trigger,) = bucket["NotificationConfiguration"]["LambdaConfigurations"]

    assert trigger["Event"] == "s3:ObjectCreated:*"
    # No suffix filter: S3's are case-sensitive, one per rule, and would drift from the decoder's list
    # (lambda_function.image_names.is_image_name decides, tested in test_s3_tagging.py).
    assert trigger["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": {"Ref": "ImagesPrefix"}}]
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


def test_no_iam_action_has_a_wildcard_and_roles_are_the_five_written_out(cloudformation):
    statements = iam_statements(cloudformation)

    assert set(statements) == {
        "PredictFunctionRole",
        "TaggingFunctionRole",
        "BatchOperationsRole",
        "CodeDeployRole",
        "PredictPreTrafficCheckRole",
    }
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

    assert sorted(objects["Action"]) == [
        "s3:GetObject",
        "s3:GetObjectTagging",
        "s3:GetObjectVersion",
        "s3:GetObjectVersionTagging",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
    ]
    assert objects["Resource"]["Fn::Sub"].endswith("/${ImagesPrefix}*")
    listing = next(s for s in s3 if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${ImagesPrefix}*"}}}
    assert not [s for s in iam_statements(cloudformation)["PredictFunctionRole"] if "s3:" in json.dumps(s)]


def test_batch_operations_may_only_read_manifests_invoke_tagging_and_write_reports(cloudformation):
    role = cloudformation["BatchOperationsRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    statements = {
        statement["Action"] if isinstance(statement["Action"], str) else tuple(statement["Action"]): statement
        for statement in iam_statements(cloudformation)["BatchOperationsRole"]
    }

    assert trust["Principal"] == {"Service": "batchoperations.s3.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert set(statements) == {("s3:GetObject", "s3:GetObjectVersion"), "lambda:InvokeFunction", "s3:PutObject"}
    assert statements[("s3:GetObject", "s3:GetObjectVersion")]["Resource"]["Fn::Sub"].endswith(
        "/${BatchOperationsManifestPrefix}*"
    )
    assert statements["lambda:InvokeFunction"]["Resource"] == {"Ref": "TaggingFunctionAliaslive"}
    assert statements["s3:PutObject"]["Resource"]["Fn::Sub"].endswith("/${BatchOperationsReportPrefix}*")


def test_the_stack_outputs_name_what_a_batch_operations_job_needs(transformed_template):
    from lambda_function.tagging.batch_job import (
        OUTPUT_FUNCTION_ARN,
        OUTPUT_MANIFEST_PREFIX,
        OUTPUT_REPORT_PREFIX,
        OUTPUT_ROLE_ARN,
    )

    outputs = transformed_template["Outputs"]

    assert {OUTPUT_ROLE_ARN, OUTPUT_FUNCTION_ARN, OUTPUT_MANIFEST_PREFIX, OUTPUT_REPORT_PREFIX} <= set(outputs)


def test_the_image_copies_only_runtime_files_and_installs_requirements_before_code():
    dockerfile = (REPO_DIR / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (.+) \$\{LAMBDA_TASK_ROOT\}", dockerfile, re.M)

    assert copied[0] == "requirements.lock"
    assert dockerfile.index("pip install") < dockerfile.index("COPY lambda_function/")
    # the lock alone, every file checked against its hash, and nothing resolved at build time
    install = r"^RUN pip install --no-cache-dir --require-hashes --no-deps -r \S*requirements\.lock"
    assert re.search(install, dockerfile, re.M)
    sources = {part for line in copied for part in line.split()}
    assert sources == {"requirements.lock", "models/${MODEL}.tflite", "models/${MODEL}.json", "lambda_function/"}
    ignored = (REPO_DIR / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*" and {"!requirements.lock", "!lambda_function/", "!models/"} <= set(ignored)


def test_the_served_model_is_named_once_for_the_image_and_the_template_cannot_override_it(transformed_template):
    from lambda_function.settings import DEFAULT_MODEL_PATH

    dockerfile = (REPO_DIR / "Dockerfile").read_text()
    template = (REPO_DIR / "template.yaml").read_text()
    image_model = re.search(r"^ARG MODEL=(\S+)$", dockerfile, re.M).group(1)
    makefile_model = re.search(r"^BREED_MODEL := models/(\S+)$", (REPO_DIR / "Makefile").read_text(), re.M).group(1)

    assert image_model == DEFAULT_MODEL_PATH.stem == makefile_model
    assert "MODEL_PATH=${LAMBDA_TASK_ROOT}/models/${MODEL}.tflite" in dockerfile
    for name, resource in transformed_template["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            assert "MODEL_PATH" not in resource["Properties"].get("Environment", {}).get("Variables", {}), name
    assert "DockerBuildArgs" not in template and "ModelName" not in template  # no second name to disagree


def test_every_function_builds_the_dockerfiles_lambda_stage_from_one_metadata():
    """SAM builds the last stage unless Metadata names one, and builds once per distinct Metadata: all three
    functions name the Lambda stage, which is also the last, with the same Metadata (one build, one push)."""
    functions = list(functions_of(read_template(REPO_DIR / "template.yaml")).values())
    stages = re.findall(r"^FROM \S+ AS (\S+)$", (REPO_DIR / "Dockerfile").read_text(), re.M)

    assert len(functions) == 3
    assert all(function["Metadata"] == functions[0]["Metadata"] for function in functions)
    assert functions[0]["Metadata"]["DockerBuildTarget"] == stages[-1] == "lambda"
    assert "server" in stages


def test_the_settings_the_template_declares_are_left_at_their_defaults():
    """Globals declares a few settings only so that `sam local invoke --env-vars` may set them in the tests; a
    deployment keeps the settings' defaults, and the address rules of the fetcher are not among them."""
    variables = read_template(REPO_DIR / "template.yaml")["Globals"]["Function"]["Environment"]["Variables"]
    declared = {name: value for name, value in variables.items() if not name.startswith("POWERTOOLS_")}

    assert declared == {"S3_ENDPOINT_URL": "", "FETCH_ALLOWED_PORTS": ""}


def test_the_base_image_is_a_tag_that_exists_or_a_pinned_digest():
    dockerfile = (REPO_DIR / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+) AS runtime$", dockerfile, re.M).group(1)

    # AWS keeps `3.12` current; a dated tag nobody checked could be missing and fail every build.
    assert re.fullmatch(r"public\.ecr\.aws/lambda/python:3\.12(@sha256:[0-9a-f]{64})?", base), base


# Safe rollouts: versions behind an alias, CodeDeploy shifting traffic, alarms that roll back, a dashboard.

ALIAS = "live"
FUNCTIONS = ("PredictFunction", "TaggingFunction")


def test_each_function_is_reached_through_its_alias_with_a_deployment_rolled_back_by_alarms_that_exist(cloudformation):
    for function in FUNCTIONS:
        alias = cloudformation[f"{function}Alias{ALIAS}"]
        group = cloudformation[f"{function}DeploymentGroup"]["Properties"]
        alarms = [alarm["Name"]["Ref"] for alarm in group["AlarmConfiguration"]["Alarms"]]

        assert alias["Type"] == "AWS::Lambda::Alias" and alias["Properties"]["Name"] == ALIAS
        assert alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0].startswith(f"{function}Version")
        assert group["AlarmConfiguration"]["Enabled"] is True and len(alarms) >= 2
        assert all(cloudformation[name]["Type"] == "AWS::CloudWatch::Alarm" for name in alarms)
        assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
        assert group["ServiceRoleArn"] == {"Fn::GetAtt": ["CodeDeployRole", "Arn"]}
        # one alarm on the errors of the version being deployed, behind the alias
        dimensions = [
            {d["Name"]: d["Value"] for d in cloudformation[name]["Properties"]["Dimensions"]} for name in alarms
        ]
        assert any(
            d.get("ExecutedVersion")
            == {"Fn::GetAtt": [alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0], "Version"]}
            and d.get("Resource") == {"Fn::Sub": f"${{{function}}}:{ALIAS}"}
            for d in dimensions
        )


def test_the_predict_canary_watches_errors_latency_and_internal_errors(cloudformation, transformed_template):
    group = cloudformation["PredictFunctionDeploymentGroup"]["Properties"]
    alarms = {
        alarm["Name"]["Ref"]: cloudformation[alarm["Name"]["Ref"]]["Properties"]
        for alarm in group["AlarmConfiguration"]["Alarms"]
    }
    metrics = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}

    assert metrics == {("AWS/Lambda", "Errors"), ("AWS/Lambda", "Duration"), ("CatBreedClassifier", "InternalError")}
    latency = next(a for a in alarms.values() if a["MetricName"] == "Duration")
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == {"Ref": "PredictP99AlarmMs"}
    assert transformed_template["Parameters"]["PredictDeployment"]["Default"].startswith("Canary")
    assert transformed_template["Parameters"]["TaggingDeployment"]["Default"].startswith(("Linear", "Canary"))


def test_the_api_s3_and_batch_operations_invoke_the_aliases(cloudformation):
    api = next(iter(of_type(cloudformation, "AWS::ApiGatewayV2::Api").values()))["Properties"]["Body"]
    uris = [
        op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        for item in api["paths"].values()
        for op in item.values()
    ]
    permissions = of_type(cloudformation, "AWS::Lambda::Permission").values()
    (notification,) = cloudformation["ImagesBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    batch = next(
        s for s in iam_statements(cloudformation)["BatchOperationsRole"] if s["Action"] == "lambda:InvokeFunction"
    )

    assert uris and all(f"${{PredictFunctionAlias{ALIAS}}}/invocations" in uri for uri in uris)
    assert {p["Properties"]["FunctionName"]["Ref"] for p in permissions} == {f"{f}Alias{ALIAS}" for f in FUNCTIONS}
    assert notification["Function"] == {"Ref": f"TaggingFunctionAlias{ALIAS}"}
    assert batch["Resource"] == {"Ref": f"TaggingFunctionAlias{ALIAS}"}
    assert cloudformation["TaggingFunctionEventInvokeConfig"]["Properties"]["Qualifier"] == ALIAS


def test_batch_operations_jobs_get_the_alias_from_the_stack_outputs(transformed_template):
    from lambda_function.tagging.batch_job import OUTPUT_FUNCTION_ARN

    assert transformed_template["Outputs"][OUTPUT_FUNCTION_ARN]["Value"] == {"Ref": f"TaggingFunctionAlias{ALIAS}"}


def test_provisioned_concurrency_reaches_the_predict_alias_only_when_above_zero(cloudformation, transformed_template):
    config = cloudformation[f"PredictFunctionAlias{ALIAS}"]["Properties"]["ProvisionedConcurrencyConfig"]
    condition, when_set, otherwise = config["Fn::If"]

    assert when_set == {"ProvisionedConcurrentExecutions": {"Ref": "ProvisionedConcurrency"}}
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert transformed_template["Conditions"][condition] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ProvisionedConcurrency"}, 0]}]
    }
    assert transformed_template["Parameters"]["ProvisionedConcurrency"]["Default"] == 0
    assert "ProvisionedConcurrencyConfig" not in cloudformation[f"TaggingFunctionAlias{ALIAS}"]["Properties"]


def emitted_metric_names() -> tuple[set[str], set[str]]:
    """The metric names the service's code records: whole names, and the fixed starts of names built at run
    time (`f"ErrorCode_{code}"`), read from every `record_metric(...)` call; and powertools' cold-start metric
    where a handler asks for it."""
    import ast

    names, prefixes = set(), set()
    for path in (REPO_DIR / "lambda_function").rglob("*.py"):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "record_metric":
                name = node.args[0]
                if isinstance(name, ast.Constant):
                    names.add(name.value)
                elif isinstance(name, ast.JoinedStr) and isinstance(name.values[0], ast.Constant):
                    prefixes.add(name.values[0].value)
        if "capture_cold_start_metric=True" in source:
            names.add("ColdStart")
    return names, prefixes


def test_the_dashboards_metrics_are_those_the_code_records_under_its_namespace_and_service(
    cloudformation, transformed_template
):
    from lambda_function.settings import ObservabilitySettings

    names, prefixes = emitted_metric_names()
    observability = ObservabilitySettings()
    body = json.loads(
        re.sub(r"\$\{[^}]+\}", "X", cloudformation["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    )
    ours, searched = [], []
    for widget in body["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            if isinstance(metric[0], dict):
                searched.append(metric[0]["expression"])
            elif metric[0] == observability.metrics_namespace:
                ours.append(metric)

    assert ours and searched
    for _namespace, name, dimension, value, *_ in ours:
        assert name in names, name
        assert (dimension, value) == ("service", observability.service_name)
    for expression in searched:
        namespace, term = re.search(r"SEARCH\('\{(\w+),service\} MetricName=(\w+)'", expression).groups()
        assert namespace == observability.metrics_namespace
        assert any(prefix.startswith(term) for prefix in prefixes | names), term
    assert {"Predictions", "InternalError"} <= names and {"ErrorCode_", "Tagging_", "BatchTasks"} <= prefixes


def test_the_functions_emit_under_the_namespace_and_service_the_dashboard_and_alarms_read(cloudformation):
    from lambda_function.settings import ObservabilitySettings

    observability = ObservabilitySettings()
    for function in FUNCTIONS:
        variables = cloudformation[function]["Properties"]["Environment"]["Variables"]
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == observability.metrics_namespace
        assert variables["POWERTOOLS_SERVICE_NAME"] == observability.service_name


def test_the_stack_outputs_the_dashboards_url(transformed_template):
    assert "#dashboards:name=${Dashboard}" in transformed_template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]


def test_a_new_predict_version_takes_traffic_only_after_the_pre_traffic_check_passes(cloudformation):
    update = cloudformation[f"PredictFunctionAlias{ALIAS}"]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    check = cloudformation["PredictPreTrafficCheck"]["Properties"]
    version = cloudformation[f"PredictFunctionAlias{ALIAS}"]["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
    statements = iam_statements(cloudformation)["PredictPreTrafficCheckRole"]
    codedeploy_may_invoke = [
        s for s in iam_statements(cloudformation)["CodeDeployRole"] if s["Action"] == "lambda:InvokeFunction"
    ]

    assert update["BeforeAllowTrafficHook"] == {"Ref": "PredictPreTrafficCheck"}
    assert check["ImageConfig"]["Command"] == ["lambda_function.deploy_check.lambda_handler"]
    assert check["Environment"]["Variables"]["NEW_VERSION"] == {"Ref": version}
    assert {s["Action"]: s["Resource"] for s in statements if s["Action"] == "lambda:InvokeFunction"} == {
        "lambda:InvokeFunction": {"Ref": version}
    }
    assert codedeploy_may_invoke == [
        {
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": {"Fn::GetAtt": ["PredictPreTrafficCheck", "Arn"]},
        }
    ]


# A first deploy: the answers samconfig.toml gives, the guided deploy's questions, the bucket's name.

S3_BUCKET_NAME_MAX = 63
LONGEST_REGION = "ap-southeast-2"  # 14 characters, as long as any commercial region's name


def test_a_plain_sam_deploy_finds_every_answer_in_samconfig():
    import tomllib

    config = tomllib.loads((REPO_DIR / "samconfig.toml").read_text())["default"]
    deploy = config["deploy"]["parameters"]

    assert config["global"]["parameters"]["stack_name"] == "cat-breed-classifier"
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    # SAM creates and manages the upload bucket and the image repository: no --s3-bucket or --image-repository
    assert deploy["resolve_s3"] is True and deploy["resolve_image_repos"] is True
    assert "guided" not in json.dumps(config).lower()


def test_the_guided_deploy_asks_once_per_route_about_authentication_and_the_docs_say_to_answer_y():
    from lambda_function.api.gateway import ROUTE_METHODS

    result = run_tool(INFRA_BIN / "python", "tests/support/guided_deploy_questions.py", "template.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    asked = json.loads(result.stdout)
    routes = [(method, path) for path, methods in ROUTE_METHODS.items() for method in methods]
    (question,) = {a["question"] for a in asked}

    assert len(asked) == len(routes) == 4 and not any(a["default"] for a in asked)  # Enter answers N: it aborts
    for document in ("README.md", "docs/deploy.md"):
        text = re.sub(r"\s+", " ", (REPO_DIR / document).read_text())
        assert f"`{question} [y/N]`" in text, document
        assert "answer `y`" in text or "Type `y`" in text, document
        assert "four times" in text, document
    deploy = re.sub(r"\s+", " ", (REPO_DIR / "docs" / "deploy.md").read_text())
    assert all(f"`{method} {path}`" in deploy for method, path in routes)


def test_the_docs_throttling_figures_are_the_templates_defaults(transformed_template):
    parameters = transformed_template["Parameters"]
    rate, burst = parameters["ThrottlingRateLimit"]["Default"], parameters["ThrottlingBurstLimit"]["Default"]

    readme = re.sub(r"\s+", " ", (REPO_DIR / "README.md").read_text())
    deploy = re.sub(r"\s+", " ", (REPO_DIR / "docs" / "deploy.md").read_text())
    assert f"({rate} requests a second, bursts of {burst})" in readme
    security = re.sub(r"\s+", " ", (REPO_DIR / "docs" / "security.md").read_text())
    assert f"(`ThrottlingRateLimit`, {rate} requests a second, and bursts of `ThrottlingBurstLimit`, {burst};" in deploy
    assert f"(`ThrottlingRateLimit`, {rate} requests a second, and `ThrottlingBurstLimit`, {burst})" in security


def test_the_images_bucket_is_named_after_the_stack_and_the_policies_repeat_that_name(cloudformation):
    name = cloudformation["ImagesBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    s3_arn = "arn:${AWS::Partition}:s3:::"
    repeated = [
        statement["Resource"]["Fn::Sub"].removeprefix(s3_arn).split("/")[0]
        for statements in iam_statements(cloudformation).values()
        for statement in statements
        if isinstance(statement["Resource"], dict) and statement["Resource"].get("Fn::Sub", "").startswith(s3_arn)
    ]
    deploy = re.sub(r"\s+", " ", (REPO_DIR / "docs" / "deploy.md").read_text())
    stack_name_max = int(re.search(r"lowercase letters, digits and hyphens, at most (\d+) characters", deploy).group(1))
    longest = (
        name.replace("${AWS::StackName}", "x" * stack_name_max)
        .replace("${AWS::AccountId}", "123456789012")
        .replace("${AWS::Region}", LONGEST_REGION)
    )

    assert name == "${AWS::StackName}-images-${AWS::AccountId}-${AWS::Region}"
    # the tagging role's objects and listing, Batch Operations' manifests and reports: the same name, to the letter
    assert repeated == [name] * 4
    assert "cat-breed-images" not in (REPO_DIR / "template.yaml").read_text()
    assert len(longest) == S3_BUCKET_NAME_MAX  # the docs' limit on the stack's name is the longest that fits
    assert f"at most {stack_name_max} characters" in re.sub(r"\s+", " ", (REPO_DIR / "README.md").read_text())
