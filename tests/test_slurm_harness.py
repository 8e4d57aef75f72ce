"""The Slurm profile and the real-Slurm test harness, proven on a toy workflow.

The toy workflow has one CPU rule (using the profile's default resources) and one
GPU rule (`resources: gpu=1` plus its own memory and time limit). Run through the
private cluster with `--workflow-profile profiles/slurm`, each rule must become a
Slurm job that the controller scheduled and completed, the GPU rule's job must have
been allocated the (fake) GPU, and the resources must reach sbatch as the profile
documents.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import slurm_cluster as harness
from slurm_cluster import SLURM_PROFILE, SlurmCluster, running_cluster, slurm  # noqa: F401

TOY_SNAKEFILE = """\
localrules: all


rule all:
    input:
        "results/gpu.txt",


rule cpu_step:
    output:
        "results/cpu.txt",
    log:
        "logs/cpu_step.log",
    threads: {threads}
    conda:
        "envs/toy.yaml"
    shell:
        'echo "job=$SLURM_JOB_ID cpus=$SLURM_CPUS_PER_TASK" > {{output}} 2> {{log}}'


rule gpu_step:
    input:
        "results/cpu.txt",
    output:
        "results/gpu.txt",
    log:
        "logs/gpu_step.log",
    resources:
        gpu=1,
        mem_mb=500,
        runtime=5,
    conda:
        "envs/toy.yaml"
    shell:
        'echo "job=$SLURM_JOB_ID gpus=$CUDA_VISIBLE_DEVICES" > {{output}} 2> {{log}}'
