"""A test double for AWS's Lambda base image, so that the unchanged Dockerfile builds and runs on a machine that
cannot pull `public.ecr.aws/lambda/python:3.12`.

It is Debian bookworm, debootstrapped from Debian's mirror and imported into Docker, with the contract the
Dockerfile and the SAM CLI rely on: `/lambda-entrypoint.sh HANDLER`, `LAMBDA_TASK_ROOT=/var/task`, `awslambdaric`
in the Python on `PATH` (a virtual environment at `/var/lang`, as AWS puts Python there) and the emulator at
`/usr/local/bin/aws-lambda-rie`. It differs in its Python (Debian's 3.11 against AL2023's 3.12) and its C library
(glibc 2.36 against 2.34); docs/development.md says so.

The stand-in is kept under a name of its own, by the hash of its recipe (this folder, the pins below, the
emulator and the machine's CA bundle), so a second `make test` reuses it. It wears AWS's name only inside
`shadowing_aws_base_image()`, which puts back whatever that name meant before: a user's real `sam build` never
builds on it.

    python -m tests.support.lambda_base.stand_in     # build it (or find it) and print its name
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.docker_cli import docker, image_id, restoring_tags

AWS_BASE_IMAGE = "public.ecr.aws/lambda/python:3.12"
# The label the stand-in carries (its Dockerfile sets it), so that no tag of AWS's name is ever taken for AWS's image.
TEST_DOUBLE_LABEL = "cat-breeds.test-double"
# The uid and gid Lambda runs functions as (sbx_user1051), not root.
LAMBDA_USER = "993:990"
STAND_IN_REPOSITORY = "cat-breeds-test/lambda-python-stand-in"
RECIPE_DIR = Path(__file__).resolve().parent
REPO_DIR = RECIPE_DIR.parents[2]
BUILD_DIR = REPO_DIR / "build" / "lambda-base"
DEBIAN_SUITE = "bookworm"
APT_SOURCES = Path("/etc/apt")
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
AWSLAMBDARIC_VERSION = "4.2.2"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
RECIPE_FILES = ("Dockerfile", "lambda-entrypoint.sh", "bootstrap", "stand_in.py")


def emulator_path() -> Path:
    """The Lambda Runtime Interface Emulator that the pinned SAM CLI wheel ships (requirements/infra.txt)."""
    found = sorted(
        (REPO_DIR / ".venv-infra").glob("lib/python*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")
    )
    if not found:
        raise FileNotFoundError("the SAM CLI's emulator is missing: `make test` installs .venv-infra")
    return found[0]


def debian_mirror(apt: Path = APT_SOURCES) -> str:
    """The Debian archive this machine's apt installs `DEBIAN_SUITE` from (its deb822 or one-line sources): the
    one mirror the machine is known to reach."""
    for sources in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in sources.read_text().split("\n\n"):
            lines = [line for line in stanza.splitlines() if ":" in line and not line.startswith("#")]
            fields = {name.strip(): value.split() for name, value in (line.split(":", 1) for line in lines)}
            if DEBIAN_SUITE in fields.get("Suites", []) and "deb" in fields.get("Types", []):
                return fields["URIs"][0]
    one_line = apt / "sources.list"
    for line in one_line.read_text().splitlines() if one_line.exists() else []:
        words = re.sub(r"\[[^]]*\]", "", line).split()  # without its [options]
        if len(words) >= 3 and words[0] == "deb" and words[2] == DEBIAN_SUITE:
            return words[1]
    raise FileNotFoundError(f"no Debian {DEBIAN_SUITE} archive in {apt}'s sources: debootstrap needs one")


def recipe_digest(emulator: Path, ca_bundle: Path = CA_BUNDLE) -> str:
    """What the stand-in is made of, hashed: any change to it builds a new one."""
    digest = hashlib.sha256()
    for name in RECIPE_FILES:
        digest.update(name.encode() + b"\0" + (RECIPE_DIR / name).read_bytes())
    for path in (emulator, ca_bundle):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def stand_in_image() -> str:
    """The stand-in's name, built first when no image of this recipe exists."""
    emulator = emulator_path()
    reference = f"{STAND_IN_REPOSITORY}:{recipe_digest(emulator)}"
    if image_id(reference) is None:
        _build(reference, emulator)
    return reference


def _build(reference: str, emulator: Path) -> None:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    as_root = [] if os.geteuid() == 0 else ["sudo"]  # debootstrap and reading its tree need root
    with tempfile.TemporaryDirectory(dir=BUILD_DIR, prefix="build-") as work:
        rootfs = Path(work) / "rootfs"
        subprocess.run(
            [
                *as_root,
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                DEBIAN_SUITE,
                str(rootfs),
                debian_mirror(),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        rootfs_image = f"{reference}-rootfs"
        archive = subprocess.run(
            [*as_root, "tar", "--numeric-owner", "--exclude=*.deb", "-C", str(rootfs), "-c", "."],
            check=True,
            capture_output=True,
            timeout=300,
        ).stdout
        subprocess.run([*as_root, "rm", "-rf", str(rootfs)], check=True, timeout=300)
        docker("import", "-", rootfs_image, input_bytes=archive, timeout_s=600)
        context = Path(work) / "context"
        context.mkdir()
        for name in ("Dockerfile", "lambda-entrypoint.sh", "bootstrap"):
            shutil.copy(RECIPE_DIR / name, context / name)
        shutil.copy(emulator, context / "aws-lambda-rie")
        shutil.copy(CA_BUNDLE, context / "ca-certificates.crt")
        docker(
            "build",
            "--build-arg",
            f"ROOTFS={rootfs_image}",
            "--build-arg",
            f"AWSLAMBDARIC_VERSION={AWSLAMBDARIC_VERSION}",
            "--tag",
            reference,
            str(context),
            timeout_s=900,
        )
        docker("rmi", rootfs_image, timeout_s=120)


@contextmanager
def shadowing_aws_base_image(stand_in: str, *built: str) -> Iterator[None]:
    """AWS's base image name points at the stand-in inside the block, and back at what it was (or at nothing) after;
    so do the tags BUILT (the images the block builds on it, under the names a user's own builds use)."""
    with restoring_tags(AWS_BASE_IMAGE, *built, forget_if_labelled=TEST_DOUBLE_LABEL):
        docker("tag", stand_in, AWS_BASE_IMAGE, timeout_s=60)
        yield


if __name__ == "__main__":
    sys.stdout.write(stand_in_image() + "\n")
