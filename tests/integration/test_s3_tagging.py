"""S3-triggered tagging and the backfill command, against moto in server mode over real HTTP."""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

import boto3
import pytest
from botocore.exceptions import ClientError

from lambda_function.cli import main as cli_main
from lambda_function.datapath.service import BreedService
from lambda_function.local_context import LocalLambdaContext
from lambda_function.request_deadline import LAMBDA_ANSWER_MARGIN_S
from lambda_function.settings import Settings
from lambda_function.tagging.lambda_tagging import TaggingFailed
from lambda_function.tagging.s3_tagging import MAX_TAGS_PER_OBJECT, Outcome, S3Tagger, sanitise_tag_value
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, load_event
from tests.support.images import progressive_jpeg_with_repeated_scans

BUCKET = "cat-photos-test"


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> Any:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return client


@pytest.fixture(scope="module")
def tagging(service: Any, s3: Any) -> Any:
    """The tagging handler module, imported as Lambda imports it (after the endpoint is configured)."""
    return importlib.import_module("lambda_function.tagging_handler")


def s3_event(*keys: str, bucket: str = BUCKET) -> dict[str, Any]:
    """An S3 put event for these keys, encoded as S3 encodes them, built on the committed example."""
    template = load_event("s3-put.json")["Records"][0]
    records = []
    for key in keys:
        record = copy.deepcopy(template)
        record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
        record["s3"]["object"]["key"] = quote_plus(key, safe="/")
        records.append(record)
    return {"Records": records}


def tags_of(s3: Any, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}


