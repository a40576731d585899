"""POST /predict, GET /breeds and GET /health through the Lambda handler, for both API Gateway payload formats."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
import yaml

from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from lambda_function.errors import DeadlineExceeded
from lambda_function.fetching.fetch import SafeFetcher
from lambda_function.local_context import LocalLambdaContext
from lambda_function.request_deadline import LAMBDA_ANSWER_MARGIN_S, Deadline
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, REPO_DIR, http_api_event, load_event, parsed_body, rest_event
from tests.support import http_server
from tests.support.images import EPS_BYTES, PDF_BYTES, encode, photo, progressive_jpeg_with_repeated_scans

SIAMESE = next(p for p in CAT_PHOTOS if p.name.startswith("Siamese"))


def expected_top(service: Any, data: bytes, top_k: int = 5) -> list[dict[str, Any]]:
    """What the classifier says for these bytes, computed directly (not through the API)."""
    result = service.classify_bytes(data, top_k)
    return [{"breed": p.breed, "probability": pytest.approx(p.probability, abs=1e-6)} for p in result.predictions]


def test_base64_upload_returns_top5_breeds_with_model_info(handler, service, lambda_context):
    data = SIAMESE.read_bytes()
    event = rest_event("POST", "/predict", {"image": base64.b64encode(data).decode()})

    response = handler.lambda_handler(event, lambda_context)

    assert response["statusCode"] == 200
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    body = parsed_body(response)
    assert body["predictions"] == expected_top(service, data)
    assert len(body["predictions"]) == 5
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert body["model"] == {"name": "untrained-smoke-model", "version": "0.0.0+seed7"}
    assert body["cat_detected"] == (body["predictions"][0]["breed"] != "No cat")


def test_url_is_fetched_and_classified_for_rest_and_http_api_events(handler, service, lambda_context):
    data = SIAMESE.read_bytes()
    with http_server.running({"/siamese.jpg": http_server.serve_bytes(data)}) as host:
        rest = handler.lambda_handler(rest_event("POST", "/predict", {"url": host.url("/siamese.jpg")}), lambda_context)
        http = handler.lambda_handler(
            http_api_event("POST", "/predict", {"url": host.url("/siamese.jpg")}), lambda_context
        )

    assert rest["statusCode"] == http["statusCode"] == 200
    assert parsed_body(rest) == parsed_body(http)
    assert parsed_body(rest)["predictions"] == expected_top(service, data)
    assert host.host_headers == [f"127.0.0.1:{host.port}"] * 2


SHELTER_NAMES = {
    "short": "Domestic Short Hair",
    "medium": "Domestic Medium Hair",
    "long": "Domestic Long Hair",
    "hairless": "Domestic Hairless",
}


def test_every_cat_answer_carries_the_coat_and_description_the_sidecars_rules_give(handler, service, lambda_context):
    card = service.classifier.card
    limits = DecodeLimits(max_pixels=service.settings.max_image_pixels, jpeg_draft=service.settings.jpeg_draft)
    seen = set()
    for path in CAT_PHOTOS[::6] + DOG_PHOTOS[::25]:
        data = path.read_bytes()
        answer = parsed_body(handler.lambda_handler(upload_event(data), lambda_context))
        probabilities = service.classifier.probabilities(prepare_image(data, service.classifier.input_size_px, limits))
        if not answer["cat_detected"]:
            assert (answer["coat"], answer["description"]) == (None, None)
            continue
        length, probability = card.coat_rule.read(probabilities)
        shelter_name = "Domestic cat" if length is None else SHELTER_NAMES[length]
        named = answer["predictions"][0]["breed"] if answer["breed_identified"] else shelter_name
        assert answer["coat"] == {"length": length, "probability": pytest.approx(probability, abs=1e-6)}
        assert answer["description"] == named
        seen.add(length)
    assert len(seen) >= 2  # the photos reach more than one kind of answer


def test_data_uri_upload_and_top_k_are_honoured(handler, service, lambda_context):
    data = encode(photo(SIAMESE), "PNG")
    uri = "data:image/png;base64," + base64.b64encode(data).decode()

    response = handler.lambda_handler(rest_event("POST", "/predict", {"image": uri, "top_k": 2}), lambda_context)

    assert response["statusCode"] == 200
    assert parsed_body(response)["predictions"] == expected_top(service, data, top_k=2)


def test_breeds_lists_the_model_labels_in_output_order(handler, service, lambda_context):
    response = handler.lambda_handler(rest_event("GET", "/breeds"), lambda_context)

    assert response["statusCode"] == 200
    body = parsed_body(response)
    assert body["breeds"] == list(service.classifier.card.labels)
    assert len(body["breeds"]) == 68 and "No cat" in body["breeds"]


def test_health_answers_ok_with_the_model(handler, lambda_context):
    response = handler.lambda_handler(load_event("health-httpapi.json"), lambda_context)

    assert response["statusCode"] == 200
    assert parsed_body(response) == {
        "status": "ok",
        "model": {"name": "untrained-smoke-model", "version": "0.0.0+seed7"},
    }


def test_committed_base64_event_classifies_a_real_photo(handler, lambda_context):
    response = handler.lambda_handler(load_event("predict-base64.json"), lambda_context)

    assert response["statusCode"] == 200
    assert len(parsed_body(response)["predictions"]) == 3


def error_of(response: dict[str, Any]) -> tuple[int, str]:
    body = parsed_body(response)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert "Traceback" not in response["body"] and "/work" not in response["body"]
    return response["statusCode"], body["error"]["code"]


@pytest.mark.parametrize(
    ("body", "raw_body"),
    [
        pytest.param(None, "{not json", id="malformed-json"),
        pytest.param(None, None, id="no-body"),
        pytest.param({}, None, id="neither-url-nor-image"),
        pytest.param({"url": "http://example.com/a.jpg", "image": "aGVsbG8="}, None, id="both-url-and-image"),
        pytest.param({"url": 42}, None, id="url-not-a-string"),
        pytest.param({"image": "aGVsbG8=", "top_k": 0}, None, id="top-k-zero"),
        pytest.param({"image": "aGVsbG8=", "top_k": "five"}, None, id="top-k-not-a-number"),
        pytest.param({"image": "aGVsbG8=", "colour": "red"}, None, id="unknown-field"),
        pytest.param(["http://example.com/a.jpg"], None, id="body-not-an-object"),
    ],
)
def test_malformed_requests_are_400_bad_request(handler, lambda_context, body, raw_body):
    response = handler.lambda_handler(rest_event("POST", "/predict", body, raw_body=raw_body), lambda_context)

    assert error_of(response) == (400, "bad_request")


def test_conflicting_fields_error_names_the_problem(handler, lambda_context):
    response = handler.lambda_handler(load_event("bad-request.json"), lambda_context)

    assert error_of(response) == (400, "bad_request")
    assert "exactly one of 'url' or 'image'" in parsed_body(response)["error"]["message"]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        pytest.param("not base64 at all!", (400, "invalid_base64"), id="invalid-base64"),
        pytest.param("data:image/png,rawbytes", (400, "invalid_base64"), id="data-uri-not-base64"),
        pytest.param("data:;;base64", (400, "invalid_base64"), id="malformed-data-uri"),
        pytest.param("", (400, "invalid_base64"), id="empty"),
        pytest.param(base64.b64encode(b"").decode() + "====", (400, "invalid_base64"), id="padding-only"),
        pytest.param(base64.b64encode(b"just some text, not an image").decode(), (415, "unsupported_image"), id="text"),
    ],
)
def test_bad_uploads_get_a_clear_client_error(handler, lambda_context, image, expected):
    response = handler.lambda_handler(rest_event("POST", "/predict", {"image": image}), lambda_context)

    assert error_of(response) == expected


def test_upload_over_the_size_limit_is_413_before_decoding(handler, service, lambda_context):
    too_many_chars = "A" * (4 * (service.settings.max_upload_bytes // 3) + 8)

    response = handler.lambda_handler(rest_event("POST", "/predict", {"image": too_many_chars}), lambda_context)

    assert error_of(response) == (413, "image_too_large")


def upload_event(data: bytes) -> dict[str, Any]:
    return rest_event("POST", "/predict", {"image": base64.b64encode(data).decode()})


def test_a_progressive_jpeg_of_thousands_of_scans_is_refused_and_the_next_upload_is_served(handler, lambda_context):
    hostile = progressive_jpeg_with_repeated_scans(5000)

    refused = handler.lambda_handler(upload_event(hostile), lambda_context)
    served = handler.lambda_handler(upload_event(SIAMESE.read_bytes()), lambda_context)

    assert error_of(refused) == (413, "image_too_complex")
    assert served["statusCode"] == 200


def test_an_invocation_out_of_time_stops_before_decoding_and_answers_504(handler, lambda_context):
    """Lambda's remaining time, less the margin the answer needs, is the request's deadline."""
    nearly_out = LocalLambdaContext(remaining_ms=int(LAMBDA_ANSWER_MARGIN_S * 1000) - 100)

    response = handler.lambda_handler(upload_event(SIAMESE.read_bytes()), nearly_out)

    assert error_of(response) == (504, "deadline_exceeded")


def test_a_request_out_of_time_gives_its_compute_slot_back(model_path):
    from lambda_function.datapath.service import BreedService
    from lambda_function.settings import Settings

    one_slot = BreedService(Settings(model_path=model_path, inference_threads=1, decode_concurrency=1))
    data = SIAMESE.read_bytes()

    with pytest.raises(DeadlineExceeded):
        one_slot.classify_bytes(data, top_k=1, deadline=Deadline.after(-1))
    # With the slot still held, this would wait until its deadline and fail the same way.
    assert one_slot.classify_bytes(data, top_k=1, deadline=Deadline.after(30)).predictions


def test_a_request_waiting_for_a_compute_slot_gives_up_at_its_deadline(model_path):
    from lambda_function.datapath.service import BreedService
    from lambda_function.settings import Settings

    one_slot = BreedService(Settings(model_path=model_path, inference_threads=1, decode_concurrency=1))
    data = SIAMESE.read_bytes()
    started = threading.Event()
    release = threading.Event()
    original = one_slot.classifier.classify

    def held_classify(*args: Any, **kwargs: Any) -> Any:  # the first request keeps the slot until told
        started.set()
        release.wait(30)
        return original(*args, **kwargs)

    one_slot.classifier.classify = held_classify  # type: ignore[method-assign]
    first = threading.Thread(target=one_slot.classify_bytes, args=(data, 1))
    first.start()
    try:
        assert started.wait(30)
        with pytest.raises(DeadlineExceeded, match="decoding other images"):
            one_slot.classify_bytes(data, top_k=1, deadline=Deadline.after(0.2))
    finally:
        release.set()
        first.join(30)


def test_truncated_jpeg_is_422(handler, lambda_context):
    data = SIAMESE.read_bytes()
    truncated = data[: len(data) // 2]

    response = handler.lambda_handler(
        rest_event("POST", "/predict", {"image": base64.b64encode(truncated).decode()}), lambda_context
    )

    assert error_of(response) == (422, "undecodable_image")


@pytest.mark.parametrize(
    ("path", "data", "content_type", "expected"),
    [
        pytest.param("/empty.jpg", b"", "image/jpeg", (415, "unsupported_image"), id="zero-bytes"),
        pytest.param("/drawing.png", EPS_BYTES, "image/png", (415, "unsupported_image"), id="eps-named-png"),
        pytest.param("/scan.png", PDF_BYTES, "image/png", (415, "unsupported_image"), id="pdf-named-png"),
        pytest.param("/page.jpg", b"<html>not found</html>", "text/html", (415, "unsupported_image"), id="html"),
    ],
)
def test_fetched_bytes_that_are_not_an_allowed_image_are_415(
    handler, lambda_context, path, data, content_type, expected
):
    with http_server.running({path: http_server.serve_bytes(data, content_type)}) as host:
        response = handler.lambda_handler(rest_event("POST", "/predict", {"url": host.url(path)}), lambda_context)

    assert error_of(response) == expected


def test_bad_url_is_400(handler, lambda_context):
    response = handler.lambda_handler(rest_event("POST", "/predict", {"url": "http://"}), lambda_context)

    assert error_of(response) == (400, "invalid_url")


def test_upstream_error_status_is_502(handler, lambda_context):
    with http_server.running({"/gone.jpg": http_server.status(404)}) as host:
        response = handler.lambda_handler(
            rest_event("POST", "/predict", {"url": host.url("/gone.jpg")}), lambda_context
        )

    assert error_of(response) == (502, "upstream_error")
    assert "HTTP 404" in parsed_body(response)["error"]["message"]


def test_refused_connection_is_502(handler, lambda_context):
    with http_server.running({}) as host:
        closed_port_url = host.url("/cat.jpg")
    response = handler.lambda_handler(rest_event("POST", "/predict", {"url": closed_port_url}), lambda_context)

    assert error_of(response) == (502, "upstream_error")


SLOW_UPSTREAMS = {
    "status line": http_server.drip_status_line(),
    "body": http_server.drip(SIAMESE.read_bytes(), interval_s=0.05),
    "headers": http_server.drip_headers(interval_s=0.05),
    "1xx flood": http_server.continue_flood(interval_s=0.3),
}


@pytest.mark.parametrize("dripping", SLOW_UPSTREAMS)
def test_an_upstream_that_drips_ends_at_the_fetch_deadline_with_504(handler, service, lambda_context, dripping):
    with http_server.running({"/slow.jpg": SLOW_UPSTREAMS[dripping]}) as host:
        started = time.monotonic()
        response = handler.lambda_handler(
            rest_event("POST", "/predict", {"url": host.url("/slow.jpg")}), lambda_context
        )
        elapsed = time.monotonic() - started

    assert error_of(response) == (504, "upstream_timeout")
    assert elapsed < service.settings.fetch.total_timeout_s + 1


TLS_DRIPS = {
    "TLS handshake": None,  # a real TLS host behind a relay that passes its bytes on one at a time
    "status line": http_server.drip_status_line(),
    "headers": http_server.drip_headers(interval_s=0.05),
    "1xx lines": http_server.continue_flood(interval_s=0.3),
    "body": http_server.drip(SIAMESE.read_bytes(), interval_s=0.05),
}


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> http_server.ThrowawayAuthority:
    return http_server.throwaway_authority(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("dripping", TLS_DRIPS)
def test_an_https_upstream_that_drips_ends_at_the_fetch_deadline_with_504(
    handler, service, lambda_context, monkeypatch, authority, dripping
):
    trusting = replace(service.settings.fetch, ca_bundle_path=str(authority.ca_file))
    monkeypatch.setattr(service, "fetcher", SafeFetcher(trusting))
    route = TLS_DRIPS[dripping] or http_server.serve_bytes(SIAMESE.read_bytes())
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(http_server.running({"/slow.jpg": route}, tls=authority.server_context))
        url = host.url("/slow.jpg")
        if dripping == "TLS handshake":
            url = f"https://127.0.0.1:{stack.enter_context(http_server.slow_relay(host.port))}/slow.jpg"
        started = time.monotonic()
        response = handler.lambda_handler(rest_event("POST", "/predict", {"url": url}), lambda_context)
        elapsed = time.monotonic() - started

    assert error_of(response) == (504, "upstream_timeout")
    assert elapsed < service.settings.fetch.total_timeout_s + 1


def test_an_https_upstream_that_answers_in_time_is_fetched(handler, service, lambda_context, monkeypatch, authority):
    trusting = replace(service.settings.fetch, ca_bundle_path=str(authority.ca_file))
    monkeypatch.setattr(service, "fetcher", SafeFetcher(trusting))
    with http_server.running(
        {"/cat.jpg": http_server.serve_bytes(SIAMESE.read_bytes())}, tls=authority.server_context
    ) as host:
        response = handler.lambda_handler(rest_event("POST", "/predict", {"url": host.url("/cat.jpg")}), lambda_context)

    assert response["statusCode"] == 200, response["body"]


def test_a_host_name_that_never_resolves_ends_at_the_fetch_deadline_with_504(
    handler, service, lambda_context, monkeypatch
):
    released = threading.Event()

    def stuck_resolver(_host: str, _port: int) -> list:
        released.wait(30)  # stuck until the test is over (the lookup thread would otherwise hold up the exit)
        return []

    monkeypatch.setattr(service, "fetcher", SafeFetcher(service.settings.fetch, resolver=stuck_resolver))
    started = time.monotonic()
    try:
        response = handler.lambda_handler(
            rest_event("POST", "/predict", {"url": "http://slow-dns.example/cat.jpg"}), lambda_context
        )
    finally:
        released.set()

    assert error_of(response) == (504, "upstream_timeout")
    assert time.monotonic() - started < service.settings.fetch.total_timeout_s + 1


def test_a_tls_handshake_that_never_completes_is_reported_with_the_connect_deadline(handler, service, lambda_context):
    with http_server.silent_listener() as port:
        response = handler.lambda_handler(
            rest_event("POST", "/predict", {"url": f"https://127.0.0.1:{port}/cat.jpg"}), lambda_context
        )

    assert error_of(response) == (504, "upstream_timeout")
    assert f"within {service.settings.fetch.connect_timeout_s:g} s" in parsed_body(response)["error"]["message"]


def test_a_malformed_redirect_is_the_upstreams_fault_502(handler, lambda_context):
    with http_server.running({"/moved.jpg": http_server.redirect_to("http://[::1/cat.jpg")}) as host:
        response = handler.lambda_handler(
            rest_event("POST", "/predict", {"url": host.url("/moved.jpg")}), lambda_context
        )

    assert error_of(response) == (502, "upstream_error")


def test_an_internationalised_host_name_is_fetched_by_its_ascii_form(handler, service, lambda_context, monkeypatch):
    looked_up: list[str] = []

    def loopback_resolver(host: str, _port: int) -> list:
        looked_up.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(service, "fetcher", SafeFetcher(service.settings.fetch, resolver=loopback_resolver))
    with http_server.running({"/cat.jpg": http_server.serve_bytes(SIAMESE.read_bytes())}) as host:
        response = handler.lambda_handler(
            rest_event("POST", "/predict", {"url": f"http://例え.テスト:{host.port}/cat.jpg"}), lambda_context
        )

    assert response["statusCode"] == 200
    assert looked_up == ["xn--r8jz45g.xn--zckzah"]
    assert host.host_headers == [f"xn--r8jz45g.xn--zckzah:{host.port}"]


@pytest.mark.parametrize("url", ["http://a\u200db.example/cat.jpg", "http://\u2603.example/", "http://xn--.example/"])
def test_a_host_name_that_idna_refuses_is_400(handler, lambda_context, url):
    response = handler.lambda_handler(
        rest_event("POST", "/predict", {"url": url.encode().decode("unicode_escape")}), lambda_context
    )

    assert error_of(response) == (400, "invalid_url")


def test_chunked_response_over_the_byte_cap_is_413(handler, service, lambda_context):
    cap = service.settings.fetch.max_bytes
    with http_server.running({"/huge.jpg": http_server.chunked_stream(total_bytes=cap * 3)}) as host:
        response = handler.lambda_handler(
            rest_event("POST", "/predict", {"url": host.url("/huge.jpg")}), lambda_context
        )

    assert error_of(response) == (413, "image_too_large")


def test_unknown_route_is_404_in_the_same_error_shape(handler, lambda_context):
    response = handler.lambda_handler(rest_event("GET", "/admin"), lambda_context)

    assert error_of(response) == (404, "not_found")


def test_unexpected_failure_is_a_generic_500_without_internals(handler, service, lambda_context, monkeypatch):
    def broken(*_args: object) -> None:
        raise RuntimeError("secret internal detail at /opt/model")

    monkeypatch.setattr(service.classifier, "classify", broken)
    data = base64.b64encode(SIAMESE.read_bytes()).decode()

    response = handler.lambda_handler(rest_event("POST", "/predict", {"image": data}), lambda_context)

    assert error_of(response) == (500, "internal_error")
    assert "secret" not in response["body"]


# Malformed requests: a stable 4xx on both payload formats, never a 500


def with_headers(event: dict[str, Any], **headers: str) -> dict[str, Any]:
    event["headers"] = {**(event.get("headers") or {}), **headers}
    return event


def raw_request(payload_format: str, body: str, *, base64_flag: bool = False, content_type: str | None = None) -> dict:
    event = rest_event("POST", "/predict") if payload_format == "rest" else http_api_event("POST", "/predict")
    event.update(body=body, isBase64Encoded=base64_flag)
    event["headers"] = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    event.pop("multiValueHeaders", None)
    if content_type:
        event["headers"]["Content-Type"] = content_type
    return event


JSON_SPELLINGS = [
    "application/json",
    "Application/JSON",
    "APPLICATION/JSON; charset=utf-8",
    "application/json;charset=UTF-8",
    "application/problem+json",
    "Application/Vnd.Cats+JSON",
]


@pytest.mark.parametrize("payload_format", ["rest", "httpapi"])
@pytest.mark.parametrize("content_type", JSON_SPELLINGS)
def test_any_spelling_of_a_json_content_type_is_read_as_json(handler, lambda_context, payload_format, content_type):
    body = json.dumps({"image": base64.b64encode(SIAMESE.read_bytes()).decode(), "top_k": 2})

    response = handler.lambda_handler(raw_request(payload_format, body, content_type=content_type), lambda_context)

    assert response["statusCode"] == 200, response["body"]
    assert len(parsed_body(response)["predictions"]) == 2


def test_an_error_names_a_few_unknown_fields_and_counts_the_rest(handler, lambda_context):
    body = {"image": "aGVsbG8=", **{f"field_{i}": i for i in range(9)}}

    response = handler.lambda_handler(rest_event("POST", "/predict", body), lambda_context)

    message = parsed_body(response)["error"]["message"]
    assert error_of(response) == (400, "bad_request")
    assert sum(f"field_{i}" in message for i in range(9)) <= 5
    assert "4 more" in message


@pytest.mark.parametrize("payload_format", ["rest", "httpapi"])
def test_hundreds_of_thousands_of_unknown_fields_get_a_small_400(handler, lambda_context, payload_format):
    body = json.dumps({"image": "aGVsbG8=", **{f"k{i}": 0 for i in range(400_000)}})  # about 5 MB

    response = handler.lambda_handler(raw_request(payload_format, body), lambda_context)

    assert error_of(response) == (400, "bad_request")
    assert len(json.dumps(response)) < 2_000  # nothing echoed: far below Lambda's 6 MB response limit


def test_a_huge_unknown_field_name_is_not_echoed_whole(handler, lambda_context):
    response = handler.lambda_handler(
        rest_event("POST", "/predict", {"image": "aGVsbG8=", "x" * 100_000: 1}), lambda_context
    )

    assert error_of(response) == (400, "bad_request")
    assert len(parsed_body(response)["error"]["message"]) < 500


JPEG_B64 = base64.b64encode(SIAMESE.read_bytes()).decode()
MALFORMED = {
    "a raw image/jpeg body": (
        dict(body=JPEG_B64, base64_flag=True, content_type="image/jpeg"),
        415,
        "unsupported_content_type",
    ),
    "a form body": (
        dict(body="url=x", content_type="application/x-www-form-urlencoded"),
        415,
        "unsupported_content_type",
    ),
    "a body that is not UTF-8": (
        dict(body=base64.b64encode(b'{"url": "\xff"}').decode(), base64_flag=True),
        400,
        "bad_request",
    ),
    "isBase64Encoded with garbage": (dict(body="%%% not base64 %%%", base64_flag=True), 400, "invalid_base64"),
    "JSON nested 1,000 deep": (dict(body="[" * 1000 + "]" * 1000), 400, "bad_request"),
    "JSON nested 10 deep": (dict(body='{"image": ' + "[" * 10 + "]" * 10 + "}"), 400, "bad_request"),
    "an integer of 5,000 digits": (dict(body='{"image": "aGVsbG8=", "top_k": ' + "9" * 5000 + "}"), 400, "bad_request"),
    "NaN": (dict(body='{"image": "aGVsbG8=", "top_k": NaN}'), 400, "bad_request"),
    "a top-level array": (dict(body='[{"url": "http://example.com/a.jpg"}]'), 400, "bad_request"),
    "top_k as a string": (dict(body='{"image": "aGVsbG8=", "top_k": "5"}'), 400, "bad_request"),
    "top_k as true": (dict(body='{"image": "aGVsbG8=", "top_k": true}'), 400, "bad_request"),
    "top_k as 5.0": (dict(body='{"image": "aGVsbG8=", "top_k": 5.0}'), 400, "bad_request"),
    "a data: URI that is not an image": (
        dict(body='{"image": "data:text/html;base64,PGI+aGk8L2I+"}'),
        400,
        "invalid_base64",
    ),
}


@pytest.mark.parametrize("payload_format", ["rest", "httpapi"])
@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_request_gets_a_stable_4xx(handler, lambda_context, payload_format, case):
    request, status, code = MALFORMED[case]

    response = handler.lambda_handler(raw_request(payload_format, **request), lambda_context)

    assert error_of(response) == (status, code)


@pytest.mark.parametrize("event", [{}, {"foo": 1}, {"version": "2.0"}, {"httpMethod": 5, "path": []}, {"Records": []}])
def test_an_event_that_is_not_an_api_gateway_event_gets_a_clean_error(handler, lambda_context, event):
    response = handler.lambda_handler(event, lambda_context)

    assert error_of(response) == (400, "bad_event")


@pytest.mark.parametrize("payload_format", ["rest", "httpapi"])
def test_a_wrong_method_is_405_with_allow(handler, lambda_context, payload_format):
    make = rest_event if payload_format == "rest" else http_api_event

    response = handler.lambda_handler(make("DELETE", "/predict"), lambda_context)

    assert error_of(response) == (405, "method_not_allowed")
    assert response["headers"]["Allow"] == "POST"


@pytest.mark.parametrize("payload_format", ["rest", "httpapi"])
def test_head_health_answers_200_without_a_body(handler, lambda_context, payload_format):
    make = rest_event if payload_format == "rest" else http_api_event

    response = handler.lambda_handler(make("HEAD", "/health"), lambda_context)
    get = handler.lambda_handler(make("GET", "/health"), lambda_context)

    assert response["statusCode"] == 200 and response["body"] == ""
    assert response["headers"]["Content-Length"] == str(len(get["body"].encode())) != "0"


def test_a_500_is_counted_in_the_internal_error_metric_the_template_alarms_on(
    handler, service, lambda_context, monkeypatch, capsys
):
    def broken(*_args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "classify_bytes", broken)
    response = handler.lambda_handler(rest_event("POST", "/predict", {"image": JPEG_B64}), lambda_context)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]

    (record,) = [record for record in emf if "InternalError" in record]
    assert error_of(response) == (500, "internal_error")
    assert record["InternalError"] in (1, [1])
    template = yaml.load((REPO_DIR / "template.yaml").read_text(), Loader=TemplateLoader)
    deployed = template["Globals"]["Function"]["Environment"]["Variables"]
    alarm = template["Resources"]["PredictInternalErrorsAlarm"]["Properties"]
    (dimension_names,) = record["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (deployed["POWERTOOLS_METRICS_NAMESPACE"], "InternalError")
    assert sorted(d["Name"] for d in alarm["Dimensions"]) == sorted(dimension_names)  # an alarm needs the exact set
    assert {"Name": "service", "Value": deployed["POWERTOOLS_SERVICE_NAME"]} in alarm["Dimensions"]


class TemplateLoader(yaml.SafeLoader):
    """Reads template.yaml, CloudFormation's short-form tags (!Ref, !Sub, ...) read as nothing."""


