"""The page for people as the API serves it (GET /): self-contained, small, and allowed to run only its own code.
How it behaves in a browser is tested in test_page_in_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest

from lambda_function import errors
from lambda_function.api.web_page import STATIC_DIR, assemble, web_page
from tests.conftest import http_api_event, rest_event

MAX_PAGE_BYTES = 50_000


class _Blocks(HTMLParser):
    """The text of each inline <style> and <script>, and every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.inline: dict[str, list[str]] = {"style": [], "script": []}
        self.loading_attributes: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.inline:
            self._open = tag
            self.inline[tag].append("")
        self.loading_attributes += [f"{tag}.{name}={value}" for name, value in attrs if name in ("src", "href")]

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.inline[self._open][-1] += data


def _source_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _policy(headers: dict[str, str]) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))


def test_the_policy_allows_exactly_the_inline_style_and_script_of_the_page():
    page = web_page()
    blocks = _Blocks()
    blocks.feed(page.html)
    policy = _policy(page.headers)

    assert len(blocks.inline["style"]) == len(blocks.inline["script"]) == 1
    assert policy["script-src"] == _source_hash(blocks.inline["script"][0])
    assert policy["style-src"] == _source_hash(blocks.inline["style"][0])
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert not any("unsafe" in value or "*" in value or "http" in value for value in policy.values())


def test_the_page_loads_nothing_from_anywhere_and_stays_small():
    blocks = _Blocks()
    blocks.feed(web_page().html)

    assert blocks.loading_attributes == ["link.href=data:,"]  # no favicon request
    assert len(web_page().html.encode()) < MAX_PAGE_BYTES


def test_an_inline_block_that_would_close_early_is_refused():
    with pytest.raises(ValueError, match="closing tag"):
        assemble("<style>{{style}}</style><script>{{script}}</script>", "", "x = '</script><script>evil()';")


def test_every_error_code_of_the_api_has_a_sentence_in_the_page():
    script = (STATIC_DIR / "page.js").read_text()
    sentences = set(re.findall(r"^\s{4}(\w+):\s", script.split("const MESSAGES = {", 1)[1].split("};", 1)[0], re.M))
    codes = {
        cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ClassifierError)
    }

    assert codes | {"internal_error", "not_found"} <= sentences


@pytest.mark.parametrize("event", [http_api_event("GET", "/"), rest_event("GET", "/")], ids=["http-api", "rest-api"])
def test_lambda_serves_the_page_with_its_security_headers(handler, lambda_context, event):
    response = handler.lambda_handler(event, lambda_context)
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}

    assert response["statusCode"] == 200
    assert response["body"] == web_page().html
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == web_page().headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_head_of_the_page_sends_its_headers_without_the_page(handler, lambda_context):
    response = handler.lambda_handler(http_api_event("HEAD", "/"), lambda_context)

    assert response["statusCode"] == 200
    assert response["body"] == ""
    assert "Content-Security-Policy" in response["headers"]
