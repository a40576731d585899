"""The images, really built and really run, as AWS and Kubernetes run them.

- `sam build` of the untouched template builds one image, the Dockerfile's Lambda stage, for every function;
- `sam local invoke` answers every committed event on its function (S3 events against an S3-compatible server);
- `sam local start-api` serves the page, predicts, and refuses an upload over the cap with the documented error;
- the Lambda image runs on a read-only root under its emulator, and holds the runtime set alone;
- the `server` target runs as kube-config/deployment.yaml runs it, and lets a request in flight finish on SIGTERM.

Where `public.ecr.aws/lambda/python:3.12` cannot be pulled (this machine), the image builds on its stand-in
(tests/support/lambda_base/), which wears AWS's name only while this module runs. `make test` installs Docker's
engine and starts it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
import yaml

from lambda_function.settings import DEFAULT_MAX_UPLOAD_BYTES
from tests.conftest import CAT_PHOTOS, EVENTS_DIR, REPO_DIR
from tests.support import http_server
from tests.support.api_server import call, free_port
from tests.support.container_servers import S3InContainer, s3_on_network
from tests.support.docker_cli import docker, engine_is_running, image_config, logs, running_container, wait_for_http
from tests.support.lambda_base.stand_in import LAMBDA_USER, shadowing_aws_base_image, stand_in_image
from tests.support.sam_template import functions_of, read_template

SAM = REPO_DIR / ".venv-infra" / "bin" / "sam"
EVENT_FILES = sorted(p.name for p in EVENTS_DIR.glob("*.json") if p.name != "env.json")
# The model the image carries: the Dockerfile's default, named by its sidecar.
MODEL_NAME = json.loads((REPO_DIR / "models" / "cat-breeds-34.json").read_text())["name"]
PHOTO = CAT_PHOTOS[35]
# A name of the test's own network: the function's container reaches the test S3 by it, and a URL naming it is a
# private address, which the fetcher refuses in the image as everywhere.
NETWORK = f"cat-breeds-test-{os.getpid()}"

pytestmark = pytest.mark.timeout(900)


def sam(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(SAM), *args],
        cwd=REPO_DIR,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "eu-west-1"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    return completed


@dataclass(frozen=True)
class BuiltStack:
    template: Path  # the built template, each function's ImageUri filled in
    log: str


def user_image_tags() -> list[str]:
    """The tags a user's own `sam build` and `sam local` give the image (Metadata's DockerImage and DockerTag, and
    SAM's emulator-ready copy): the tests build under them too, and give them back afterwards."""
    metadata = next(iter(functions_of(read_template(REPO_DIR / "template.yaml")).values()))["Metadata"]
    return [f"{metadata['DockerImage']}:{metadata['DockerTag']}", f"{metadata['DockerImage']}:rapid-x86_64"]


@pytest.fixture(scope="module")
def aws_base() -> Iterator[str]:
    if not engine_is_running():
        pytest.fail("no Docker engine answers: `make test` installs docker.io and starts dockerd")
    stand_in = stand_in_image()
    with shadowing_aws_base_image(stand_in, *user_image_tags()):
        yield stand_in


@pytest.fixture(scope="module")
def built(aws_base: str, tmp_path_factory: pytest.TempPathFactory) -> BuiltStack:
    """`sam build` of the repository's template, as a user runs it (samconfig.toml's settings), into a folder of
    the test's own."""
    out = tmp_path_factory.mktemp("sam")
    completed = sam("build", "--build-dir", str(out / "build"), "--cache-dir", str(out / "cache"))
    return BuiltStack(out / "build" / "template.yaml", completed.stdout + completed.stderr)


@pytest.fixture(scope="module")
def lambda_image(built: BuiltStack) -> str:
    (image,) = {f["Properties"]["ImageUri"] for f in functions_of(read_template(built.template)).values()}
    return image


@pytest.fixture(scope="module")
def s3_server(aws_base: str) -> Iterator[S3InContainer]:
    with s3_on_network(aws_base, NETWORK) as server:
        yield server


# sam build


