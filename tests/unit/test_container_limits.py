"""Concurrent decodes follow the container's CPU and memory limits, not the host's CPU count."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import lambda_function.datapath.service as service_module
from lambda_function.container_limits import MEMORY_HEADROOM, PROCESS_BASELINE_BYTES, ContainerLimits
from lambda_function.datapath.preprocessing import DECODE_MEMORY_BUDGET_BYTES
from lambda_function.datapath.service import BreedService
from lambda_function.settings import Settings, SettingsError
from tests.conftest import CAT_PHOTOS

GIB = 1024**3


def cgroup(tmp_path: Path, cpu_max: str | None, memory_max: str | None) -> Path:
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    if memory_max is not None:
        (tmp_path / "memory.max").write_text(memory_max + "\n")
    return tmp_path


def test_a_pods_limits_are_read_from_cgroup_v2(tmp_path):
    limits = ContainerLimits.read({}, cgroup(tmp_path, "150000 100000", str(GIB)))

    assert limits == ContainerLimits(cpus=1.5, memory_bytes=GIB)
    assert limits.usable_cpus(affinity_cpus=16) == 2  # the node's 16 CPUs are not the pod's


@pytest.mark.parametrize(("cpu_max", "memory_max"), [("max 100000", "max"), (None, None), ("junk", "lots")])
def test_no_limit_or_no_cgroup_means_no_cap(tmp_path, cpu_max, memory_max):
    limits = ContainerLimits.read({}, cgroup(tmp_path, cpu_max, memory_max))

    assert limits == ContainerLimits(cpus=None, memory_bytes=None)
    assert limits.usable_cpus(affinity_cpus=16) == 16


def test_on_lambda_the_function_memory_is_the_limit(tmp_path):
    limits = ContainerLimits.read({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}, cgroup(tmp_path, None, "max"))

    assert limits.memory_bytes == 1769 * 1024 * 1024


def test_a_1_gib_pod_on_a_16_cpu_node_decodes_one_image_at_a_time_per_process():
    settings = Settings(container=ContainerLimits(cpus=1.0, memory_bytes=GIB))

    assert settings.decode_slots(processes=1, decode_budget_bytes=DECODE_MEMORY_BUDGET_BYTES) == 1


@pytest.mark.parametrize("memory_gib", [0.5, 1, 2, 4, 8, 16])
@pytest.mark.parametrize("cpus", [0.5, 1, 2, 4, 16])
@pytest.mark.parametrize("processes", [1, 2, 4, 16])
def test_the_admitted_decodes_never_exceed_what_the_memory_limit_holds(memory_gib, cpus, processes):
    limits = ContainerLimits(cpus=cpus, memory_bytes=int(memory_gib * GIB))
    usable = limits.usable_cpus(affinity_cpus=16)

    slots = limits.decode_slots(processes, usable, DECODE_MEMORY_BUDGET_BYTES)

    assert 1 <= slots <= max(1, -(-usable // processes))  # at most one per CPU of the process's share
    if limits.fits_one_decode_per_process(processes, DECODE_MEMORY_BUDGET_BYTES):
        planned = processes * (PROCESS_BASELINE_BYTES + slots * DECODE_MEMORY_BUDGET_BYTES)
        assert planned <= limits.memory_bytes * MEMORY_HEADROOM


def test_decode_concurrency_is_a_setting_that_overrides_the_limits():
    settings = Settings.from_env({"DECODE_CONCURRENCY": "3"})

    assert settings.decode_slots(processes=4, decode_budget_bytes=DECODE_MEMORY_BUDGET_BYTES) == 3
    with pytest.raises(SettingsError, match="DECODE_CONCURRENCY"):
        Settings.from_env({"DECODE_CONCURRENCY": "0"})


def test_the_service_decodes_no_more_images_at_once_than_its_slots(model_path, monkeypatch):
    service = BreedService(Settings(model_path=model_path, inference_threads=1, decode_concurrency=2))
    requests = 8
    running, most, entered = 0, 0, 0
    changed = threading.Condition()
    real_prepare = service_module.prepare_image

    def counting_prepare(*args, **kwargs):  # the real decode, once every slot is taken (or no request is left)
        nonlocal running, most, entered
        with changed:
            running, entered = running + 1, entered + 1
            most = max(most, running)
            changed.notify_all()
            changed.wait_for(lambda: running >= 2 or entered == requests, timeout=30)
        try:
            return real_prepare(*args, **kwargs)
        finally:
            with changed:
                running -= 1
                changed.notify_all()

    monkeypatch.setattr(service_module, "prepare_image", counting_prepare)
    photo = CAT_PHOTOS[0].read_bytes()
    threads = [threading.Thread(target=service.classify_bytes, args=(photo, 1)) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert service.decode_slots == 2
    assert most == 2
