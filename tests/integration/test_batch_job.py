"""Tagging a whole bucket with S3 Batch Operations: the manifest, the job request (checked against the S3 Control
API's own model), the `backfill --batch-operations` command, and listing that streams."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import boto3
import botocore.session
import pytest
from botocore.stub import ANY, Stubber
from botocore.validate import ParamValidator

from lambda_function.cli import main as cli_main
from lambda_function.tagging.batch_job import (
    CSV_MANIFEST_FORMAT,
    INVENTORY_MANIFEST_FORMAT,
    JobTarget,
    Manifest,
    job_request,
    manifest_line,
    submit_tagging_job,
    target_from_stack,
    write_manifest,
)
from tests.support.many_keys import peak_bytes

ROLE_ARN = "arn:aws:iam::123456789012:role/cat-breeds-dev-BatchOperationsRole-1A2B3C"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:cat-breeds-dev-tagging"
TARGET = JobTarget(function_arn=FUNCTION_ARN, role_arn=ROLE_ARN)
BUCKET = "cat-photos-batch"
AWKWARD_KEYS = [
    "uploads/Mittens on the sofa.jpg",
    "uploads/Tom+Jerry.jpg",
    "uploads/Tom Jerry.jpg",
    "uploads/été/chat n°1.jpg",
    "uploads/a,b;c.jpg",
    'uploads/say "cheese".jpg',
    "uploads/line\nbreak.jpg",
    "uploads/100%.jpg",
]


def s3control_client() -> Any:
    return botocore.session.get_session().create_client("s3control", region_name="eu-west-1")


# The manifest


def test_each_manifest_line_holds_the_bucket_and_the_url_encoded_key():
    assert manifest_line("b", "uploads/Tom+Jerry é.jpg") == "b,uploads/Tom%2BJerry%20%C3%A9.jpg\n"

    for key in AWKWARD_KEYS:
        (row,) = list(csv.reader(io.StringIO(manifest_line(BUCKET, key))))
        assert row[0] == BUCKET
        assert unquote_plus(row[1]) == key  # as the tagging function decodes a task's key


def test_the_manifest_is_written_as_the_keys_come():
    def keys() -> Iterator[str]:
        yield "uploads/1.jpg"
        assert out.getvalue() == f"{BUCKET},uploads/1.jpg\n", "the first line waited for the second key"
        yield "uploads/2.jpg"

    out = io.StringIO()

    assert write_manifest(keys(), BUCKET, out) == 2


# The job request, checked against the S3 Control API model


def test_the_job_request_is_valid_for_create_job_field_by_field():
    manifest = Manifest(bucket=BUCKET, key="batch-operations/manifests/abc.csv", etag='"0123abcd"')

    request = job_request(TARGET, manifest, priority=42, client_token="abc")

    input_shape = s3control_client().meta.service_model.operation_model("CreateJob").input_shape
    report = ParamValidator().validate(request, input_shape)
    assert not report.has_errors(), report.generate_report()
    assert request["AccountId"] == "123456789012"
    assert request["RoleArn"] == ROLE_ARN
    assert request["Priority"] == 42 and request["ConfirmationRequired"] is True
    assert request["ClientRequestToken"] == "abc"
    assert request["Operation"] == {"LambdaInvoke": {"FunctionArn": FUNCTION_ARN, "InvocationSchemaVersion": "2.0"}}
    assert request["Manifest"] == {
        "Spec": {"Format": CSV_MANIFEST_FORMAT, "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": f"arn:aws:s3:::{BUCKET}/batch-operations/manifests/abc.csv", "ETag": '"0123abcd"'},
    }
    assert request["Report"] == {
        "Bucket": f"arn:aws:s3:::{BUCKET}",
        "Format": "Report_CSV_20180820",
        "Enabled": True,
        "Prefix": "batch-operations/reports",
        "ReportScope": "AllTasks",
    }


def test_an_inventory_manifest_is_named_by_its_own_format_without_fields():
    manifest = Manifest(
        BUCKET, "inventory/cat-photos/daily/2026-11-29T00-00Z/manifest.json", "e", INVENTORY_MANIFEST_FORMAT
    )

    request = job_request(TARGET, manifest, confirmation_required=False)

    assert request["Manifest"]["Spec"] == {"Format": INVENTORY_MANIFEST_FORMAT}
    assert request["ConfirmationRequired"] is False


# The command


def test_a_dry_run_prints_the_manifest_location_and_the_exact_request_without_aws(capsys, network_guard):
    status = cli_main(
        [
            "backfill",
            f"s3://{BUCKET}/uploads/",
            "--batch-operations",
            "--dry-run",
            "--role-arn",
            ROLE_ARN,
            "--function-arn",
            FUNCTION_ARN,
            "--priority",
            "20",
        ]
    )

    out = capsys.readouterr().out
    assert status == 0
    location = next(line for line in out.splitlines() if line.startswith("manifest: "))
    assert location.startswith(f"manifest: s3://{BUCKET}/batch-operations/manifests/")
    request = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert request["Manifest"]["Location"]["ObjectArn"] == (
        f"arn:aws:s3:::{BUCKET}/{location.split(f'{BUCKET}/', 1)[1].split()[0]}"
    )
    assert request["Priority"] == 20 and request["RoleArn"] == ROLE_ARN
    assert not network_guard.refused_connects and not network_guard.refused_lookups


@pytest.fixture
def bucket(s3_endpoint: str) -> Any:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.mark.parametrize("confirmed", [False, True], ids=["asks-for-confirmation", "yes"])
def test_the_job_is_created_on_an_uploaded_manifest_of_the_image_keys(bucket, confirmed):
    keys = [key for key in AWKWARD_KEYS if "\n" not in key]  # S3 takes a line break in a key; moto does not
    for key in [*keys, "uploads/notes.txt", "elsewhere/cat.jpg"]:
        bucket.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    s3control = s3control_client()
    out = io.StringIO()
    with Stubber(s3control) as stub:
        stub.add_response(
            "create_job",
            {"JobId": "job-1234"},
            expected_params={**_any_request(), "ConfirmationRequired": not confirmed},
        )

        job_id = submit_tagging_job(
            bucket, s3control, TARGET, BUCKET, "uploads/", confirmation_required=not confirmed, out=out
        )
        stub.assert_no_pending_responses()

    manifests = bucket.list_objects_v2(Bucket=BUCKET, Prefix="batch-operations/manifests/")["Contents"]
    (manifest,) = manifests
    body = bucket.get_object(Bucket=BUCKET, Key=manifest["Key"])["Body"].read().decode()
    assert sorted(body.splitlines(keepends=True)) == sorted(manifest_line(BUCKET, key) for key in keys)
    assert job_id == "job-1234"
    printed = out.getvalue()
    assert "job-1234" in printed and "aws s3control describe-job" in printed
    assert ("update-job-status" in printed) is not confirmed


def test_an_inventory_manifest_is_used_as_it_is(bucket):
    inventory_key = "inventory/cat-photos/daily/2026-11-29T00-00Z/manifest.json"
    bucket.put_object(Bucket=BUCKET, Key=inventory_key, Body=b'{"files": []}')
    etag = bucket.head_object(Bucket=BUCKET, Key=inventory_key)["ETag"]
    s3control = s3control_client()
    with Stubber(s3control) as stub:
        expected = _any_request()
        expected["Manifest"] = {
            "Spec": {"Format": INVENTORY_MANIFEST_FORMAT},
            "Location": {"ObjectArn": f"arn:aws:s3:::{BUCKET}/{inventory_key}", "ETag": etag},
        }
        stub.add_response("create_job", {"JobId": "job-5678"}, expected_params=expected)

        submit_tagging_job(
            bucket,
            s3control,
            TARGET,
            BUCKET,
            "",
            inventory_manifest=f"s3://{BUCKET}/{inventory_key}",
            out=io.StringIO(),
        )

    assert "batch-operations/manifests/" not in str(bucket.list_objects_v2(Bucket=BUCKET))


def test_an_inventory_with_a_prefix_is_refused_rather_than_the_prefix_ignored():
    with pytest.raises(ValueError, match="S3 Inventory lists the objects its configuration covers"):
        submit_tagging_job(
            None,
            None,
            TARGET,
            BUCKET,
            "uploads/",
            inventory_manifest=f"s3://{BUCKET}/inventory/manifest.json",
            out=io.StringIO(),
            dry_run=True,
        )


def stack_target(images_bucket: str = BUCKET, images_prefix: str = "uploads/") -> JobTarget:
    """The target `target_from_stack` reads from a deployed stack's outputs (describe_stacks as AWS answers it)."""
    cloudformation = botocore.session.get_session().create_client("cloudformation", region_name="eu-west-1")
    outputs = {
        "TaggingFunctionArn": FUNCTION_ARN,
        "BatchOperationsRoleArn": ROLE_ARN,
        "ImagesBucketName": images_bucket,
        "ImagesPrefix": images_prefix,
    }
    stack = {
        "StackName": "cat-breeds-dev",
        "CreationTime": "2026-12-01T00:00:00Z",
        "StackStatus": "CREATE_COMPLETE",
        "Outputs": [{"OutputKey": key, "OutputValue": value} for key, value in outputs.items()],
    }
    with Stubber(cloudformation) as stub:
        stub.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "cat-breeds-dev"})
        return target_from_stack(cloudformation, "cat-breeds-dev")


