"""A memory cgroup of the test's own, as a pod's memory limit: cgroup v2 (`memory.max`) or v1
(`memory.limit_in_bytes`), whichever the machine mounts. Needs root, as `make test` runs here."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A new cgroup limited to `limit_bytes` of memory; yields the file a process joins it through (write its pid)."""
    v2 = (CGROUP_ROOT / "cgroup.controllers").exists()
    parent = CGROUP_ROOT if v2 else CGROUP_ROOT / "memory"
    group = parent / f"cat-breeds-test-{os.getpid()}-{time.monotonic_ns()}"
    group.mkdir()
    try:
        (group / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit_bytes))
        if not v2:
            with contextlib.suppress(OSError):  # no swap beyond the limit, as a pod without swap
                (group / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        yield group / "cgroup.procs"
    finally:
        for _ in range(50):  # the processes it held are gone once their server stopped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def oom_kills(procs_file: Path) -> int:
    """How many processes the cgroup's memory limit has killed."""
    v2 = (CGROUP_ROOT / "cgroup.controllers").exists()
    events = procs_file.parent / ("memory.events" if v2 else "memory.oom_control")
    for line in events.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    return 0