def test_sam_build_builds_one_image_of_the_lambda_stage_for_every_function(built):
    source = functions_of(read_template(REPO_DIR / "template.yaml"))
    images = {name: f["Properties"]["ImageUri"] for name, f in functions_of(read_template(built.template)).items()}
    configs = {name: image_config(image) for name, image in images.items()}

    assert set(images) == set(source) == {"PredictFunction", "TaggingFunction", "PredictPreTrafficCheck"}
    for name, config in configs.items():
        assert config["Entrypoint"] == ["/lambda-entrypoint.sh"], name  # AWS's, not the HTTP server's
        assert config.get("User", "") in ("", "root"), name  # as AWS's image: SAM's emulator goes in as root
    assert configs["PredictFunction"]["Cmd"] == source["PredictFunction"]["Properties"]["ImageConfig"]["Command"]
    assert len(set(images.values())) == 1
    assert built.log.count("Building image for") == 1


def test_every_function_s_image_imports_the_handler_its_template_names(built, lambda_image):
    handlers = [
        f["Properties"]["ImageConfig"]["Command"][0] for f in functions_of(read_template(built.template)).values()
    ]
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    module, function = name.rsplit('.', 1)\n"
        "    assert callable(getattr(importlib.import_module(module), function)), name\n"
        "print('ok', len(sys.argv) - 1)\n"
    )
    output = docker(
        "run", "--rm", "--read-only", "--user", LAMBDA_USER, "--env", "POWERTOOLS_TRACE_DISABLED=1",
        "--env", "NEW_VERSION=arn:aws:lambda:eu-west-1:123456789012:function:f:1",
        "--entrypoint", "python", lambda_image, "-c", probe, *handlers,
    )  # fmt: skip

    assert output.strip() == f"ok {len(handlers)}"


# sam local invoke


def test_sam_local_invoke_answers_every_committed_api_event(built, s3_server, tmp_path, subtests):
    for event_file in EVENT_FILES:
        event = json.loads((EVENTS_DIR / event_file).read_text())
        if "Records" in event or "tasks" in event:
            continue
        with subtests.test(event=event_file):
            response = _invoke(built, "PredictFunction", _with_private_url(event, s3_server), tmp_path, s3_server)
            _check_api_answer(event_file, response)


def test_sam_local_invoke_tags_the_objects_of_every_committed_s3_event(built, s3_server, tmp_path, subtests):
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint_on_host)
    for event_file in EVENT_FILES:
        event = json.loads((EVENTS_DIR / event_file).read_text())
        if "Records" not in event and "tasks" not in event:
            continue
        with subtests.test(event=event_file):
            objects = _put_event_objects(s3, event)
            response = _invoke(built, "TaggingFunction", event, tmp_path, s3_server)

            if "Records" in event:
                assert response == {"records": len(objects), "tagged": len(objects), "failed": 0}
            else:
                assert [r["resultCode"] for r in response["results"]] == ["Succeeded"] * len(objects)
            for bucket, key in objects:
                tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
                assert tags["cat-detected"] == "true" and tags["cat-breed"], tags
                assert tags["cat-breed-model"].startswith(MODEL_NAME), tags


def _with_private_url(event: dict[str, Any], s3_server: S3InContainer) -> dict[str, Any]:
    """A URL event names a photo on the test's network instead of the public one (this machine has no internet)."""
    try:
        body = json.loads(event.get("body") or "null")
    except ValueError:
        return event
    if not (isinstance(body, dict) and "url" in body):
        return event
    return {**event, "body": json.dumps({**body, "url": f"{s3_server.endpoint_in_network}/photos/cat.jpg"})}


def _check_api_answer(event_file: str, response: dict[str, Any]) -> None:
    """Each committed API event's answer, as the Lambda-path tests expect it (tests/integration/test_runtime_image.py),
    but for the URL events, whose photo is on the test's private network here."""
    if event_file.startswith("page"):
        assert response["statusCode"] == 200 and response["body"].startswith("<!doctype html>")
        return
    body = json.loads(response["body"])
    if event_file.startswith("predict-url"):
        # The image's fetcher refuses the test's network (any port allowed: refused by its address), as it must
        # refuse every private address.
        assert (response["statusCode"], body["error"]["code"]) == (403, "url_not_allowed"), body
        assert "port" not in body["error"]["message"], body
    elif event_file == "bad-request.json":
        assert response["statusCode"] == 400 and body["error"]["code"], body
    elif event_file.startswith("health"):
        assert (response["statusCode"], body["status"], body["model"]["name"]) == (200, "ok", MODEL_NAME), body
    else:
        assert response["statusCode"] == 200 and body["model"]["name"] == MODEL_NAME, body
        assert body["cat_detected"] is True and body["predictions"], body