@pytest.mark.parametrize(
    ("bucket_name", "prefix"), [(BUCKET, "archive/"), (BUCKET, ""), (BUCKET, "uploads"), ("another-bucket", "uploads/")]
)
def test_a_job_outside_what_the_stacks_function_may_tag_is_refused_up_front(bucket_name, prefix):
    target = stack_target()

    with pytest.raises(ValueError, match="may read and tag only under s3://cat-photos-batch/uploads/"):
        submit_tagging_job(None, None, target, bucket_name, prefix, out=io.StringIO(), dry_run=True)


def test_a_job_under_the_stacks_prefix_goes_ahead():
    out = io.StringIO()

    submit_tagging_job(None, None, stack_target(), BUCKET, "uploads/2025/", out=out, dry_run=True)

    assert "job request" in out.getvalue()


def _any_request() -> dict[str, Any]:
    return {
        "AccountId": "123456789012",
        "ConfirmationRequired": True,
        "Operation": {"LambdaInvoke": {"FunctionArn": FUNCTION_ARN, "InvocationSchemaVersion": "2.0"}},
        "Report": ANY,
        "ClientRequestToken": ANY,
        "Manifest": ANY,
        "Description": ANY,
        "Priority": 10,
        "RoleArn": ROLE_ARN,
    }


# Listing streams: memory stays flat for any number of keys (measured in a fresh interpreter each)


def test_a_manifest_of_100000_keys_is_written_in_flat_memory():
    peak_small, small = peak_bytes("manifest", 10_000)
    peak_large, large = peak_bytes("manifest", 100_000)

    assert (small, large) == ([10_000, 10_000], [100_000, 100_000])
    # Flat: ten times the keys, the same peak (a page of keys); a list of them all would add about 8 MB.
    assert peak_large < peak_small + 1_000_000


def test_the_local_backfill_of_100000_keys_streams_them():
    peak_small, small = peak_bytes("backfill", 10_000)
    peak_large, large = peak_bytes("backfill", 100_000)

    assert small == {"images": 10_000, "already_tagged": 10_000}
    assert large == {"images": 100_000, "already_tagged": 100_000}
    assert peak_large < peak_small + 1_000_000
