"""The URL fetcher refuses every SSRF trick with 403 and never connects to a refused target."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from lambda_function.errors import DeadlineExceeded, ImageTooLarge, UpstreamError, UpstreamTimeout
from lambda_function.fetching.fetch import SafeFetcher, system_resolver
from lambda_function.request_deadline import Deadline
from lambda_function.settings import FetchSettings
from tests.conftest import CAT_PHOTOS, parsed_body, rest_event
from tests.support import http_server

PUBLIC = ipaddress.ip_address("93.184.215.14")  # documentation-style stand-in for "some public host"; never contacted
CAT_BYTES = CAT_PHOTOS[0].read_bytes()

# The production policy: loopback refused, any port (so that a refusal is the address policy's, not the port's).
STRICT = FetchSettings(allowed_ports=None, allow_loopback=False, total_timeout_s=2, connect_timeout_s=1)


def answering(*addresses: str) -> Callable[[str, int], list[Any]]:
    """A resolver (the fetcher's DNS dependency) that gives these answers for every name."""
    return lambda _host, _port: [ipaddress.ip_address(a) for a in addresses]


@pytest.fixture
def strict_fetcher(service: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., SafeFetcher]:
    """Installs a fetcher with the production policy (and optionally a resolver) into the running service."""

    def install(resolver: Callable[[str, int], list[Any]] = system_resolver, **overrides: Any) -> SafeFetcher:
        fetcher = SafeFetcher(replace(STRICT, **overrides), resolver=resolver)
        monkeypatch.setattr(service, "fetcher", fetcher)
        return fetcher

    return install


def predict_url(handler: Any, context: Any, url: str) -> tuple[int, dict[str, Any]]:
    response = handler.lambda_handler(rest_event("POST", "/predict", {"url": url}), context)
    return response["statusCode"], parsed_body(response)


SSRF_URLS = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fd00::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://user:pass@example.com/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "ftp://example.com/cat.jpg",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
]


@pytest.mark.parametrize("url", SSRF_URLS)
def test_ssrf_target_is_refused_with_403_and_never_contacted(
    handler, lambda_context, strict_fetcher, connection_log, url
):
    strict_fetcher()

    status, body = predict_url(handler, lambda_context, url)

    assert status == 403 and body["error"]["code"] == "url_not_allowed"
    assert connection_log.addresses == []


def test_loopback_server_is_not_contacted_when_loopback_is_not_allowed(handler, lambda_context, strict_fetcher):
    strict_fetcher()
    with http_server.running({"/cat.jpg": http_server.serve_bytes(CAT_BYTES)}) as host:
        by_address = predict_url(handler, lambda_context, host.url("/cat.jpg"))
        by_name = predict_url(handler, lambda_context, f"http://localhost:{host.port}/cat.jpg")

    assert [(status, body["error"]["code"]) for status, body in (by_address, by_name)] == [(403, "url_not_allowed")] * 2
    assert host.requests == []


def test_hostname_resolving_to_a_private_address_is_refused(handler, lambda_context, strict_fetcher, connection_log):
    strict_fetcher(answering("192.168.1.20"))

    status, body = predict_url(handler, lambda_context, "http://cats.example.com/cat.jpg")

    assert (status, body["error"]["code"]) == (403, "url_not_allowed")
    assert "cats.example.com" in body["error"]["message"]
    assert connection_log.addresses == []


def test_hostname_with_one_public_and_one_private_address_is_refused(
    handler, lambda_context, strict_fetcher, connection_log
):
    strict_fetcher(answering(str(PUBLIC), "10.1.2.3"))

    status, body = predict_url(handler, lambda_context, "http://mixed.example.com/cat.jpg")

    assert (status, body["error"]["code"]) == (403, "url_not_allowed")
    assert connection_log.addresses == []


