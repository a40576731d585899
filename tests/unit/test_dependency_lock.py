"""The runtime set is pinned whole: requirements.lock (what the image and .venv-runtime install, `--require-hashes
--no-deps`) is requirements.txt's closure, at the same versions, with a hash for every requirement."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO_DIR

LOCK = REPO_DIR / "requirements.lock"
# `name[extras]==version`, and a lock entry's `name==version ; marker \` with its `--hash=` lines after it
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_txt_pins() -> dict[str, str]:
    lines = (REPO_DIR / "requirements.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line.strip() and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"requirements.txt pins every requirement exactly: {line!r}"
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """Each requirement of the lock: its version and its hashes (a requirement's continuation lines joined)."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    entries = {}
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            match = PIN.match(line)
            assert match, f"the lock pins every requirement exactly: {line[:80]!r}"
            entries[canonical(match.group(1))] = (match.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return entries


def test_every_pin_of_requirements_txt_is_in_the_lock_at_the_same_version():
    pins = requirements_txt_pins()
    locked = {name: version for name, (version, _) in lock_entries().items()}

    assert {name: locked.get(name) for name in pins} == pins
    assert {"ai-edge-litert", "numpy", "pydantic-core", "botocore"} <= set(locked)  # the closure, not just the pins


def test_every_requirement_of_the_lock_has_a_hash():
    entries = lock_entries()

    assert entries and {name for name, (_, hashes) in entries.items() if not hashes} == set()


def test_the_lock_says_how_to_regenerate_it_and_the_makefile_does_it_for_every_platform():
    header = LOCK.read_text().split("\n", 3)[:2]
    makefile = (REPO_DIR / "Makefile").read_text()
    recipe = makefile[makefile.index("\nlock:") :].split("\n\n", 1)[0]

    assert header[1].strip() == "#    make lock"
    assert all(flag in recipe for flag in ("--universal", "--generate-hashes", "--python-version 3.11"))
    assert "--require-hashes" in makefile[makefile.index(".venv-runtime/.installed-stamp: requirements.lock") :]


def test_check_arm64_asks_for_every_manylinux_tag_from_2014_to_the_base_images_glibc():
    printed = subprocess.run(
        ["make", "--silent", "--no-print-directory", "--eval", "print-%: ; @echo $($*)", "print-ARM64_PLATFORMS"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    platforms = printed[1::2]
    arm64 = (REPO_DIR / "docs" / "deploy.md").read_text().split("## arm64", 1)[1].split("\n## ", 1)[0]

    # pip matches platform tags exactly: LiteRT's aarch64 wheels are manylinux_2_27, missed by a list of 2_28 and 2_34
    assert printed[0::2] == ["--platform"] * len(platforms)
    assert set(platforms) == {"manylinux2014_aarch64", "any"} | {
        f"manylinux_2_{minor}_aarch64" for minor in range(17, 35)
    }
    assert "from 2.17 (manylinux2014) to 2.34 (Amazon Linux 2023)" in re.sub(r"\s+", " ", arm64)
