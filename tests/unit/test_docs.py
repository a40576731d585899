"""The README is the front door and the docs are complete: every relative link resolves."""

from __future__ import annotations

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
    from lambda_function.preprocessing import IMAGE_SUFFIXES

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


def test_the_security_pages_table_of_request_limits_states_the_settings_defaults():
    from lambda_function.settings import ServerSettings

    source = (REPO_DIR / "lambda_function" / "settings.py").read_text()
    attribute_of = dict(re.findall(r'_number\(\s*env, "([A-Z][A-Z0-9_]+)", default\.(\w+)', source))
    page = (REPO_DIR / "docs" / "security.md").read_text()
    table = page.split("## The HTTP server's request limits", 1)[1]
    rows = re.findall(r"^\| [^|]+ \| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \|", table, re.M)
    defaults = ServerSettings(max_url_fetches=None)
    checked = 0
    for name, cell in rows:
        digits = re.sub(r"[^0-9]", "", cell.split("(")[0])
        if name not in attribute_of or not digits:
            continue  # a default that is a rule, not a number (DECODE_CONCURRENCY)
        stated = int(digits) * (1024 if "KB" in cell else 1)
        assert stated == getattr(defaults, attribute_of[name]), name
        checked += 1
    assert "SERVER_MAX_URL_FETCHES" in dict(rows) and defaults.max_url_fetches == int(
        dict(rows)["SERVER_MAX_URL_FETCHES"]
    )
    assert checked >= 5