def upload(s3: Any, key: str, data: bytes, tags: dict[str, str] | None = None) -> None:
    extra = {"Tagging": "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in tags.items())} if tags else {}
    s3.put_object(Bucket=BUCKET, Key=key, Body=data, **extra)


def test_keys_with_spaces_and_non_ascii_are_decoded_and_tagged(tagging, service, s3, lambda_context):
    key = "uploads/Mittens on the sofa (2026) é.jpg"
    data = CAT_PHOTOS[10].read_bytes()
    upload(s3, key, data)

    summary = tagging.lambda_handler(s3_event(key), lambda_context)

    answer = service.classify_bytes(data, 1)
    expected = answer.predictions[0]
    assert summary == {"records": 1, "tagged": 1, "failed": 0}
    assert tags_of(s3, key) == {
        "cat-breed": sanitise_tag_value(expected.breed),
        "cat-breed-probability": f"{expected.probability:.4f}",
        "cat-detected": str(expected.breed != "No cat").lower(),
        # the smoke model's sidecar has no breed rule: the API says null, the tag "unknown"
        "cat-breed-identified": "unknown" if answer.breed_identified is None else str(answer.breed_identified).lower(),
        "cat-breed-model": "untrained-smoke-model@0.0.0+seed7",
        **(
            {"cat-description": answer.description, "cat-coat": answer.coat.length or "unclear"}
            if answer.coat is not None
            else {}
        ),
    }


def test_existing_tags_are_kept(tagging, s3, lambda_context):
    key = "uploads/with-tags.jpg"
    upload(s3, key, CAT_PHOTOS[11].read_bytes(), {"owner": "shelter-12", "kennel": "B 4"})

    tagging.lambda_handler(s3_event(key), lambda_context)

    tags = tags_of(s3, key)
    assert tags["owner"] == "shelter-12" and tags["kennel"] == "B 4"
    assert {"cat-breed", "cat-breed-probability", "cat-detected", "cat-breed-model"} <= set(tags)


def test_the_ten_tag_limit_keeps_the_owner_tags_and_the_most_important_of_ours(tagging, s3, lambda_context):
    key = "uploads/crowded.jpg"
    own = {f"label-{i}": str(i) for i in range(8)}
    upload(s3, key, CAT_PHOTOS[12].read_bytes(), own)

    tagging.lambda_handler(s3_event(key), lambda_context)

    tags = tags_of(s3, key)
    assert len(tags) == MAX_TAGS_PER_OBJECT
    assert {k: v for k, v in tags.items() if k.startswith("label-")} == own
    assert {"cat-breed", "cat-breed-model"} <= set(tags)  # the answer, and what makes a retry idempotent


def test_an_object_that_is_not_an_image_is_tagged_with_the_error_and_does_not_fail(tagging, s3, lambda_context):
    key = "uploads/notes.jpg"
    upload(s3, key, b"shopping list: cat food, litter")

    summary = tagging.lambda_handler(s3_event(key), lambda_context)

    assert summary == {"records": 1, "not_an_image": 1, "failed": 0}
    assert tags_of(s3, key)["cat-breed-error"] == "unsupported_image"


def test_an_image_over_the_decode_time_budget_is_tagged_with_the_error_once_and_for_all(s3, model_path):
    key = "uploads/slow-to-decode.jpg"
    upload(s3, key, progressive_jpeg_with_repeated_scans(80, side_px=4000))  # 90 scans of 16 M pixels: ~1 s
    hurried = BreedService(Settings(model_path=model_path, inference_threads=1, decode_time_budget_s=0.1))
    tagger = S3Tagger(hurried, s3, max_object_bytes=20_000_000)

    result = tagger.tag_object(BUCKET, key)

    assert (result.outcome, result.detail) == (Outcome.NOT_AN_IMAGE, "image_too_complex")
    assert tags_of(s3, key)["cat-breed-error"] == "image_too_complex"
    assert tagger.tag_object(BUCKET, key).outcome == Outcome.ALREADY_TAGGED  # a retry does not decode it again


def test_an_invocation_out_of_time_leaves_the_object_untagged_and_fails_for_a_retry(tagging, s3):
    key = "uploads/late.jpg"
    upload(s3, key, CAT_PHOTOS[5].read_bytes())
    nearly_out = LocalLambdaContext(remaining_ms=int(LAMBDA_ANSWER_MARGIN_S * 1000) - 100)

    with pytest.raises(TaggingFailed, match="DeadlineExceeded"):
        tagging.lambda_handler(s3_event(key), nearly_out)

    assert tags_of(s3, key) == {}


def test_an_object_deleted_in_the_meantime_is_skipped(tagging, lambda_context):
    summary = tagging.lambda_handler(s3_event("uploads/already-gone.jpg"), lambda_context)

    assert summary == {"records": 1, "deleted": 1, "failed": 0}


def test_the_same_event_twice_tags_once(tagging, s3, lambda_context):
    key = "uploads/twice.jpg"
    upload(s3, key, DOG_PHOTOS[3].read_bytes())

    first = tagging.lambda_handler(s3_event(key), lambda_context)
    tags = tags_of(s3, key)
    second = tagging.lambda_handler(s3_event(key), lambda_context)

    assert first["tagged"] == 1 and second == {"records": 1, "already_tagged": 1, "failed": 0}
    assert tags_of(s3, key) == tags


def test_one_failing_record_does_not_stop_the_others_and_the_failure_is_raised(tagging, s3, lambda_context):
    good = ["uploads/batch-1.jpg", "uploads/batch-2.jpg"]
    for index, key in enumerate(good):
        upload(s3, key, CAT_PHOTOS[20 + index].read_bytes())
    event = s3_event(good[0])
    event["Records"] += s3_event("uploads/x.jpg", bucket="Not_A_Valid_Bucket!")["Records"]
    event["Records"] += s3_event(good[1])["Records"]

    with pytest.raises(TaggingFailed, match=r"1 of 3 objects failed: s3://Not_A_Valid_Bucket!/uploads/x\.jpg"):
        tagging.lambda_handler(event, lambda_context)

    assert all("cat-breed" in tags_of(s3, key) for key in good)


def test_backfill_tags_what_was_uploaded_before_and_resumes(service, s3, tagging, capsys):
    keys = [f"archive/{i:02d}.jpg" for i in range(5)]
    for index, key in enumerate(keys):
        upload(s3, key, (CAT_PHOTOS + DOG_PHOTOS)[40 + index * 7].read_bytes())
    upload(s3, "archive/readme.txt", b"not a photo, and not named like one")
    upload(s3, "archive/broken.png", b"\x89PNG broken")

    first_status = cli_main(["backfill", f"s3://{BUCKET}/archive/", "--workers", "3"])
    first = json.loads(capsys.readouterr().out)
    second_status = cli_main(["backfill", f"s3://{BUCKET}/archive/"])
    second = json.loads(capsys.readouterr().out)

    assert (first_status, second_status) == (0, 0)
    assert first == {"images": 6, "tagged": 5, "not_an_image": 1}
    assert second == {"images": 6, "already_tagged": 6}
    assert all("cat-breed" in tags_of(s3, key) for key in keys)
    assert "cat-breed" not in {
        t["Key"] for t in s3.get_object_tagging(Bucket=BUCKET, Key="archive/readme.txt")["TagSet"]
    }


def test_backfill_of_more_than_100_photos_prints_its_summary_alone_on_standard_output(service, s3, tagging, capsys):
    photo = CAT_PHOTOS[3].read_bytes()
    for index in range(110):  # 2 metric values a photo: powertools prints its blob at 100 values
        upload(s3, f"many/{index:03d}.jpg", photo)
    capsys.readouterr()

    status = cli_main(["backfill", f"s3://{BUCKET}/many/", "--workers", "4"])

    out = capsys.readouterr().out
    assert status == 0
    assert json.loads(out) == {"images": 110, "tagged": 110}  # one JSON document, nothing else


def test_backfill_reports_each_failed_key_with_its_reason(service, s3, tagging):
    from lambda_function.tagging.backfill import backfill

    keys = [f"failing/{name}.jpg" for name in ("ok-1", "throttled", "ok-2")]
    for key in keys:
        upload(s3, key, CAT_PHOTOS[4].read_bytes())

    def slow_down(params: dict[str, Any], **_kwargs: Any) -> None:
        if params.get("Key") == "failing/throttled.jpg":
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "HeadObject"
            )

    with injected(tagging.tagger.s3, "before-parameter-build.s3.HeadObject", slow_down):
        summary = backfill(tagging.tagger, BUCKET, "failing/", workers=2, progress=False)

    assert summary["images"] == 3 and summary["tagged"] == 2 and summary["failed"] == 1
    assert summary["failures"] == [
        {"key": "failing/throttled.jpg", "reason": summary["failures"][0]["reason"]},
    ]
    assert "SlowDown" in summary["failures"][0]["reason"]


