"""The SAM template read as YAML, its short-form intrinsic functions (`!Ref`, `!Sub`...) read as None: for tests
that check what the template writes out (Metadata, ImageUri, commands), not what CloudFormation resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _TagIgnoringLoader(yaml.SafeLoader):
    pass


_TagIgnoringLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def read_template(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_TagIgnoringLoader)  # a SafeLoader


def functions_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The template's AWS::Serverless::Function resources, by logical ID."""
    return {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
