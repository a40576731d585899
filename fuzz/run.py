"""Coverage-guided fuzzing of the service's parsers with atheris: `make fuzz` (or `python -m fuzz.run`).

Each target in `fuzz/targets.py` runs in its own process for a fixed time, seeded from real inputs (the shared
photos, the test images, the committed events and URLs of the SSRF tests), with libFuzzer's memory limit.
An input that makes a target raise anything but the API's own errors is saved under `build/fuzz/crashes/`; the
command exits 1 if any was found. The time per target is the bound: `--seconds` (default 60).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_DIR / "build" / "fuzz"
PHOTOS_DIR = REPO_DIR.parent / "shared" / "photos"
TARGET_NAMES = ("decoder", "upload", "url", "request")

WORKER = """
import sys
import atheris
with atheris.instrument_imports(include=["lambda_function", "PIL", "idna", "urllib"]):
    from fuzz.targets import TARGETS
target = TARGETS[sys.argv[1]]
atheris.Setup(sys.argv[1:], target)
atheris.Fuzz()
"""


def seeds(target: str) -> list[bytes]:
    """Real inputs for `target` to start from."""
    from PIL import Image

    photos = sorted((PHOTOS_DIR / "cats").glob("*.jpg"))[:3]
    small = Image.open(photos[0]).convert("RGB").resize((48, 36)) if photos else Image.new("RGB", (48, 36))
    images = []
    for image_format, mode in (
        ("PNG", "RGBA"),
        ("PNG", "P"),
        ("WEBP", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("TIFF", "I;16"),
        ("JPEG", "RGB"),
        ("JPEG", "CMYK"),
        ("PNG", "LA"),
    ):
        buffer = io.BytesIO()
        small.convert(mode if mode != "I;16" else "I").convert(mode).save(buffer, format=image_format)
        images.append(buffer.getvalue())
    if target == "decoder":
        return images
    if target == "upload":
        import base64

        return [base64.b64encode(images[0]), b"data:image/png;base64," + base64.b64encode(images[1]), b"data:,x"]
    if target == "url":
        return [
            b"http://example.com/cat.jpg",
            b"https://[::1]:8443/a?b=c",
            b"http://\xe4\xbe\x8b\xe3\x81\x88.jp/",
            b"http://0x7f.0.0.1/",
            b"http://user@host/",
            b"http://2130706433/",
        ]
    events = [json.loads(p.read_text())["body"] for p in sorted((REPO_DIR / "events").glob("predict*.json"))]
    return [body.encode() for body in events if body] + [b'{"url": "http://a/", "top_k": 3}']


def fuzz(target: str, seconds: int, rss_limit_mb: int) -> int:
    """Fuzz one target; the number of crashing inputs saved."""
    corpus = WORK_DIR / "corpus" / target
    crashes = WORK_DIR / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds(target)):
        (corpus / f"seed-{index}").write_bytes(seed)
    before = set(crashes.glob(f"{target}-*"))
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            target,
            f"-max_total_time={seconds}",
            f"-rss_limit_mb={rss_limit_mb}",
            "-timeout=10",
            "-seed=1",
            f"-artifact_prefix={crashes}/{target}-",
            str(corpus),
        ],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    found = sorted(set(crashes.glob(f"{target}-*")) - before)
    summary = next(
        (
            line
            for line in reversed(completed.stderr.splitlines())
            if "stat::number_of_executed_runs" in line or line.startswith("Done")
        ),
        "",
    )
    print(f"{target}: {seconds} s, exit {completed.returncode}, {len(found)} crash(es) {summary}".rstrip(), flush=True)
    if completed.returncode != 0 and not found:
        print(completed.stderr[-3000:], file=sys.stderr)
        return 1
    for path in found:
        print(f"  saved {path.relative_to(REPO_DIR)}", flush=True)
    return len(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    parser.add_argument("--rss-limit-mb", type=int, default=1024, help="libFuzzer's memory limit per process")
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGET_NAMES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.targets) - set(TARGET_NAMES))
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    failures = sum(fuzz(target, args.seconds, args.rss_limit_mb) for target in args.targets or TARGET_NAMES)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