"""


def write_toy_workflow(root: Path, threads: int) -> Path:
    (root / "envs").mkdir(parents=True)
    (root / "envs" / "toy.yaml").write_text("channels: [conda-forge]\ndependencies: [python=3.11]\n")
    snakefile = root / "Snakefile"
    snakefile.write_text(TOY_SNAKEFILE.format(threads=threads))
    return snakefile


def parse_kv(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


# --------------------------------------------------------------------- profile alone


def test_profile_is_lint_clean_and_sets_cluster_options(tmp_path: Path) -> None:
    # --lint parses every profile key as a command-line option (an unknown key or an
    # invalid plugin value such as a wrong status command exits non-zero).
    snakefile = write_toy_workflow(tmp_path, threads=1)
    lint = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--workflow-profile", str(SLURM_PROFILE), "--snakefile", str(snakefile)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "in a good condition" in lint.stdout + lint.stderr

    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"  # works without slurmdbd
    assert profile["retries"] >= 1 and profile["slurm-requeue"] is True
    assert profile["rerun-incomplete"] is True
    resources = profile["default-resources"]
    assert {"runtime", "mem_mb", "cpus_per_task"} <= set(resources)
    # Partition and account are the user's to set: none that only exists somewhere.
    assert "slurm_partition" not in resources and "slurm_account" not in resources


# --------------------------------------------------------------------- skip policy


def test_not_root_is_a_skip_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(harness.SlurmUnavailable, match="root"):
        harness.ensure_slurm_installed()


def _fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    apt = bindir / "apt-get"
    apt.write_text(f"#!/bin/sh\necho {output!r} >&2\nexit 100\n")
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(harness, "missing_binaries", lambda: ["slurmctld"])


def test_unreachable_registry_is_a_skip_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_apt(tmp_path, monkeypatch, "W: Failed to fetch http://deb.debian.org/x  Temporary failure resolving 'deb.debian.org'")
    with pytest.raises(harness.SlurmUnavailable, match="no package registry reachable"):
        harness.ensure_slurm_installed()


def test_other_install_failure_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_apt(tmp_path, monkeypatch, "E: dpkg was interrupted, you must manually run 'dpkg --configure -a'")
    with pytest.raises(harness.SlurmError, match="dpkg was interrupted"):
        harness.ensure_slurm_installed()


# --------------------------------------------------------------------- real Slurm


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.xdist_group("slurm")  # one worker, one session cluster for all Slurm tests
def test_toy_workflow_runs_each_rule_as_a_slurm_job(slurm: SlurmCluster, tmp_path: Path) -> None:  # noqa: F811
    threads = min(2, os.cpu_count() or 1)
    snakefile = write_toy_workflow(tmp_path, threads)
    run = slurm.snakemake(tmp_path, "--snakefile", str(snakefile), "all")

    jobs = {job.rule: job for job in slurm.jobs_of(run)}
    assert sorted(jobs) == ["cpu_step", "gpu_step"]  # `all` is a local rule
    assert sorted(run.submitted_job_ids) == sorted(job.job_id for job in jobs.values())
    for job in jobs.values():
        assert (job.state, job.exit_code, job.partition) == ("COMPLETED", "0:0", slurm.partition)
    # slurmctld's job-completion log recorded both as completed.
    completed = slurm.jobcomp_records()
    assert all(completed.get(job.job_id) == "COMPLETED" for job in jobs.values()), completed

    cpu, gpu = jobs["cpu_step"], jobs["gpu_step"]
    # GPU rule: sbatch --gpus=1, and Slurm allocated the node's GPU to it.
    assert (gpu.requested_gpus, gpu.gpus) == (1, 1)
    assert (cpu.requested_gpus, cpu.gpus) == (0, 0)
    # Profile defaults (attempt 1) for the CPU rule; the GPU rule's own resources win.
    assert (cpu.min_memory, cpu.time_limit, cpu.num_cpus) == ("4000M", "01:00:00", threads)
    assert (gpu.min_memory, gpu.time_limit, gpu.num_cpus) == ("500M", "00:05:00", 1)

    # The rules' shell commands ran inside those jobs.
    cpu_out = parse_kv((tmp_path / "results" / "cpu.txt").read_text())
    gpu_out = parse_kv((tmp_path / "results" / "gpu.txt").read_text())
    assert cpu_out == {"job": str(cpu.job_id), "cpus": str(threads)}
    # CUDA_VISIBLE_DEVICES: the index of the one (fake) GPU Slurm gave the job.
    assert gpu_out["job"] == str(gpu.job_id)
    assert gpu_out["gpus"] in {str(i) for i in range(slurm.gpus)}

    # Nothing stale: a second run submits no job.
    again = slurm.snakemake(tmp_path, "--snakefile", str(snakefile), "all")
    assert again.submitted_job_ids == []
    assert "Nothing to be done" in again.output


def require_slurm() -> None:
    try:
        harness.ensure_slurm_installed()
    except harness.SlurmUnavailable as exc:
        pytest.skip(f"no real Slurm: {exc}")


@pytest.mark.slurm
def test_teardown_stops_daemons_and_jobs_on_interrupt() -> None:
    require_slurm()
    holder: dict[str, SlurmCluster] = {}
    with pytest.raises(KeyboardInterrupt):
        with running_cluster() as cluster:
            holder["cluster"] = cluster
            submitted = cluster.run(["sbatch", "--parsable", "--mem=100", "--output=/dev/null", "--wrap", "sleep 300"])
            assert submitted.returncode == 0, submitted.stderr
            job_id = int(submitted.stdout.strip())
            for _ in range(40):
                if any(j.job_id == job_id and j.state == "RUNNING" for j in cluster.jobs()):
                    break
                time.sleep(0.25)
            for _ in range(40):  # RUNNING in slurmctld comes before slurmd has started the step
                if harness._processes_of(cluster):
                    break
                time.sleep(0.25)
            assert harness._processes_of(cluster), "the running job's processes should be visible"
            raise KeyboardInterrupt
    cluster = holder["cluster"]
    assert set(cluster.stopped) == {"munged", "slurmctld", "slurmd"}
    assert all(proc.returncode is not None for proc in cluster.processes.values())
    assert not any(harness.is_alive(pid) for pid in cluster.daemon_pids.values())
    assert harness._processes_of(cluster) == {}
    assert cluster.leftovers_killed == []  # the job was cancelled through Slurm, not killed by us
    assert not cluster.root.exists()



KILLED_HOLDER = """
import sys, time
sys.path.insert(0, {tests!r})
from slurm_cluster import running_cluster
with running_cluster() as cluster:
    job = cluster.run(["sbatch", "--parsable", "--mem=100", "--output=/dev/null", "--wrap", "sleep 300"])
    assert job.returncode == 0, job.stderr
    while not any(j.state == "RUNNING" for j in cluster.jobs()):
        time.sleep(0.25)
    print(cluster.root, cluster.marker, *cluster.daemon_pids.values(), flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.slurm
def test_nothing_survives_when_the_test_process_is_killed() -> None:
    # SIGKILL allows no teardown: the daemons get their parent-death signal and the
    # watchdog stops the orphaned job processes and deletes the cluster directory.
    require_slurm()
    holder = subprocess.Popen(
        [sys.executable, "-c", KILLED_HOLDER.format(tests=str(Path(__file__).parent))],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = holder.stdout.readline().split()
        assert line, "the cluster holder did not start"
        root, marker, daemon_pids = Path(line[0]), line[1], [int(pid) for pid in line[2:]]
        assert harness._cluster_processes(root, marker, set(daemon_pids)), "job processes should be running"
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not harness._cluster_processes(root, marker, set()) and not any(map(harness.is_alive, daemon_pids)) and not root.exists():
            break
        time.sleep(0.5)
    assert not any(map(harness.is_alive, daemon_pids))
    assert harness._cluster_processes(root, marker, set()) == {}
    assert not root.exists()
