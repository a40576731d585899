"""The seeded, untrained smoke model the tests serve, built by the project's own code once per content of that code.

Building it imports TensorFlow and Keras (about ten seconds) to make and convert a model that is the same every
time for the same code, so it is kept under `build/test-models/`, keyed by a hash of every source file that takes
part (the serving, training and conversion packages), the label list and the pinned dependencies. A test session
gets its own copy, so no test can change the cached one.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import tempfile
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent.parent
CACHE_DIR = REPO_DIR / "build" / "test-models"
SOURCE_PACKAGES = ("lambda_function", "training", "conversion")
PINS = (REPO_DIR / "requirements.txt", REPO_DIR / "requirements" / "dev.txt")
TABLES = (REPO_DIR / "training" / "coat_lengths.csv",)  # read into the sidecar


def content_key(labels_file: Path, input_size_px: int) -> str:
    """A hash of everything the smoke model is made from."""
    digest = hashlib.sha256(f"size={input_size_px}\n".encode())
    sources = sorted(path for package in SOURCE_PACKAGES for path in (REPO_DIR / package).rglob("*.py"))
    for path in [*sources, *PINS, *TABLES, labels_file]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def smoke_model(destination: Path, labels_file: Path, input_size_px: int, photos: Path) -> Path:
    """A copy, in `destination`, of the smoke model (`.tflite` with its sidecar, and the `.keras` it came from)."""
    cached = CACHE_DIR / f"smoke-{content_key(labels_file, input_size_px)}"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes: one builds, the others wait and reuse it
        if not (cached / "smoke.json").exists():
            from conversion.untrained_model import read_labels, write_untrained_model

            staging = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix=".building-"))
            write_untrained_model(staging / "smoke.tflite", read_labels(labels_file), input_size_px, photos=photos)
            shutil.rmtree(cached, ignore_errors=True)  # an interrupted build's leftovers
            staging.replace(cached)  # whole or not at all
    destination.mkdir(parents=True, exist_ok=True)
    for path in cached.iterdir():
        shutil.copy2(path, destination / path.name)
    return destination / "smoke.tflite"