def test_backfill_refuses_a_url_that_is_not_s3(service_env, capsys):
    assert cli_main(["backfill", "https://example.com/photos"]) == 2
    assert "s3://BUCKET/PREFIX" in capsys.readouterr().err


# A tagger that never lies: it reads what it checked, caps what it reads, says when there is no room


VERSIONED_BUCKET = "cat-photos-versioned"


@pytest.fixture(scope="module")
def versioned_bucket(s3: Any) -> str:
    s3.create_bucket(Bucket=VERSIONED_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket=VERSIONED_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return VERSIONED_BUCKET


@contextmanager
def injected(client: Any, event_name: str, handler: Any) -> Iterator[None]:
    """The test's own fault injection: a botocore event handler on the tagger's client, for one block."""
    client.meta.events.register(event_name, handler)
    try:
        yield
    finally:
        client.meta.events.unregister(event_name, handler)


def test_the_version_named_in_the_event_is_the_one_read_and_tagged(
    tagging, service, s3, versioned_bucket, lambda_context
):
    key = "uploads/replaced-later.jpg"
    cat = CAT_PHOTOS[5].read_bytes()
    first = s3.put_object(Bucket=versioned_bucket, Key=key, Body=cat)["VersionId"]
    s3.put_object(Bucket=versioned_bucket, Key=key, Body=b"a newer upload, not a photo")
    event = s3_event(key, bucket=versioned_bucket)
    event["Records"][0]["s3"]["object"]["versionId"] = first

    summary = tagging.lambda_handler(event, lambda_context)

    first_tags = s3.get_object_tagging(Bucket=versioned_bucket, Key=key, VersionId=first)["TagSet"]
    assert summary == {"records": 1, "tagged": 1, "failed": 0}
    assert {t["Key"]: t["Value"] for t in first_tags}["cat-breed"] == sanitise_tag_value(
        service.classify_bytes(cat, 1).predictions[0].breed
    )
    assert s3.get_object_tagging(Bucket=versioned_bucket, Key=key)["TagSet"] == []  # the newer version untouched


def test_an_object_replaced_after_it_was_checked_is_not_read_and_the_event_is_retried(tagging, s3, lambda_context):
    key = "uploads/swapped.jpg"
    upload(s3, key, CAT_PHOTOS[6].read_bytes())
    other_client = boto3.client("s3")

    def replace_it(**_kwargs: Any) -> None:
        other_client.put_object(Bucket=BUCKET, Key=key, Body=DOG_PHOTOS[6].read_bytes())

    with (
        injected(tagging.tagger.s3, "before-parameter-build.s3.GetObject", replace_it),
        pytest.raises(TaggingFailed, match="1 of 1 objects failed"),
    ):
        tagging.lambda_handler(s3_event(key), lambda_context)

    assert tags_of(s3, key) == {}


def test_an_object_replaced_between_the_read_and_the_tags_gets_the_answer_about_its_own_bytes(
    tagging, service, s3, lambda_context
):
    key = "uploads/replaced-while-tagged.jpg"
    first, second = CAT_PHOTOS[8].read_bytes(), DOG_PHOTOS[8].read_bytes()
    upload(s3, key, first)
    other_client = boto3.client("s3")
    replaced = []

    def replace_once(**_kwargs: Any) -> None:  # the new upload lands after the old bytes were read
        if not replaced:
            other_client.put_object(Bucket=BUCKET, Key=key, Body=second)
            replaced.append(True)

    with injected(tagging.tagger.s3, "before-parameter-build.s3.PutObjectTagging", replace_once):
        summary = tagging.lambda_handler(s3_event(key), lambda_context)
    # The new upload's own event comes next: it must not skip the object as already tagged with the old answer.
    again = tagging.lambda_handler(s3_event(key), lambda_context)

    expected = service.classify_bytes(second, 1).predictions[0]
    assert summary == {"records": 1, "tagged": 1, "failed": 0}
    assert tags_of(s3, key)["cat-breed"] == sanitise_tag_value(expected.breed)
    assert tags_of(s3, key)["cat-breed-probability"] == f"{expected.probability:.4f}"
    assert again["failed"] == 0


def test_an_object_replaced_during_every_try_fails_its_event_to_be_retried(tagging, s3, lambda_context):
    key = "uploads/replaced-all-the-time.jpg"
    photos = [CAT_PHOTOS[9].read_bytes(), DOG_PHOTOS[9].read_bytes()]
    upload(s3, key, photos[0])
    other_client = boto3.client("s3")
    uploads = []

    def replace_every_time(**_kwargs: Any) -> None:
        uploads.append(True)
        other_client.put_object(Bucket=BUCKET, Key=key, Body=photos[len(uploads) % 2])

    with (
        injected(tagging.tagger.s3, "before-parameter-build.s3.PutObjectTagging", replace_every_time),
        pytest.raises(TaggingFailed, match="1 of 1 objects failed"),
    ):
        tagging.lambda_handler(s3_event(key), lambda_context)

    assert len(uploads) == 3  # MAX_TAGGING_ATTEMPTS tries, then the event is retried


def test_the_bytes_read_are_capped_whatever_the_object_said_its_size_was(tagging, s3, lambda_context, monkeypatch):
    key = "uploads/understated.jpg"
    photo = CAT_PHOTOS[7].read_bytes()
    upload(s3, key, photo)
    monkeypatch.setattr(tagging.tagger, "max_object_bytes", len(photo) // 2)

    def understate(parsed: dict[str, Any], **_kwargs: Any) -> None:
        parsed["ContentLength"] = 100

    with injected(tagging.tagger.s3, "after-call.s3.HeadObject", understate):
        summary = tagging.lambda_handler(s3_event(key), lambda_context)

    assert summary == {"records": 1, "too_large": 1, "failed": 0}
    assert tags_of(s3, key)["cat-breed-error"] == "image_too_large"


def test_an_object_with_ten_tags_of_its_own_is_reported_as_having_no_room_and_left_as_it_is(
    tagging, s3, lambda_context
):
    key = "uploads/full-of-tags.jpg"
    own = {f"label-{i}": str(i) for i in range(MAX_TAGS_PER_OBJECT)}
    upload(s3, key, CAT_PHOTOS[8].read_bytes(), own)

    summary = tagging.lambda_handler(s3_event(key), lambda_context)

    assert summary == {"records": 1, "no_room": 1, "failed": 0}
    assert tags_of(s3, key) == own


def test_a_name_the_decoder_reads_is_tagged_whatever_its_case_and_other_names_are_left_alone(
    tagging, s3, lambda_context
):
    photo = CAT_PHOTOS[9].read_bytes()
    images = [f"uploads/IMG_0042{suffix}" for suffix in (".JPEG", ".Jpg", ".gif", ".bmp", ".tif", ".TIFF", ".heif")]
    for key in images:
        upload(s3, key, photo)  # JPEG bytes whatever the name says: the decoder goes by content
    upload(s3, "uploads/notes.txt", b"not a photo")

    summary = tagging.lambda_handler(s3_event(*images, "uploads/notes.txt"), lambda_context)

    assert summary == {"records": len(images) + 1, "tagged": len(images), "ignored": 1, "failed": 0}
    assert tags_of(s3, "uploads/notes.txt") == {}


# S3 Batch Operations: the same tagger, one answer per task


def batch_event(schema: str, *objects: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """An invocation in schema 1.0 or 2.0 for (bucket, key[, version id]) objects, keys URL-encoded as S3 Batch
    Operations sends them, built on the committed example."""
    event = load_event(f"s3-batch-operations-{schema}.json")
    template = event["tasks"][0]
    event["tasks"] = []
    for index, (bucket, key, *version) in enumerate(objects):
        task = {
            **template,
            "taskId": f"task-{index}",
            "s3Key": quote(key, safe="/"),
            "s3VersionId": (version or [None])[0],
        }
        if "s3Bucket" in task:
            task["s3Bucket"] = bucket
        else:
            task["s3BucketArn"] = f"arn:aws:s3:::{bucket}"
        event["tasks"].append(task)
    return event


def results_of(response: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {r["taskId"]: (r["resultCode"], r["resultString"]) for r in response["results"]}


@pytest.mark.parametrize("schema", ["1.0", "2.0"])
def test_batch_operations_tasks_of_either_schema_are_tagged_and_answered(tagging, service, s3, lambda_context, schema):
    key = f"uploads/batch {schema}/Tom + Jerry, été.jpg"
    photo = CAT_PHOTOS[13].read_bytes()
    upload(s3, key, photo)
    event = batch_event(schema, (BUCKET, key))

    response = tagging.lambda_handler(event, lambda_context)

    breed = service.classify_bytes(photo, 1).predictions[0].breed
    assert response["invocationSchemaVersion"] == schema
    assert response["invocationId"] == event["invocationId"]
    assert response["treatMissingKeysAs"] == "PermanentFailure"
    assert results_of(response) == {"task-0": ("Succeeded", breed)}
    assert tags_of(s3, key)["cat-breed"] == sanitise_tag_value(breed)


def test_batch_operations_get_the_result_code_that_says_whether_a_retry_helps(
    tagging, s3, versioned_bucket, lambda_context, monkeypatch
):
    photo = CAT_PHOTOS[14].read_bytes()
    keys = {
        "again": "uploads/codes/tagged-before.jpg",
        "text": "uploads/codes/letter.jpg",
        "large": "uploads/codes/huge.jpg",
        "full": "uploads/codes/ten-tags.jpg",
        "throttled": "uploads/codes/throttled.jpg",
        "readme": "uploads/codes/README.md",
    }
    upload(s3, keys["again"], photo)
    tagging.lambda_handler(batch_event("2.0", (BUCKET, keys["again"])), lambda_context)
    upload(s3, keys["text"], b"Dear shelter, thank you")
    upload(s3, keys["large"], photo + b"\0" * 200_000)
    upload(s3, keys["full"], photo, {f"label-{i}": "x" for i in range(MAX_TAGS_PER_OBJECT)})
    upload(s3, keys["throttled"], photo)
    upload(s3, keys["readme"], b"# photos")
    monkeypatch.setattr(tagging.tagger, "max_object_bytes", len(photo) + 100_000)

    def slow_down(params: dict[str, Any], **_kwargs: Any) -> None:
        if params.get("Key") == keys["throttled"]:
            raise ClientError(
                {
                    "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "HeadObject",
            )

    event = batch_event(
        "2.0",
        *[(BUCKET, key) for key in keys.values()],
        (BUCKET, "uploads/codes/deleted.jpg"),
        (versioned_bucket, "uploads/codes/no-such-version.jpg", "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"),
    )
    with injected(tagging.tagger.s3, "before-parameter-build.s3.HeadObject", slow_down):
        results = results_of(tagging.lambda_handler(event, lambda_context))

    codes = {name: results[f"task-{index}"] for index, name in enumerate([*keys, "deleted", "no-such-version"])}
    assert codes["again"] == ("Succeeded", "already tagged")
    assert codes["text"] == ("Succeeded", "not an image (unsupported_image)")
    assert codes["large"][0] == "PermanentFailure" and "size cap" in codes["large"][1]
    assert codes["full"][0] == "PermanentFailure" and "no room for tags" in codes["full"][1]
    assert codes["throttled"][0] == "TemporaryFailure" and codes["throttled"][1].startswith("SlowDown")
    assert codes["readme"] == ("Succeeded", "not an image (by its name); left alone")
    assert codes["deleted"][0] == codes["no-such-version"][0] == "PermanentFailure"
    assert "cat-breed" not in tags_of(s3, keys["throttled"])


@pytest.mark.parametrize("schema", ["1.0", "2.0"])
def test_a_malformed_batch_operations_task_fails_alone_and_says_why(tagging, service, s3, lambda_context, schema):
    key = f"uploads/batch-malformed {schema}/cat.jpg"
    photo = CAT_PHOTOS[15].read_bytes()
    upload(s3, key, photo)
    event = batch_event(schema, (BUCKET, key), (BUCKET, "uploads/no-key.jpg"), (BUCKET, "uploads/bad-key.jpg"))
    del event["tasks"][1]["s3Key"]
    event["tasks"][2]["s3Key"] = "uploads/%FF%FE.jpg"  # not UTF-8 once decoded: it names no object

    results = results_of(tagging.lambda_handler(event, lambda_context))

    breed = service.classify_bytes(photo, 1).predictions[0].breed
    assert results["task-0"] == ("Succeeded", breed)
    assert results["task-1"][0] == "PermanentFailure" and "s3Key" in results["task-1"][1]
    assert results["task-2"][0] == "PermanentFailure" and "not URL-encoded UTF-8" in results["task-2"][1]


def test_a_task_without_an_id_still_gets_a_result(tagging, s3, lambda_context):
    event = batch_event("2.0", (BUCKET, "uploads/whatever.jpg"))
    del event["tasks"][0]["taskId"]

    response = tagging.lambda_handler(event, lambda_context)

    assert [(r["resultCode"], r["taskId"]) for r in response["results"]] == [("PermanentFailure", "")]
    assert "taskId" in response["results"][0]["resultString"]


def test_tagging_outcomes_are_counted_for_the_dashboard(tagging, s3, lambda_context, capsys):
    upload(s3, "uploads/counted.jpg", CAT_PHOTOS[7].read_bytes())
    upload(s3, "uploads/counted-notes.jpg", b"not a photo")

    tagging.lambda_handler(s3_event("uploads/counted.jpg", "uploads/counted-notes.jpg"), lambda_context)

    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    counted = {name: document[name] for document in documents for name in document if name.startswith("Tagging_")}
    assert counted == {"Tagging_tagged": [1.0], "Tagging_not_an_image": [1.0]}
