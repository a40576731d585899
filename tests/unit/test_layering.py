"""The packages depend on each other in one direction: lambda_function <- training <- conversion (and the
benchmarks and tests on top). The runtime never imports training, conversion, TensorFlow or Keras."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR

MAY_NOT_IMPORT = {
    "lambda_function": {"training", "conversion", "benchmarks", "tests", "tensorflow", "keras"},
    "training": {"conversion", "benchmarks", "tests"},
    "conversion": {"benchmarks", "tests"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_each_package_imports_only_what_lies_below_it(package):
    offending = {
        str(path.relative_to(REPO_DIR)): sorted(imported_packages(path) & MAY_NOT_IMPORT[package])
        for path in sorted((REPO_DIR / package).rglob("*.py"))
    }

    assert {path: names for path, names in offending.items() if names} == {}