def _put_event_objects(s3: Any, event: dict[str, Any]) -> list[tuple[str, str]]:
    objects = [(r["s3"]["bucket"]["name"], unquote_plus(r["s3"]["object"]["key"])) for r in event.get("Records", [])]
    objects += [
        (t.get("s3Bucket") or t["s3BucketArn"].split(":::")[1], unquote_plus(t["s3Key"]))
        for t in event.get("tasks", [])
    ]
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for bucket, key in objects:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
            existing.add(bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=PHOTO.read_bytes())
    return objects


def _env_vars_file(tmp_path: Path, s3_server: S3InContainer) -> Path:
    """`--env-vars`: the settings' S3 endpoint, pointed at the test's S3 by its name on the test's network; URLs
    on any port, so that a refusal is the address's."""
    path = tmp_path / "env-vars.json"
    path.write_text(
        json.dumps(
            {
                "Parameters": {
                    "S3_ENDPOINT_URL": s3_server.endpoint_in_network,
                    "FETCH_ALLOWED_PORTS": "any",
                }
            }
        )
    )
    return path


def _invoke(
    built: BuiltStack, function: str, event: dict[str, Any], tmp_path: Path, s3_server: S3InContainer
) -> dict[str, Any]:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event))
    before = set(_sam_containers())
    try:
        completed = sam(
            "local", "invoke", function, "--template", str(built.template), "--event", str(event_path),
            "--env-vars", str(_env_vars_file(tmp_path, s3_server)), "--docker-network", s3_server.network,
            "--skip-pull-image", "--container-host-interface", "127.0.0.1",
            timeout_s=180,
        )  # fmt: skip
    finally:
        left_behind = set(_sam_containers()) - before  # by a SAM that timed out
        if left_behind:
            docker("rm", "--force", *left_behind)
    return json.loads(completed.stdout.strip().splitlines()[-1])


# sam local start-api


def test_sam_local_start_api_serves_the_page_predicts_and_refuses_an_upload_over_the_cap(built, s3_server, tmp_path):
    log_path = tmp_path / "start-api.log"
    with sam_local_start_api(built, _env_vars_file(tmp_path, s3_server), log_path) as base_url:
        page = _get(f"{base_url}/")
        status, answer = call(base_url, "POST", "/predict", {"image": base64.b64encode(PHOTO.read_bytes()).decode()})
        # Over the cap, under Lambda's 6 MB payload: the function answers it, with its own error.
        oversized = base64.b64encode(os.urandom(DEFAULT_MAX_UPLOAD_BYTES + 100_000)).decode()
        too_large_status, too_large = call(base_url, "POST", "/predict", {"image": oversized}, timeout=120)

    assert page[0] == 200 and page[1].startswith(b"<!doctype html>")
    assert status == 200, log_path.read_text()[-3000:]
    assert answer["model"]["name"] == MODEL_NAME and answer["predictions"]
    assert (too_large_status, too_large["error"]["code"]) == (413, "image_too_large")


@contextmanager
def sam_local_start_api(built: BuiltStack, env_vars: Path, log_path: Path) -> Iterator[str]:
    """`sam local start-api` on a free loopback port; its base URL once it answers. A container per request (no warm
    containers, which SAM leaves running when it is stopped); SAM is killed if it lingers after SIGTERM, and any
    function container it started is removed in any case."""
    port = free_port()
    before = set(_sam_containers())
    with log_path.open("w") as log:
        api = subprocess.Popen(
            [
                str(SAM), "local", "start-api", "--template", str(built.template), "--host", "127.0.0.1",
                "--port", str(port), "--skip-pull-image", "--container-host-interface", "127.0.0.1",
                "--env-vars", str(env_vars),
            ],
            cwd=REPO_DIR, env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "eu-west-1"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base_url}/health", timeout_s=120)
            yield base_url
        finally:
            try:
                os.killpg(api.pid, signal.SIGTERM)
                api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(api.pid, signal.SIGKILL)
                api.wait()
            finally:
                started = set(_sam_containers()) - before
                if started:
                    docker("rm", "--force", *started)


