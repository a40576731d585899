"""Coverage-guided fuzzing of the service's parsers with atheris: `make fuzz` (or `python -m fuzz.run`).

Each target in `fuzz/targets.py` runs in its own process for a fixed time, seeded from real inputs (the shared
photos, the test images, the committed events and URLs of the SSRF tests), with libFuzzer's memory limit.
An input that makes a target raise anything but the API's own errors is saved under `build/fuzz/crashes/`; the
command exits 1 if any was found. The time per target is the bound: `--seconds` (default 60).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from fuzz.targets import TARGETS

REPO_DIR = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_DIR / "build" / "fuzz"

WORKER = """
import sys
import atheris
with atheris.instrument_imports(include=["lambda_function", "PIL", "idna", "urllib"]):
    from fuzz.targets import TARGETS
target = TARGETS[sys.argv[1]].check
atheris.Setup(sys.argv[1:], target)
atheris.Fuzz()
"""


def fuzz(target: str, seconds: int, rss_limit_mb: int) -> int:
    """Fuzz one target; the number of crashing inputs saved."""
    corpus = WORK_DIR / "corpus" / target
    crashes = WORK_DIR / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(TARGETS[target].seeds()):
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
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    failures = sum(fuzz(target, args.seconds, args.rss_limit_mb) for target in args.targets or TARGETS)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