TemplateLoader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)


def test_every_error_message_is_capped_whatever_it_quotes():
    from lambda_function.errors import MAX_ERROR_MESSAGE_CHARS, error_document

    document = error_document("bad_request", "x" * 1_000_000)

    assert len(document["error"]["message"]) == MAX_ERROR_MESSAGE_CHARS


def test_each_answer_is_counted_for_the_dashboard_a_prediction_or_an_error_under_its_code(
    handler, lambda_context, capsys
):
    """The EMF lines the handler prints when it returns (what CloudWatch reads the dashboard's metrics from)."""
    handler.lambda_handler(upload_event(SIAMESE.read_bytes()), lambda_context)
    handler.lambda_handler(rest_event("POST", "/predict", {"image": "not base64!"}), lambda_context)
    handler.lambda_handler(rest_event("PUT", "/predict", {}), lambda_context)

    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    recorded = {
        metric["Name"]
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    assert {"Predictions", "ErrorCode_invalid_base64", "ErrorCode_method_not_allowed"} <= recorded


@pytest.mark.parametrize(
    "event",
    [
        load_event("predict-base64.json"),
        load_event("health-httpapi.json"),
        load_event("page-httpapi.json"),
        load_event("bad-request.json"),
        http_api_event("GET", "/breeds"),
        http_api_event("HEAD", "/health"),
        http_api_event("DELETE", "/predict"),
        http_api_event("POST", "/predict", {"image": "not base64!"}),
        {"not": "an API Gateway event"},
    ],
    ids=["predict", "health", "page", "malformed", "breeds", "head", "method", "bad-image", "not-an-event"],
)
def test_every_answer_tells_browsers_not_to_sniff_its_type(handler, lambda_context, event):
    response = handler.lambda_handler(event, lambda_context)
    headers = response.get("headers") or {name: values[0] for name, values in response["multiValueHeaders"].items()}

    assert headers["X-Content-Type-Options"] == "nosniff", response


COSTLY_SHAPES = {
    "empty objects": '{"x": [' + ",".join(["{}"] * 1_000_000) + "]}",
    "empty arrays": "[" + ",".join(["[]"] * 1_000_000) + "]",
    "numbers": '{"top_k": 5, "image": "aGVsbG8=", "n": [' + ",".join(["1"] * 1_000_000) + "]}",
    "nulls in an object": '{"url": null, ' + ", ".join(f'"{i}": null' for i in range(200_000)) + "}",
}


@pytest.mark.parametrize("body", COSTLY_SHAPES.values(), ids=COSTLY_SHAPES.keys())
def test_a_body_with_more_structure_than_a_request_is_refused_from_its_bytes(handler, lambda_context, body):
    """Megabytes of containers or values cost hundreds of MB once parsed; they are refused before any is built."""
    import tracemalloc

    event = raw_request("httpapi", body)
    tracemalloc.start()
    try:
        response = handler.lambda_handler(event, lambda_context)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error_of(response) == (400, "bad_request")
    assert "structure" in parsed_body(response)["error"]["message"]
    assert peak_bytes < 4 * len(body) + 20_000_000  # linear in the bytes: no objects built for the values


def test_whitespace_and_escapes_do_not_count_as_structure(handler, lambda_context):
    photo = base64.b64encode(CAT_PHOTOS[0].read_bytes()).decode()
    body = '{\n  "image" :  "' + photo + '",' + " " * 100_000 + '"top_k": 2, "\\u0074op_k": 2\n}'

    response = handler.lambda_handler(raw_request("httpapi", body), lambda_context)

    assert response["statusCode"] == 200, response["body"][:300]
