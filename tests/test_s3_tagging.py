"""S3-triggered tagging and the backfill command, against moto in server mode over real HTTP."""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import boto3
import pytest

from lambda_function.cli import main as cli_main
from lambda_function.s3_tagging import MAX_TAGS_PER_OBJECT, merge_tags, sanitise_tag_value
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, load_event

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

    expected = service.classify_bytes(data, 1).predictions[0]
    assert summary == {"records": 1, "tagged": 1, "failed": 0}
    assert tags_of(s3, key) == {
        "cat-breed": sanitise_tag_value(expected.breed),
        "cat-breed-probability": f"{expected.probability:.4f}",
        "cat-detected": str(expected.breed != "No cat").lower(),
        "cat-breed-model": "untrained-smoke-model@0.0.0+seed7",
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
    assert {"cat-breed", "cat-detected"} <= set(tags)


def test_an_object_that_is_not_an_image_is_tagged_with_the_error_and_does_not_fail(tagging, s3, lambda_context):
    key = "uploads/notes.jpg"
    upload(s3, key, b"shopping list: cat food, litter")

    summary = tagging.lambda_handler(s3_event(key), lambda_context)

    assert summary == {"records": 1, "not_an_image": 1, "failed": 0}
    assert tags_of(s3, key)["cat-breed-error"] == "unsupported_image"


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

    with pytest.raises(tagging.TaggingFailed, match=r"1 of 3 objects failed: s3://Not_A_Valid_Bucket!/uploads/x\.jpg"):
        tagging.lambda_handler(event, lambda_context)

    assert all("cat-breed" in tags_of(s3, key) for key in good)


def test_committed_s3_events_invoke_the_tagging_handler(tagging, s3, lambda_context):
    for name in ("s3-put.json", "s3-put-encoded-key.json"):
        event = load_event(name)
        record = event["Records"][0]
        record["s3"]["bucket"]["name"] = BUCKET
        key = unquote_plus(record["s3"]["object"]["key"])
        upload(s3, key, CAT_PHOTOS[30].read_bytes())

        assert tagging.lambda_handler(event, lambda_context)["tagged"] == 1


def test_tag_values_keep_only_what_s3_accepts():
    assert sanitise_tag_value("Sphynx - Hairless Cat") == "Sphynx - Hairless Cat"
    assert sanitise_tag_value("O'Malley (alley cat), 2nd") == "OMalley alley cat 2nd"
    assert sanitise_tag_value("starter@1.0.0+build/7 =:_") == "starter@1.0.0+build/7 =:_"
    assert len(sanitise_tag_value("x" * 300)) == 256


def test_merging_replaces_our_old_tags_and_respects_the_limit():
    existing = [{"Key": "cat-breed", "Value": "Old"}] + [{"Key": f"k{i}", "Value": "v"} for i in range(9)]
    merged, dropped = merge_tags(existing, {"cat-breed": "New", "cat-detected": "true", "cat-breed-model": "m"})

    assert len(merged) == 10 and {"Key": "cat-breed", "Value": "New"} in merged
    assert dropped == ("cat-detected", "cat-breed-model")


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


def test_backfill_refuses_a_url_that_is_not_s3(service_env, capsys):
    assert cli_main(["backfill", "https://example.com/photos"]) == 2
    assert "s3://BUCKET/PREFIX" in capsys.readouterr().err