def test_connection_goes_only_to_the_checked_address_when_dns_changes_its_answer(
    handler, lambda_context, strict_fetcher, connection_log
):
    # DNS rebinding: the first answer passes the check, a second lookup would give a private address.
    # Here the "allowed" first answer is the test's loopback server (loopback allowed for this case only).
    answers = [["127.0.0.1"], ["10.0.0.1"]]
    calls: list[str] = []

    def rebinding_resolver(host: str, _port: int) -> list[Any]:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in answers[min(len(calls), 2) - 1]]

    strict_fetcher(rebinding_resolver, allow_loopback=True)
    with http_server.running({"/cat.jpg": http_server.serve_bytes(CAT_BYTES)}) as host:
        status, _ = predict_url(handler, lambda_context, f"http://rebind.example.com:{host.port}/cat.jpg")

    assert status == 200
    assert calls == ["rebind.example.com"]
    assert connection_log.addresses == ["127.0.0.1"]
    assert host.host_headers == [f"rebind.example.com:{host.port}"]


@pytest.mark.parametrize("location", ["http://10.0.0.1/cat.jpg", "http://169.254.169.254/", "file:///etc/passwd"])
def test_redirect_to_a_refused_target_is_403(handler, lambda_context, strict_fetcher, connection_log, location):
    strict_fetcher(allow_loopback=True)
    with http_server.running({"/start": http_server.redirect_to(location)}) as host:
        status, body = predict_url(handler, lambda_context, host.url("/start"))

    assert status == 403 and body["error"]["code"] == "url_not_allowed"
    assert host.requests == ["/start"]
    assert set(connection_log.addresses) == {"127.0.0.1"}


def test_redirects_are_followed_up_to_the_limit(handler, lambda_context, strict_fetcher):
    strict_fetcher(allow_loopback=True)
    routes = {
        "/r1": http_server.redirect_to("/r2", 301),
        "/r2": http_server.redirect_to("/r3", 307),
        "/r3": http_server.redirect_to("/cat.jpg", 308),
        "/cat.jpg": http_server.serve_bytes(CAT_BYTES),
        "/r0": http_server.redirect_to("/r1"),
    }
    with http_server.running(routes) as host:
        followed, _ = predict_url(handler, lambda_context, host.url("/r1"))
        too_many, body = predict_url(handler, lambda_context, host.url("/r0"))

    assert followed == 200
    assert too_many == 502 and "redirected more than 3 times" in body["error"]["message"]


def test_ports_other_than_80_and_443_are_refused_by_default(handler, lambda_context, strict_fetcher, connection_log):
    strict_fetcher(allowed_ports=frozenset({80, 443}), allow_loopback=True)

    status, body = predict_url(handler, lambda_context, "http://127.0.0.1:6379/")

    assert (status, body["error"]["code"]) == (403, "url_not_allowed")
    assert "port 6379" in body["error"]["message"]
    assert connection_log.addresses == []


def test_false_content_length_does_not_lift_the_byte_cap():
    fetcher = SafeFetcher(replace(STRICT, allow_loopback=True, max_bytes=100_000))
    route = http_server.chunked_stream(total_bytes=1_000_000, claimed_length=10)
    with http_server.running({"/liar.jpg": route}) as host, pytest.raises(ImageTooLarge):
        fetcher.fetch(host.url("/liar.jpg"))


def test_declared_content_length_over_the_cap_is_refused_before_reading():
    fetcher = SafeFetcher(replace(STRICT, allow_loopback=True, max_bytes=1000))
    with http_server.running({"/big.jpg": http_server.serve_bytes(CAT_BYTES)}) as host, pytest.raises(ImageTooLarge):
        fetcher.fetch(host.url("/big.jpg"))


def test_unresolvable_host_is_an_upstream_error():
    def failing_resolver(_host: str, _port: int) -> list[Any]:
        raise OSError("Name or service not known")

    with pytest.raises(UpstreamError, match="could not be resolved"):
        SafeFetcher(STRICT, resolver=failing_resolver).fetch("http://no-such-host.invalid/cat.jpg")


def test_fetched_bytes_are_exactly_what_the_server_sent():
    fetcher = SafeFetcher(replace(STRICT, allow_loopback=True))
    with http_server.running({"/cat.jpg": http_server.serve_bytes(CAT_BYTES)}) as host:
        assert fetcher.fetch(host.url("/cat.jpg")) == CAT_BYTES


