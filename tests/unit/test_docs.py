"""The README is the front door and the docs are complete: every relative link resolves."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR

DOCUMENTS = [REPO_DIR / "README.md", *sorted((REPO_DIR / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
README_MAX_LINES = 220


def relative_links(document: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.S)  # code blocks hold commands, not links
    return [t for t in LINK.findall(text) if not re.match(r"^(https?:|mailto:|#)", t)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO_DIR)))
def test_every_relative_link_resolves(document):
    missing = [target for target in relative_links(document) if not (document.parent / target.split("#")[0]).exists()]

    assert missing == []


def test_the_readme_stays_a_front_door():
    readme = (REPO_DIR / "README.md").read_text()
    sections = re.findall(r"(?m)^## (.+)$", readme)

    assert len(readme.splitlines()) <= README_MAX_LINES
    assert sections.index("Deploy to AWS, and tear down") == sections.index("The two commands") + 1
    assert "sam delete" in readme


def test_every_doc_is_linked_from_the_readme():
    readme_links = set(relative_links(REPO_DIR / "README.md"))

    assert {f"docs/{path.name}" for path in DOCUMENTS[1:]} <= readme_links


def test_the_photo_names_in_the_deploy_guide_are_the_decoders_own_list():
    from lambda_function.image_names import IMAGE_SUFFIXES

    text = (REPO_DIR / "docs" / "deploy.md").read_text()
    sentence = text[text.index("which objects are photos") : text.index("the decoder's own list")]

    assert set(re.findall(r"`(\.\w+)`", sentence)) == IMAGE_SUFFIXES


def test_every_variable_the_settings_read_is_in_the_configuration_table_and_no_other():
    source = (REPO_DIR / "lambda_function" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.get)?\(\s*"([A-Z][A-Z0-9_]+)"', source))
    read |= set(re.findall(r'_(?:number|bool)\(env, "([A-Z][A-Z0-9_]+)"', source))
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (REPO_DIR / "docs" / "configuration.md").read_text(), re.M))
    powertools_own = {"POWERTOOLS_TRACE_DISABLED"}  # read by powertools itself, documented for completeness

    assert read - {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE"} <= table
    assert table - powertools_own <= read


def setting_defaults() -> dict[str, float]:
    """Each numeric variable the settings read, with its default, read from the code: the variable's attribute
    (`_number(env, "NAME", default.attribute, ...)`) on the settings object that holds it."""
    from lambda_function.settings import FetchSettings, ServerSettings, Settings

    source = (REPO_DIR / "lambda_function" / "settings.py").read_text()
    attribute_of = dict(re.findall(r'_number\(\s*env, "([A-Z][A-Z0-9_]+)", default\.(\w+)', source))
    holders = (Settings(), ServerSettings(), FetchSettings())
    defaults = {}
    for name, attribute in attribute_of.items():
        values = [getattr(holder, attribute) for holder in holders if hasattr(holder, attribute)]
        if values and values[0] is not None:
            defaults[name] = values[0]
    defaults["SERVER_MAX_URL_FETCHES"] = ServerSettings(max_url_fetches=None).max_url_fetches
    return defaults


def stated_number(cell: str) -> float:
    """A figure as the docs write it: `32 KB`, `6,000,000 bytes`, `6 MB`, `14 s`, `24`."""
    figure, unit = re.match(r"\s*([\d,.]+)\s*(\w*)", cell).groups()
    return float(figure.replace(",", "")) * {"KB": 1024, "MB": 1_000_000}.get(unit, 1)


def test_the_security_pages_table_of_request_limits_states_the_settings_defaults():
    defaults = setting_defaults()
    page = (REPO_DIR / "docs" / "security.md").read_text()
    table = page.split("## The HTTP server's request limits", 1)[1]
    rows = re.findall(r"^\| [^|]+ \| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \|", table, re.M)
    checked = [name for name, cell in rows if re.match(r"\s*\d", cell)]  # DECODE_CONCURRENCY's is a rule

    for name in checked:
        assert stated_number(dict(rows)[name]) == defaults[name], name
    assert {"SERVER_MAX_URL_FETCHES", "SERVER_MAX_HEADERS", "DECODE_TIME_BUDGET_S"} <= set(checked)
    assert len(checked) >= 7


def test_the_security_page_states_the_fixed_limits_of_a_requests_json():
    from lambda_function.api import gateway

    page = (REPO_DIR / "docs" / "security.md").read_text()
    stated = dict(re.findall(r"`(MAX_[A-Z_]+)` \((\d[\d,]*)\)", page))

    assert set(stated) >= {"MAX_JSON_SKELETON_CHARS", "MAX_JSON_DEPTH", "MAX_JSON_FIELDS", "MAX_INTEGER_DIGITS"}
    for name, figure in stated.items():
        assert int(figure.replace(",", "")) == getattr(gateway, name), name


def test_the_security_pages_fixed_connection_limits_are_the_codes():
    from lambda_function.server import http_protocol

    page = (REPO_DIR / "docs" / "security.md").read_text()
    rows = dict(re.findall(r"^\| [^|]+ \| `([A-Z_]+)` \(fixed\) \| ([^|]+) \|", page, re.M))

    assert rows, "no fixed limit in the table"
    for name, cell in rows.items():
        assert stated_number(cell) == getattr(http_protocol, name), name


def test_the_kubernetes_pages_limits_state_the_settings_defaults():
    defaults = setting_defaults()
    page = (REPO_DIR / "docs" / "kubernetes.md").read_text()
    stated = re.findall(r"`([A-Z][A-Z0-9_]+)` \((\d[\d,.]*(?: KB| MB| s)?)", page)

    for name, figure in stated:
        assert stated_number(figure) == defaults[name], name
    assert {name for name, _ in stated} >= {
        "SERVER_MAX_HEADER_BYTES",
        "SERVER_MAX_HEADERS",
        "SERVER_HEADER_TIMEOUT_S",
        "SERVER_MAX_REQUEST_BYTES",
        "SERVER_REQUEST_DEADLINE_S",
        "SERVER_MAX_URL_FETCHES",
        "DECODE_TIME_BUDGET_S",
        "SERVER_DRAIN_S",
        "SERVER_GRACEFUL_TIMEOUT_S",
    }


def error_codes_in_the_code() -> dict[str, int | None]:
    """Every error code the service can answer with: each `ClassifierError`'s, with its status, and the ones the
    API writes itself (`refusal_document(code, ...)`, `_error(status, code, ...)`), read from the source."""
    import ast

    from lambda_function.errors import ClassifierError

    codes: dict[str, int | None] = {}
    pending = [ClassifierError]
    while pending:
        error = pending.pop()
        codes[error.code] = int(error.status)
        pending += error.__subclasses__()
    for path in (REPO_DIR / "lambda_function").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                position = {"refusal_document": 0, "_error": 1}.get(node.func.id)
                if position is not None and len(node.args) > position:
                    argument = node.args[position]
                    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                        codes.setdefault(argument.value, None)
    return codes


def test_the_api_page_documents_every_error_code_with_its_status():
    table = dict(
        (code, int(status))
        for status, code in re.findall(
            r"^\| (\d{3}) \| `([a-z0-9_]+)` \|", (REPO_DIR / "docs" / "api.md").read_text(), re.M
        )
    )
    codes = error_codes_in_the_code()

    assert set(codes) == set(table)
    assert {code: status for code, status in codes.items() if status is not None} == {
        code: table[code] for code, status in codes.items() if status is not None
    }
    assert {"internal_error", "not_found", "bad_event", "deadline_exceeded"} <= set(codes)


def test_the_configuration_tables_numeric_defaults_are_the_settings_defaults():
    defaults = setting_defaults()
    table = re.findall(
        r"^\| `([A-Z][A-Z0-9_]+)` \| `([\d.]+)` \|", (REPO_DIR / "docs" / "configuration.md").read_text(), re.M
    )

    assert {name: float(value) for name, value in table} == {name: float(defaults[name]) for name, _ in table}
    assert len(table) >= 15


# Lambda refuses a larger synchronous invocation ("Request must be smaller than 6291456 bytes"); API Gateway's HTTP
# API takes 10 MB, so Lambda's is the limit a client meets.
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
HTTP_API_PAYLOAD_MB = 10
EVENT_ENVELOPE_BYTES = 16 * 1024  # an API Gateway event's headers and context around the body, with room to spare


@pytest.mark.parametrize("document", ["README.md", "docs/api.md"])
def test_the_largest_photo_stated_is_the_upload_cap_and_fits_lambdas_payload_limit(document):
    defaults = setting_defaults()
    text = re.sub(r"\s+", " ", (REPO_DIR / document).read_text())
    sentence = text[text.index("largest photo") :].split("image_too_large", 1)[0]
    stated = dict(
        (name, stated_number(figure))
        for figure, name in re.findall(r"(\d[\d,.]*(?: MB| bytes)) \(`([A-Z][A-Z0-9_]+)`\)", sentence)
    )
    request_mb = stated_number(re.search(r"[Ii]n base64 that is (\d[\d,.]* MB)", sentence).group(1))
    base64_bytes = -(-defaults["MAX_UPLOAD_BYTES"] // 3) * 4

    assert stated == {"MAX_UPLOAD_BYTES": defaults["MAX_UPLOAD_BYTES"], "FETCH_MAX_BYTES": defaults["FETCH_MAX_BYTES"]}
    assert request_mb == base64_bytes
    assert base64_bytes + EVENT_ENVELOPE_BYTES <= LAMBDA_SYNC_PAYLOAD_BYTES
    assert f"{HTTP_API_PAYLOAD_MB} MB" in sentence and "Lambda" in sentence


def test_the_docs_name_lambda_not_api_gateway_for_the_6_mb_limit():
    for document in DOCUMENTS:
        text = re.sub(r"\s+", " ", document.read_text())
        assert not re.search(r"API Gateway's (?:6 MB )?payload limit", text), document.name


def test_the_largest_upload_fits_the_http_servers_cap_and_lambdas_payload_in_an_api_gateway_event():
    """Both front doors take the largest photo the docs promise: the server's body cap and Lambda's 6 MB."""
    from lambda_function.settings import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_UPLOAD_BYTES, LAMBDA_SYNC_PAYLOAD_BYTES

    body = json.dumps({"image": base64.b64encode(b"\xff" * DEFAULT_MAX_UPLOAD_BYTES).decode(), "top_k": 100})
    event = {**json.loads((REPO_DIR / "events" / "predict-base64.json").read_text()), "body": body}

    assert len(body) <= DEFAULT_MAX_REQUEST_BYTES
    assert len(json.dumps(event)) <= LAMBDA_SYNC_PAYLOAD_BYTES