def _sam_containers() -> list[str]:
    """The IDs of the function containers SAM runs (it labels them)."""
    return docker("ps", "--all", "--quiet", "--filter", "label=sam.cli.container.type=lambda").split()


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.read()


# The predict image as Lambda runs it


def test_the_predict_image_answers_on_a_read_only_root_under_its_emulator(lambda_image):
    """Read-only, /tmp alone writable, Lambda's unprivileged user, the base image's own emulator; on the host's
    network, so the function fetches a photo from a server on this machine's loopback."""
    emulator_port, runtime_api_port = free_port(), free_port()
    environment = ["FETCH_ALLOW_LOOPBACK=true", "FETCH_ALLOWED_PORTS=any", "POWERTOOLS_TRACE_DISABLED=1"]
    with (
        http_server.running({"/cat.jpg": http_server.serve_bytes(PHOTO.read_bytes())}) as photo_host,
        running_container(
            "--network", "host", "--read-only", "--tmpfs", "/tmp", "--user", LAMBDA_USER,
            *[arg for variable in environment for arg in ("--env", variable)],
            "--entrypoint", "/usr/local/bin/aws-lambda-rie", lambda_image,
            "--runtime-interface-emulator-address", f"127.0.0.1:{emulator_port}",
            "--runtime-api-address", f"127.0.0.1:{runtime_api_port}",
            "/lambda-entrypoint.sh", "lambda_function.handler.lambda_handler",
            name=f"cat-breeds-test-lambda-{os.getpid()}",
        ) as container,
    ):  # fmt: skip
        invocations = f"http://127.0.0.1:{emulator_port}/2015-03-31/functions/function/invocations"
        wait_for_http(invocations.rsplit("/2015", 1)[0] + "/", timeout_s=60, container=container)
        by_url = _invoke_emulator(invocations, _url_event(photo_host.url("/cat.jpg")))
        by_upload = _invoke_emulator(invocations, json.loads((EVENTS_DIR / "predict-base64.json").read_text()))
        container_log = logs(container)

    for response in (by_url, by_upload):
        body = json.loads(response["body"])
        assert response["statusCode"] == 200, (body, container_log[-3000:])
        assert body["model"]["name"] == MODEL_NAME and body["predictions"]
    assert photo_host.requests == ["/cat.jpg"]


def _url_event(url: str) -> dict[str, Any]:
    event = json.loads((EVENTS_DIR / "predict-url-httpapi.json").read_text())
    return {**event, "body": json.dumps({**json.loads(event["body"]), "url": url})}


