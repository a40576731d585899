"""Tagging's decisions, apart from S3: which tags an answer becomes and which survive the 10-tag limit, and what
S3 Batch Operations is told for each task (retry it, or do not). The S3 round trips are in
tests/integration/test_s3_tagging.py."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lambda_function.tagging.batch_operations import ResultCode, run_tasks
from lambda_function.tagging.s3_tagging import OUR_TAGS, Outcome, TagResult, merge_tags, sanitise_tag_value


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "said S3"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "X"
    )


def batch_event(*tasks: dict) -> dict:
    return {"invocationSchemaVersion": "2.0", "invocationId": "inv", "job": {"id": "job"}, "tasks": list(tasks)}


def task(task_id: str, key: str = "photos/cat.jpg") -> dict:
    return {"taskId": task_id, "s3Bucket": "shelter", "s3Key": key}


OUTCOME_CODES = {
    Outcome.TAGGED: ResultCode.SUCCEEDED,
    Outcome.ALREADY_TAGGED: ResultCode.SUCCEEDED,
    Outcome.NOT_AN_IMAGE: ResultCode.SUCCEEDED,  # tagged with its error: a retry would end the same way
    Outcome.IGNORED: ResultCode.SUCCEEDED,
    Outcome.TOO_LARGE: ResultCode.PERMANENT_FAILURE,
    Outcome.NO_ROOM: ResultCode.PERMANENT_FAILURE,
    Outcome.DELETED: ResultCode.PERMANENT_FAILURE,
}


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_of_the_tagger_has_its_batch_operations_result(outcome):
    response, results = run_tasks(batch_event(task("t1")), lambda t: TagResult(t.key, outcome, breed="Siamese"))

    assert [r.code for r in results] == [OUTCOME_CODES[outcome]]
    assert response["results"][0]["taskId"] == "t1" and response["treatMissingKeysAs"] == "PermanentFailure"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (client_error("SlowDown", 503), ResultCode.TEMPORARY_FAILURE),
        (client_error("InternalError", 500), ResultCode.TEMPORARY_FAILURE),
        (client_error("RequestTimeout", 400), ResultCode.TEMPORARY_FAILURE),
        (client_error("AccessDenied", 403), ResultCode.PERMANENT_FAILURE),
        (client_error("NoSuchBucket", 404), ResultCode.PERMANENT_FAILURE),
        (EndpointConnectionError(endpoint_url="https://s3"), ResultCode.TEMPORARY_FAILURE),
    ],
    ids=["throttled", "S3's fault", "timed out", "access denied", "no bucket", "S3 unreachable"],
)
def test_a_failed_task_is_retried_only_when_a_retry_can_fix_it(error, code):
    def failing(_task):
        raise error

    _, results = run_tasks(batch_event(task("t1")), failing)

    assert [r.code for r in results] == [code]


def test_one_bad_task_never_costs_the_others_their_answers():
    tasks = (task("good-1"), {"s3Bucket": "shelter"}, task("bad-key", key="%FF%FE"), task("good-2"))
    tagged: list[str] = []

    def tag(t):
        tagged.append(t.key)
        return TagResult(t.key, Outcome.TAGGED, breed="Bengal")

    _, results = run_tasks(batch_event(*tasks), tag)

    assert [(r.task_id, r.code) for r in results] == [
        ("good-1", ResultCode.SUCCEEDED),
        ("", ResultCode.PERMANENT_FAILURE),
        ("bad-key", ResultCode.PERMANENT_FAILURE),
        ("good-2", ResultCode.SUCCEEDED),
    ]
    assert tagged == ["photos/cat.jpg", "photos/cat.jpg"]


def test_an_unknown_invocation_schema_is_refused_whole():
    with pytest.raises(ValueError, match="schema"):
        run_tasks({"invocationSchemaVersion": "9.9", "tasks": []}, lambda t: TagResult(t.key, Outcome.TAGGED))


def test_ours_are_written_in_order_of_importance_until_the_limit_and_the_owners_stay():
    owners = [{"Key": f"owner-{i}", "Value": "v"} for i in range(5)]
    ours = {key: "x" for key in OUR_TAGS if key != "cat-breed-error"}

    merged, dropped = merge_tags(owners, ours)

    assert merged[:5] == owners and len(merged) == 10
    assert [tag["Key"] for tag in merged[5:]] == [key for key in OUR_TAGS if key in ours][:5]
    assert dropped == tuple(key for key in OUR_TAGS if key in ours)[5:]


def test_a_shelters_description_comes_before_the_details_when_room_is_short():
    owners = [{"Key": f"owner-{i}", "Value": "v"} for i in range(7)]
    ours = {"cat-breed": "Bengal", "cat-breed-model": "m@1", "cat-description": "Bengal", "cat-coat": "short"}

    merged, dropped = merge_tags(owners, ours)

    assert {tag["Key"] for tag in merged[7:]} == {"cat-breed", "cat-breed-model", "cat-description"}
    assert dropped == ("cat-coat",)


def test_tag_values_keep_only_what_s3_accepts():
    assert sanitise_tag_value("Sphynx - Hairless Cat") == "Sphynx - Hairless Cat"
    assert sanitise_tag_value("O'Malley (alley cat), 2nd") == "OMalley alley cat 2nd"
    assert sanitise_tag_value("starter@1.0.0+build/7 =:_") == "starter@1.0.0+build/7 =:_"
    assert len(sanitise_tag_value("x" * 300)) == 256


def test_merging_replaces_our_old_tags_and_respects_the_limit():
    existing = [{"Key": "cat-breed", "Value": "Old"}] + [{"Key": f"k{i}", "Value": "v"} for i in range(8)]
    ours = {"cat-breed": "New", "cat-detected": "true", "cat-breed-model": "m", "cat-breed-probability": "0.9"}

    merged, dropped = merge_tags(existing, ours)

    assert len(merged) == 10 and {"Key": "cat-breed", "Value": "New"} in merged
    assert {"Key": "cat-breed-model", "Value": "m"} in merged
    assert dropped == ("cat-detected", "cat-breed-probability")


def test_merging_writes_the_answer_with_its_model_version_or_nothing():
    existing = [{"Key": f"k{i}", "Value": "v"} for i in range(9)]

    assert merge_tags(existing, {"cat-breed": "New", "cat-breed-model": "m"}) is None