@pytest.fixture(scope="module")
def tls_image_host(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An https image host on loopback with a certificate for cats.test, issued by a throwaway CA."""
    import ssl

    import trustme

    authority = trustme.CA()
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("cats.test").configure_cert(context)
    with http_server.running({"/cat.jpg": http_server.serve_bytes(CAT_BYTES)}) as host:
        host.socket = context.wrap_socket(host.socket, server_side=True)
        yield host, str(ca_file)


def test_https_connects_to_the_checked_address_and_verifies_the_host_name(tls_image_host, connection_log):
    host, ca_file = tls_image_host
    fetcher = SafeFetcher(replace(STRICT, allow_loopback=True, ca_bundle_path=ca_file), resolver=answering("127.0.0.1"))

    assert fetcher.fetch(f"https://cats.test:{host.port}/cat.jpg") == CAT_BYTES
    assert connection_log.addresses == ["127.0.0.1"]


@pytest.mark.parametrize(("name", "trust_test_ca"), [("dogs.test", True), ("cats.test", False)])
def test_https_with_a_certificate_not_valid_for_the_host_is_an_upstream_error(tls_image_host, name, trust_test_ca):
    host, ca_file = tls_image_host
    settings = replace(STRICT, allow_loopback=True, ca_bundle_path=ca_file if trust_test_ca else None)
    fetcher = SafeFetcher(settings, resolver=answering("127.0.0.1"))

    with pytest.raises(UpstreamError):
        fetcher.fetch(f"https://{name}:{host.port}/cat.jpg")


def test_the_tests_network_guard_refuses_and_reports_anything_beyond_loopback(network_guard):
    import socket

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((str(PUBLIC), 80), timeout=1)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 80)

    assert (network_guard.refused_connects, network_guard.refused_lookups) == ([str(PUBLIC)], ["example.com"])
    network_guard.refused_connects.clear()  # this test's own attempts were the point
    network_guard.refused_lookups.clear()


def test_interim_answers_before_the_final_one_are_skipped():
    fetcher = SafeFetcher(replace(STRICT, allow_loopback=True))
    with http_server.running({"/cat.jpg": http_server.early_hints_then(CAT_BYTES)}) as host:
        assert fetcher.fetch(host.url("/cat.jpg")) == CAT_BYTES


def test_a_fast_flood_of_interim_answers_is_refused_at_the_cap_not_waited_out():
    from lambda_function.fetching.fetch_deadline import MAX_INTERIM_ANSWERS

    fetcher = SafeFetcher(replace(STRICT, allow_loopback=True, total_timeout_s=10))
    with http_server.running({"/cat.jpg": http_server.continue_flood(interval_s=0.01)}) as host:
        started = time.monotonic()
        with pytest.raises(UpstreamError):
            fetcher.fetch(host.url("/cat.jpg"))
        elapsed = time.monotonic() - started

    assert elapsed < MAX_INTERIM_ANSWERS * 0.01 + 5  # the cap ended it, not the 10 s deadline


@pytest.mark.parametrize(
    "dripping",
    [http_server.drip(CAT_PHOTOS[0].read_bytes(), interval_s=0.05), http_server.drip_headers(interval_s=0.05)],
    ids=["body", "headers"],
)
def test_a_fetch_stops_at_the_requests_deadline_when_it_comes_before_its_own(dripping):
    """One deadline per request: the request's, when it is the nearer, ends the fetch (504 deadline_exceeded);
    otherwise the fetch's own does (504 upstream_timeout)."""
    fetcher = SafeFetcher(replace(STRICT, allow_loopback=True, total_timeout_s=5))
    with http_server.running({"/slow.jpg": dripping}) as host:
        with pytest.raises(DeadlineExceeded):
            fetcher.fetch(host.url("/slow.jpg"), deadline=Deadline.after(0.3))
        with pytest.raises(UpstreamTimeout):
            SafeFetcher(replace(STRICT, allow_loopback=True, total_timeout_s=0.3, connect_timeout_s=0.3)).fetch(
                host.url("/slow.jpg"), deadline=Deadline.after(60)
            )