def _invoke_emulator(invocations_url: str, event: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(invocations_url, data=json.dumps(event).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_the_predict_image_holds_the_runtime_lock_the_code_and_the_model_and_nothing_else(lambda_image):
    installed = json.loads(
        docker("run", "--rm", "--entrypoint", "python", lambda_image, "-m", "pip", "list", "--format", "json")
    )
    names = {_normalise(p["name"]): p["version"] for p in installed}
    locked = locked_for_this_platform()
    task_root = docker("run", "--rm", "--entrypoint", "ls", lambda_image, "/var/task").split()
    tools = docker(
        "run", "--rm", "--entrypoint", "sh", lambda_image, "-c",
        "for t in gcc cc make cmake g++ git; do command -v $t; done; true",
    )  # fmt: skip

    base_image_packages = {"pip", "setuptools", "awslambdaric", "simplejson", "snapshot-restore-py"}
    assert set(names) - set(locked) <= base_image_packages, set(names) - set(locked)
    assert {name: names.get(name) for name in locked} == locked
    assert {"tensorflow", "keras", "torch", "pytest", "moto", "ruff", "wheel", "cython"}.isdisjoint(names)
    assert sorted(task_root) == ["lambda_function", "models", "requirements.lock"]
    assert tools.strip() == ""


def locked_for_this_platform() -> dict[str, str]:
    """The lock's pins whose markers hold for the image (Linux x86_64 and the stand-in's Python, as here)."""
    from packaging.markers import Marker

    pins = {}
    for line in (REPO_DIR / "requirements.lock").read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if found and (found.group(3) is None or Marker(found.group(3)).evaluate()):
            pins[_normalise(found.group(1))] = found.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# The server target as Kubernetes runs it


@pytest.fixture(scope="module")
def server_image(aws_base: str) -> Iterator[str]:
    reference = f"cat-breeds-test/server:{os.getpid()}"
    docker("build", "--target", "server", "--tag", reference, str(REPO_DIR), timeout_s=900)
    yield reference
    docker("rmi", reference, timeout_s=120)


def kubernetes_run_arguments() -> tuple[list[str], int]:
    """`docker run` arguments for what kube-config/deployment.yaml asks of the container, and its port."""
    pod = yaml.safe_load((REPO_DIR / "kube-config" / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    limits = container["resources"]["limits"]
    arguments = ["--user", f"{security['runAsUser']}:{security['runAsGroup']}", "--cap-drop", "ALL"]
    arguments += ["--security-opt", "no-new-privileges", "--cpus", limits["cpu"]]
    arguments += ["--memory", limits["memory"].replace("Gi", "g").replace("Mi", "m")]
    if security.get("readOnlyRootFilesystem"):
        arguments.append("--read-only")
    arguments += [arg for mount in container.get("volumeMounts", []) for arg in ("--tmpfs", mount["mountPath"])]
    arguments += [arg for variable in container["env"] for arg in ("--env", f"{variable['name']}={variable['value']}")]
    return arguments, container["ports"][0]["containerPort"]


def test_the_server_target_serves_as_kubernetes_runs_it_and_finishes_a_request_in_flight_on_sigterm(server_image):
    arguments, container_port = kubernetes_run_arguments()
    host_port = free_port()
    name = f"cat-breeds-test-server-{os.getpid()}"
    body = json.dumps({"image": base64.b64encode(PHOTO.read_bytes()).decode()}).encode()
    with running_container(*arguments, "--publish", f"127.0.0.1:{host_port}:{container_port}", server_image, name=name):
        base_url = f"http://127.0.0.1:{host_port}"
        _wait_ready(base_url, name)
        live, ready = call(base_url, "GET", "/livez")[0], call(base_url, "GET", "/readyz")[0]
        status, answer = call(base_url, "POST", "/predict", json.loads(body))

        # A request in flight (half its body sent) when Kubernetes sends SIGTERM still gets its answer.
        with socket.create_connection(("127.0.0.1", host_port), timeout=60) as in_flight:
            in_flight.sendall(
                b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            time.sleep(0.5)
            docker("kill", "--signal", "TERM", name)
            time.sleep(1)
            in_flight.sendall(body[len(body) // 2 :])
            reply = _read_reply(in_flight)
        exit_code = int(docker("wait", name, timeout_s=60).strip())
        server_log = logs(name)

    assert (live, ready) == (200, 200)
    assert status == 200 and answer["model"]["name"] == MODEL_NAME
    assert reply.startswith(b"HTTP/1.1 200"), (reply[:300], server_log[-3000:])
    assert b'"predictions"' in reply
    assert exit_code == 0, server_log[-3000:]
    user = image_config(server_image)["User"]
    assert user == str(
        yaml.safe_load((REPO_DIR / "kube-config" / "deployment.yaml").read_text())["spec"]["template"]["spec"][
            "securityContext"
        ]["runAsUser"]
    )


def _wait_ready(base_url: str, container: str) -> None:
    deadline = time.monotonic() + 90
    while call(base_url, "GET", "/readyz", timeout=2)[0] != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server never became ready:\n{logs(container)[-3000:]}")
        time.sleep(0.3)


def _read_reply(connection: socket.socket) -> bytes:
    """The whole first answer on the connection (headers and a Content-Length body)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            return received
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    while len(rest) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest
