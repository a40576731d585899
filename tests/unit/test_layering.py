"""The packages depend on each other in one direction: lambda_function <- training <- conversion (and the
benchmarks and tests on top). The runtime never imports training, conversion, TensorFlow or Keras."""

from __future__ import annotations

import ast
import re
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


PACKAGES = ("lambda_function", "training", "conversion", "benchmarks", "fuzz")


def module_files() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name, from its __init__.py)."""
    modules = {}
    for package in PACKAGES:
        for path in (REPO_DIR / package).rglob("*.py"):
            parts = list(path.relative_to(REPO_DIR).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its source: at the top, inside functions (lazy imports)
    and under `if TYPE_CHECKING:` alike."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in graph.get(node, ()):
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_module_imports_itself_back_through_others_not_even_lazily():
    modules = module_files()
    known = set(modules)
    # A package's __init__ is not an edge: importing `a.b` runs `a/__init__.py`, which imports nothing here.
    graph = {
        name: {t for t in imports_of(name, path, known) if modules[t].name != "__init__.py"}
        for name, path in modules.items()
    }

    assert import_circles(graph) == []


def test_the_circle_finder_finds_a_lazy_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_submitting_a_batch_job_imports_no_model_decoder_litert_or_powertools():
    """`backfill --batch-operations` runs on an operator's machine: listing a bucket and submitting a job."""
    import subprocess
    import sys

    heavy = ("PIL", "pillow_heif", "ai_edge_litert", "numpy", "aws_lambda_powertools", "lambda_function.datapath")
    probe = (
        "import sys, lambda_function.tagging.batch_job, lambda_function.tagging.s3_objects; "
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_DIR, capture_output=True, text=True, check=True, timeout=60
    )

    assert completed.stdout.strip() == "[]"


def top_level_imports(path: Path) -> set[str]:
    """What a module imports when it is imported: its top-level statements only (not functions, not
    `if TYPE_CHECKING:`), as dotted names."""
    names = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def test_the_unit_tests_import_no_tensorflow_or_keras():
    """So that `make test-unit` is fast: what needs them (building the smoke model, the cat gate's Keras layer,
    the training and conversion commands) is cached or tested under tests/integration."""
    modules = module_files()
    for path in (REPO_DIR / "tests").rglob("*.py"):
        modules[".".join(path.relative_to(REPO_DIR).with_suffix("").parts)] = path
    pending = [name for name in modules if name.startswith("tests.unit.")] + ["tests.conftest"]
    seen: set[str] = set()
    heavy = []
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in top_level_imports(modules[name]):
            if imported.split(".")[0] in {"tensorflow", "keras"}:
                heavy.append(f"{name} imports {imported}")
            if imported in modules:
                pending.append(imported)

    assert heavy == []


def test_every_type_ignore_in_the_runtime_names_its_error_code_and_why():
    """mypy checks lambda_function/ strictly (`make test`); an exception to it says which check and why."""
    loose = [
        f"{path.relative_to(REPO_DIR)}:{number}"
        for path in sorted((REPO_DIR / "lambda_function").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "type: ignore" in line and not re.search(r"# type: ignore\[[a-z-]+(, [a-z-]+)*\]  # \S", line)
    ]

    assert loose == []
