"""An S3 Batch Operations job that runs the tagging function on every photo under a prefix.

`python -m lambda_function backfill s3://BUCKET/PREFIX --batch-operations` writes a CSV manifest of the image keys
while it lists them (one line at a time, so memory stays flat for any number of keys), uploads it, and creates the
job with `s3control.create_job`; or it takes an S3 Inventory manifest the bucket already has. Batch Operations
then invokes the function once per object, with retries, its own concurrency and a completion report.
"""

from __future__ import annotations

import io
import json
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

from lambda_function.tagging.s3_objects import image_keys, parse_s3_url

CSV_MANIFEST_FORMAT = "S3BatchOperations_CSV_20180820"
INVENTORY_MANIFEST_FORMAT = "S3InventoryReport_CSV_20161130"
REPORT_FORMAT = "Report_CSV_20180820"
INVOCATION_SCHEMA_VERSION = "2.0"
DEFAULT_PRIORITY = 10
# Stack outputs (template.yaml) that name what a job needs.
OUTPUT_ROLE_ARN = "BatchOperationsRoleArn"
OUTPUT_FUNCTION_ARN = "TaggingFunctionArn"
OUTPUT_MANIFEST_PREFIX = "BatchOperationsManifestPrefix"
OUTPUT_REPORT_PREFIX = "BatchOperationsReportPrefix"
OUTPUT_IMAGES_BUCKET = "ImagesBucketName"
OUTPUT_IMAGES_PREFIX = "ImagesPrefix"
DEFAULT_MANIFEST_PREFIX = "batch-operations/manifests/"
DEFAULT_REPORT_PREFIX = "batch-operations/reports/"
DRY_RUN_ETAG = "<the ETag of the uploaded manifest>"


@dataclass(frozen=True)
class JobTarget:
    """What the job runs and as whom: the tagging function, the role Batch Operations assumes, where files go."""

    function_arn: str
    role_arn: str
    manifest_prefix: str = DEFAULT_MANIFEST_PREFIX
    report_prefix: str = DEFAULT_REPORT_PREFIX
    # Where the tagging function may read and tag (its role's policy): known from a stack, None when given by hand.
    images_bucket: str | None = None
    images_prefix: str | None = None

    def refusal(self, bucket: str, prefix: str) -> str | None:
        """Why a job for s3://bucket/prefix would fail every task with AccessDenied; None when it would not (or
        when the function's scope is not known)."""
        if self.images_bucket is None or self.images_prefix is None:
            return None
        if bucket == self.images_bucket and prefix.startswith(self.images_prefix):
            return None
        return (
            f"the stack's tagging function may read and tag only under s3://{self.images_bucket}/"
            f"{self.images_prefix}, so a job for s3://{bucket}/{prefix} would fail every task with AccessDenied; "
            f"give a prefix under s3://{self.images_bucket}/{self.images_prefix}"
        )

    @property
    def account_id(self) -> str:
        return self.role_arn.split(":")[4]

    @property
    def partition(self) -> str:
        return self.role_arn.split(":")[1]


@dataclass(frozen=True)
class Manifest:
    """Where the job's list of objects is, in which format, and the ETag that pins its content."""

    bucket: str
    key: str
    etag: str
    format: str = CSV_MANIFEST_FORMAT

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def manifest_line(bucket: str, key: str) -> str:
    """One CSV line: the bucket and the URL-encoded key. Percent-encoding also escapes commas, quotes and line
    breaks, so no line ever needs CSV quoting."""
    return f"{bucket},{quote(key, safe='/')}\n"


def write_manifest(keys: Iterable[str], bucket: str, out: IO[str]) -> int:
    """Write one line per key as the keys come; the number of lines."""
    count = 0
    for key in keys:
        out.write(manifest_line(bucket, key))
        count += 1
    return count


def job_request(
    target: JobTarget,
    manifest: Manifest,
    *,
    priority: int = DEFAULT_PRIORITY,
    confirmation_required: bool = True,
    client_token: str | None = None,
    description: str = "Tag photos with their cat breed",
) -> dict[str, Any]:
    """The arguments of `s3control.create_job` for a job that invokes the tagging function on each object."""
    spec: dict[str, Any] = {"Format": manifest.format}
    if manifest.format == CSV_MANIFEST_FORMAT:
        spec["Fields"] = ["Bucket", "Key"]
    return {
        "AccountId": target.account_id,
        "ConfirmationRequired": confirmation_required,
        "Operation": {
            "LambdaInvoke": {
                "FunctionArn": target.function_arn,
                "InvocationSchemaVersion": INVOCATION_SCHEMA_VERSION,
            }
        },
        "Report": {
            "Bucket": f"arn:{target.partition}:s3:::{manifest.bucket}",
            "Format": REPORT_FORMAT,
            "Enabled": True,
            "Prefix": target.report_prefix.rstrip("/"),
            "ReportScope": "AllTasks",
        },
        "ClientRequestToken": client_token or str(uuid.uuid4()),
        "Manifest": {
            "Spec": spec,
            "Location": {
                "ObjectArn": f"arn:{target.partition}:s3:::{manifest.bucket}/{manifest.key}",
                "ETag": manifest.etag,
            },
        },
        "Description": description[:256] or "Tag photos with their cat breed",  # the API wants 1 to 256 characters
        "Priority": priority,
        "RoleArn": target.role_arn,
    }


def target_from_stack(cloudformation: Any, stack_name: str) -> JobTarget:
    """The job's target from the stack's outputs (template.yaml).

    Raises:
        ValueError: the stack lacks one of the outputs (deployed from an older template).
    """
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    missing = [name for name in (OUTPUT_ROLE_ARN, OUTPUT_FUNCTION_ARN) if name not in outputs]
    if missing:
        raise ValueError(f"stack {stack_name!r} has no output {', '.join(missing)}: deploy the current template.yaml")
    return JobTarget(
        function_arn=outputs[OUTPUT_FUNCTION_ARN],
        role_arn=outputs[OUTPUT_ROLE_ARN],
        manifest_prefix=outputs.get(OUTPUT_MANIFEST_PREFIX, DEFAULT_MANIFEST_PREFIX),
        report_prefix=outputs.get(OUTPUT_REPORT_PREFIX, DEFAULT_REPORT_PREFIX),
        images_bucket=outputs.get(OUTPUT_IMAGES_BUCKET),
        images_prefix=outputs.get(OUTPUT_IMAGES_PREFIX),
    )


def follow_up_commands(account_id: str, job_id: str, confirmation_required: bool) -> list[str]:
    """The AWS CLI commands that start (when it waits for confirmation) and follow the job."""
    commands = []
    if confirmation_required:
        commands.append(
            f"aws s3control update-job-status --account-id {account_id} --job-id {job_id} --requested-job-status Ready"
        )
    commands.append(f"aws s3control describe-job --account-id {account_id} --job-id {job_id}")
    return commands


def submit_tagging_job(
    s3: Any,
    s3control: Any,
    target: JobTarget,
    bucket: str,
    prefix: str,
    *,
    out: IO[str],
    inventory_manifest: str | None = None,
    priority: int = DEFAULT_PRIORITY,
    confirmation_required: bool = True,
    dry_run: bool = False,
) -> str | None:
    """Write and upload the manifest (or take the inventory's), create the job, and print how to follow it.

    With `dry_run`, nothing is listed, uploaded or created (no AWS call at all): the manifest's location and the
    exact request are printed, the manifest's ETag standing for the one the upload will give.

    Returns:
        The job id; None for a dry run or when the prefix holds no images.

    Raises:
        ValueError: the job could only fail: the prefix is outside what the stack's function may tag, or an
            inventory is given with a prefix (an inventory lists what its own configuration covers).
    """
    refusal = target.refusal(bucket, prefix)
    if refusal:
        raise ValueError(refusal)
    if inventory_manifest and prefix:
        raise ValueError(
            f"an S3 Inventory lists the objects its configuration covers, not those under {prefix!r}: give "
            f"s3://{bucket}/ with --inventory-manifest, and filter the inventory to the photos' prefix"
        )
    token = str(uuid.uuid4())
    description = f"Tag cat photos under s3://{bucket}/{prefix} with their breed"
    if inventory_manifest:
        manifest_bucket, manifest_key = parse_s3_url(inventory_manifest, key_required=True)
        etag = DRY_RUN_ETAG if dry_run else s3.head_object(Bucket=manifest_bucket, Key=manifest_key)["ETag"]
        manifest = Manifest(manifest_bucket, manifest_key, etag, INVENTORY_MANIFEST_FORMAT)
        print(f"manifest: {manifest.url()} (S3 Inventory)", file=out)
    else:
        manifest_key = f"{target.manifest_prefix}{token}.csv"
        if dry_run:
            manifest = Manifest(bucket, manifest_key, DRY_RUN_ETAG)
            print(f"manifest: {manifest.url()} (written from the listing of the prefix when run)", file=out)
        else:
            with tempfile.TemporaryFile() as spool:  # on disk, not in memory, whatever the number of keys
                lines = io.TextIOWrapper(spool, encoding="utf-8", newline="")
                count = write_manifest(image_keys(s3, bucket, prefix), bucket, lines)
                lines.flush()
                lines.detach()
                if count == 0:
                    print(f"no images under s3://{bucket}/{prefix}: no job created", file=out)
                    return None
                spool.seek(0)
                s3.upload_fileobj(spool, bucket, manifest_key)
            etag = s3.head_object(Bucket=bucket, Key=manifest_key)["ETag"]
            manifest = Manifest(bucket, manifest_key, etag)
            print(f"manifest: {manifest.url()} ({count} images)", file=out)
    request = job_request(
        target,
        manifest,
        priority=priority,
        confirmation_required=confirmation_required,
        client_token=token,
        description=description,
    )
    print("job request (s3control.create_job):", file=out)
    print(json.dumps(request, indent=2), file=out)
    if dry_run:
        return None
    job_id = str(s3control.create_job(**request)["JobId"])
    print(f"job created: {job_id}", file=out)
    if confirmation_required:
        print("it waits for your confirmation; start it with:", file=out)
    for command in follow_up_commands(target.account_id, job_id, confirmation_required):
        print(f"  {command}", file=out)
    return job_id
