"""The CPUs and memory this container may use, which is not what the host has.

In a Kubernetes pod, the affinity mask and `os.cpu_count()` show the node's CPUs (16 on a 16-vCPU node), while
the pod may use one CPU and 1 GiB. Sizing workers, inference threads and concurrent decodes by the node's count
let a burst of hostile images take 16 x 250 MB in a 1 GiB pod, and the kernel's OOM killer end it. The limits
are read from cgroup v2 (`cpu.max`, `memory.max`, as Kubernetes and Docker set them) and, on Lambda, from the
function's memory size; a value that is not there (no cgroup v2, no limit) is None, and callers fall back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CGROUP_DIR = Path("/sys/fs/cgroup")  # cgroup v2's unified hierarchy, as a container sees its own group
# What one serving process holds before it decodes anything: the runtime, the model and its interpreter (make
# bench measured a peak of 145 MB for the default model; rounded up for larger models and allocator slack).
PROCESS_BASELINE_BYTES = 200_000_000
# The share of the memory limit the processes plan to use; the rest is headroom for what nobody measured.
MEMORY_HEADROOM = 0.85


@dataclass(frozen=True)
class ContainerLimits:
    """The container's CPU limit (in CPUs, possibly fractional) and memory limit (bytes); None: no limit known."""

    cpus: float | None
    memory_bytes: int | None

    @classmethod
    def read(cls, env: Mapping[str, str], cgroup_dir: Path = CGROUP_DIR) -> ContainerLimits:
        """The limits of this container: cgroup v2's, and on Lambda its memory size (the smaller wins)."""
        memory = _cgroup_memory_bytes(cgroup_dir)
        lambda_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        if lambda_mb.isdigit():
            lambda_bytes = int(lambda_mb) * 1024 * 1024
            memory = lambda_bytes if memory is None else min(memory, lambda_bytes)
        return cls(cpus=_cgroup_cpus(cgroup_dir), memory_bytes=memory)

    def usable_cpus(self, affinity_cpus: int) -> int:
        """CPUs worth a thread or a process: the affinity mask's count, capped by the CPU limit (rounded up)."""
        if self.cpus is None:
            return max(1, affinity_cpus)
        return max(1, min(affinity_cpus, math.ceil(self.cpus)))

    def decode_slots(self, processes: int, cpus: int, decode_budget_bytes: int) -> int:
        """Images one process may decode at once: one per CPU it has, and no more than the memory limit holds
        when every process decodes that many images of the decoder's whole budget. Never below 1 (a process
        that cannot decode one image answers nothing); `fits_one_decode_per_process` says whether even that
        fits."""
        per_process = max(1, math.ceil(cpus / processes))
        if self.memory_bytes is None:
            return per_process
        spare = self.memory_bytes * MEMORY_HEADROOM - processes * PROCESS_BASELINE_BYTES
        by_memory = int(spare // (processes * decode_budget_bytes))
        return max(1, min(per_process, by_memory))

    def fits_one_decode_per_process(self, processes: int, decode_budget_bytes: int) -> bool:
        if self.memory_bytes is None:
            return True
        needed = processes * (PROCESS_BASELINE_BYTES + decode_budget_bytes)
        return needed <= self.memory_bytes * MEMORY_HEADROOM


def _cgroup_cpus(cgroup_dir: Path) -> float | None:
    """`cpu.max` is "QUOTA PERIOD" in microseconds, or "max PERIOD" for no limit."""
    text = _read(cgroup_dir / "cpu.max")
    if text is None:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max" or not quota.isdigit() or not period.strip().isdigit() or int(period) == 0:
        return None
    return int(quota) / int(period)


def _cgroup_memory_bytes(cgroup_dir: Path) -> int | None:
    """`memory.max` is a byte count, or "max" for no limit."""
    text = _read(cgroup_dir / "memory.max")
    return int(text) if text is not None and text.isdigit() else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def affinity_cpus() -> int:
    """CPUs the scheduler lets this process run on (the node's, in a pod without CPU pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
