"""GPU slots: concurrent jobs on one node each lock a different GPU (no GPU needed).

The holders are real processes, because flock excludes open file descriptions across
processes and the kernel's release after SIGKILL is the behaviour under test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dimcollapse.extraction.gpu_slots import acquire_gpu, count_gpus, physical_gpu, slurm_allocated, visible_gpus
from workflow_helpers import REPO

#: A job: claim a slot, report it (and the environment CUDA would see), hold it until killed.
HOLDER = """
import json, os, sys, time
from dimcollapse.extraction.gpu_slots import acquire_gpu
timeout = float(sys.argv[2]) if len(sys.argv) > 2 else None
try:
    slot = acquire_gpu(sys.argv[1], timeout=timeout)
except TimeoutError as err:
    print(json.dumps({"timeout": str(err)}), flush=True)
    sys.exit(3)
print(json.dumps({"device": slot.device, "slot": slot.slot, "cvd": os.environ["CUDA_VISIBLE_DEVICES"],
                  "t": time.monotonic()}), flush=True)
time.sleep(120)
"""


def _start(lock_dir: Path, devices: str, timeout: float | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": devices, "PYTHONPATH": str(REPO)}
    env.pop("SLURM_JOB_ID", None)
    args = [sys.executable, "-c", HOLDER, str(lock_dir)] + ([str(timeout)] if timeout is not None else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)


def _report(proc: subprocess.Popen[str]) -> dict:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"holder exited with {proc.wait()}"
    return json.loads(line)


@pytest.fixture
def holders():
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_concurrent_jobs_get_distinct_gpus_and_the_next_one_waits(tmp_path: Path, holders) -> None:
    devices = "4,5,7"  # an existing CUDA_VISIBLE_DEVICES: slots map onto its entries
    holders += [_start(tmp_path, devices) for _ in range(3)]
    reports = [_report(p) for p in holders]
    assert sorted(r["device"] for r in reports) == ["4", "5", "7"]
    assert all(r["cvd"] == r["device"] for r in reports)  # each job sees only its own GPU
    assert sorted(r["slot"] for r in reports) == [0, 1, 2]

    extra = _start(tmp_path, devices, timeout=0.5)  # a 4th job: every GPU is taken
    holders.append(extra)
    assert "timeout" in _report(extra) and extra.wait(timeout=30) == 3

    waiting = _start(tmp_path, devices, timeout=60)
    holders.append(waiting)
    time.sleep(1.0)
    assert waiting.poll() is None  # still waiting for a slot
    victim = next(p for p, r in zip(holders, reports) if r["device"] == "5")
    victim.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the lock
    victim.wait()
    killed_at = time.monotonic()
    got = _report(waiting)
    assert got["device"] == "5" and got["cvd"] == "5"
    assert got["t"] - killed_at < 10  # the back-off is capped, so the wait ends soon after


def test_jobs_with_different_device_lists_agree_on_a_gpu(tmp_path: Path, holders) -> None:
    holders.append(_start(tmp_path, "1"))
    assert _report(holders[0])["device"] == "1"
    holders.append(_start(tmp_path, "0,1"))
    assert _report(holders[1])["device"] == "0"  # "1" is held, whatever its position in the list


def test_lock_directory_is_created_and_names_the_holder(tmp_path: Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "GPU-8f2a,GPU-77c1"}
    lock_dir = tmp_path / "node-local" / "locks"
    slot = acquire_gpu(lock_dir, env=env)  # held by this test process until it exits
    assert slot is not None and slot.source == "lock" and slot.n_slots == 2
    assert env["CUDA_VISIBLE_DEVICES"] == slot.device == "GPU-8f2a"
    assert slot.lock == lock_dir / "gpu-GPU-8f2a.lock"
    assert slot.lock.read_text().startswith(f"pid {os.getpid()} ")


def test_slurm_allocation_is_kept(tmp_path: Path) -> None:
    env = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "2,3", "SLURM_JOB_GPUS": "2,3"}
    slot = acquire_gpu(tmp_path / "locks", env=env)
    assert slot is not None and slot.source == "slurm" and slot.lock is None
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"  # unchanged
    assert not (tmp_path / "locks").exists()  # nothing locked
    assert slurm_allocated({"SLURM_JOB_ID": "42", "SLURM_STEP_GPUS": "0"})
    assert not slurm_allocated({"SLURM_JOB_ID": "42"})  # a Slurm job without GPUs takes a slot as usual
    assert not slurm_allocated({"CUDA_VISIBLE_DEVICES": "0"})


def test_no_visible_gpu_means_no_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for hidden in ("", "-1"):
        env = {"CUDA_VISIBLE_DEVICES": hidden}
        assert acquire_gpu(tmp_path, env=env) is None and env["CUDA_VISIBLE_DEVICES"] == hidden
    monkeypatch.setattr("dimcollapse.extraction.gpu_slots.shutil.which", lambda name: None)  # no nvidia-smi
    env = {}
    assert acquire_gpu(tmp_path / "locks", env=env, proc_dir=tmp_path / "absent") is None
    assert env == {} and not (tmp_path / "locks").exists()


def test_gpus_are_counted_from_the_driver_without_cuda(tmp_path: Path) -> None:
    proc = tmp_path / "gpus"
    for bus in ("0000:07:00.0", "0000:0a:00.0"):
        (proc / bus).mkdir(parents=True)
    assert count_gpus(proc) == 2
    assert visible_gpus({}, proc) == ["0", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3, 1"}, proc) == ["3", "1"]
    assert physical_gpu({"CUDA_VISIBLE_DEVICES": "3,1"}) == "3" and physical_gpu({}) == "0"


def test_nvidia_smi_listing_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-2)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert count_gpus(tmp_path / "absent") == 2


class _Named(list):
    """The bits of Snakemake's Namedlist that ``stages.extract.extract`` uses."""

    def __init__(self, **items: object) -> None:
        super().__init__(items.values())
        self.__dict__.update(items)

    def items(self):
        return self.__dict__.items()

    def get(self, key: str, default: object = None) -> object:
        return self.__dict__.get(key, default)


def test_extract_stage_claims_a_gpu_before_extraction_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import ModuleType, SimpleNamespace

    from dimcollapse.stages import extract

    seen: dict[str, object] = {}
    fake = ModuleType("dimcollapse.extraction.extract")
    fake.extract_shard = lambda **kw: seen.update(cvd=os.environ["CUDA_VISIBLE_DEVICES"])
    monkeypatch.setitem(sys.modules, "dimcollapse.extraction.extract", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    run = {"device": "auto", "gpu_lock_dir": str(tmp_path / "locks"), "batch_size": 2, "loader_workers": 0,
           "flush_every": 8}  # the rule's resources (rules/common.smk: EXTRACTION_RUN)
    smk = SimpleNamespace(
        log=[str(tmp_path / "extract.log")], rule="extract", threads=1, resources=SimpleNamespace(**run),
        wildcards=_Named(dataset="d", method="m", shard="0", nshards="1"),
        params=SimpleNamespace(job={}, max_rel_error=0.01), input=_Named(manifest="m.csv"), output=["out.npz"],
    )
    extract.extract(smk)
    assert seen["cvd"] == "6" and (tmp_path / "locks" / "gpu-6.lock").is_file()
    seen.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")
    extract.extract(SimpleNamespace(**{**vars(smk), "resources": SimpleNamespace(**{**run, "device": "cpu"})}))
    assert seen["cvd"] == "6,7"  # a CPU job leaves the GPUs alone


def test_claiming_a_gpu_does_not_load_torch() -> None:
    """CUDA reads CUDA_VISIBLE_DEVICES once: the extract script's path up to the claim stays torch-free."""
    code = ("import sys; from dimcollapse.stages import extract; from dimcollapse.extraction import gpu_slots; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
