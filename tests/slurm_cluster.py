"""A real single-node Slurm cluster for the test suite.

Why a real one: the workflow's cluster promises (profile options, ``--gpus`` for GPU
rules, status polling without accounting) are only believable when an actual
``slurmctld``/``slurmd`` pair schedules the jobs. This module installs Slurm and
MUNGE with apt when they are missing, writes a private configuration (one node with
the machine's real CPUs and memory and fake GPUs - two by default, so two GPU
shards can run side by side), starts ``munged``, ``slurmctld`` and ``slurmd`` in the
foreground as our own child processes, and stops them again by PID.

Nothing global is touched besides the apt install: configuration, MUNGE key and
socket, state, spool, logs and the job-completion record live in one temporary
directory, and the daemons listen on free ports, so two clusters (two pytest-xdist
workers) can run side by side.

Use it from a test through the session fixture ``slurm`` (import it into the
test module), or directly with ``running_cluster()``::

    from slurm_cluster import slurm  # noqa: F401  (pytest fixture)

    def test_demo_on_slurm(slurm, tmp_path):
        run = slurm.snakemake(tmp_path, "--snakefile", str(snakefile), "all")
        jobs = slurm.jobs_of(run)
        assert sorted(j.rule for j in jobs if j.gpus == 1) == ["extract", "extract"]

The fixture skips (visibly) only when Slurm cannot be had here: not root, no
apt-get, or no package registry reachable. Any other problem is an error that
carries the daemon logs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SLURM_PROFILE = REPO_ROOT / "profiles" / "slurm"

# Daemons and the client commands that Snakemake's Slurm executor calls.
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel", "sacct")
APT_PACKAGES = ("slurm-wlm", "munge")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PARTITION = "debug"
# Character devices that stand in for /dev/nvidiaN (one per fake GPU).
FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")
# Jobs stay visible to `squeue`/`scontrol` this long after they end. The executor
# polls with `squeue` (no accounting database here), which needs MinJobAge >= 120 s;
# an hour also keeps every job of a long test session inspectable.
MIN_JOB_AGE_S = 3600

# Every process of a test cluster (daemons, Snakemake, jobs) carries this variable,
# set to a value unique to the cluster, so that leftovers can be found and stopped.
MARKER_VAR = "DIMCOLLAPSE_SLURM_TEST_CLUSTER"

# Settings a test run adds on top of the profile so that status polling does not
# dominate the run time (the plugin's default first poll comes after 40 s).
FAST_STATUS_ARGS = (
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
)

# apt output that means "no package registry reachable" rather than a broken system.
_NETWORK_ERRORS = re.compile(
    r"Temporary failure resolving|Could not resolve|Failed to fetch|Unable to fetch|"
    r"Could not connect|Network is unreachable|Connection timed out|Unable to locate package",
)


class SlurmUnavailable(Exception):
    """Slurm cannot be provided on this machine (a reason to skip, not to fail)."""


class SlurmError(RuntimeError):
    """The cluster did not start or stop as it should (a test failure)."""


# --------------------------------------------------------------------------- install


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH)


def missing_binaries() -> list[str]:
    """Names of the Slurm/MUNGE programs that are not installed."""
    return [name for name in (*DAEMONS, *CLIENTS) if _which(name) is None]


def ensure_slurm_installed(timeout_s: float = 900.0) -> None:
    """Install ``slurm-wlm`` and ``munge`` with apt if any program is missing.

    Raises ``SlurmUnavailable`` where it cannot be done here (not root, no apt-get,
    no registry reachable) and ``SlurmError`` for any other install failure.
    """
    if os.geteuid() != 0:
        raise SlurmUnavailable(
            "a real Slurm needs root (to install slurm-wlm/munge and run slurmd); "
            f"running as uid {os.geteuid()}"
        )
    if not missing_binaries():
        return
    apt = _which("apt-get")
    if apt is None:
        raise SlurmUnavailable(f"Slurm is not installed ({', '.join(missing_binaries())} missing) and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SYSTEM_PATH}
    install = [apt, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", *APT_PACKAGES]

    def attempt(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)

    result = attempt(install)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        # A fresh machine may have no package lists yet.
        update = attempt([apt, "-o", "DPkg::Lock::Timeout=300", "update"])
        result = attempt(install)
        output = update.stdout + update.stderr + result.stdout + result.stderr
    if result.returncode != 0:
        if _NETWORK_ERRORS.search(output):
            raise SlurmUnavailable(
                f"cannot install slurm-wlm/munge: no package registry reachable ({_last_lines(output, 3)})"
            )
        raise SlurmError(f"apt-get install {' '.join(APT_PACKAGES)} failed:\n{_last_lines(output, 40)}")
    still_missing = missing_binaries()
    if still_missing:
        raise SlurmError(f"after installing {' '.join(APT_PACKAGES)}, still missing: {', '.join(still_missing)}")


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SlurmJob:
    """One job as ``scontrol show job`` reports it (kept for MinJobAge after it ends)."""

    job_id: int
    name: str
    state: str
    exit_code: str
    comment: str
    partition: str
    num_cpus: int
    min_memory: str
    time_limit: str
    tres_per_job: str
    allocated_gres: str
    fields: dict[str, str] = field(repr=False, compare=False)

    @property
    def rule(self) -> str | None:
        """Snakemake rule name: the executor puts ``rule_<name>[_wildcards_<w>]`` in the comment."""
        if not self.comment.startswith("rule_"):
            return None
        return self.comment[len("rule_"):].split("_wildcards_", 1)[0]

    @property
    def wildcards(self) -> str:
        parts = self.comment.split("_wildcards_", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def gpus(self) -> int:
        """GPUs Slurm allocated to the job (from ``JOB_GRES``; ``gpu:1`` or ``gpu:type:1``)."""
        return _gres_count(self.allocated_gres, "gpu")

    @property
    def requested_gpus(self) -> int:
        """GPUs the job asked for (``TresPerJob=gres:gpu:1`` from ``sbatch --gpus=1``)."""
        return _gres_count(self.tres_per_job.replace("gres:", "").replace("gres/", ""), "gpu")


def _gres_count(spec: str, name: str) -> int:
    total = 0
    for item in spec.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == name:
            total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total


def _parse_scontrol_line(line: str) -> dict[str, str]:
    """``Key=value`` pairs of one ``scontrol -o`` line; values may contain spaces."""
    fields: dict[str, str] = {}
    key = None
    for token in line.split(" "):
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_:/]*)=(.*)$", token)
        if match:
            key = match.group(1)
            # -d repeats per-node keys (Nodes=, Mem=, GRES=): the first keeps the
            # plain name, later ones become Key#1, Key#2, ...
            if key in fields:
                key = f"{key}#{sum(k.split('#')[0] == key for k in fields)}"
            fields[key] = match.group(2)
        elif key is not None and token:
            fields[key] += " " + token
    return fields


@dataclass(frozen=True)
class SnakemakeRun:
    """A finished ``snakemake`` invocation under the cluster."""

    args: tuple[str, ...]
    returncode: int
    output: str
    run_id: str | None

    @property
    def submitted_job_ids(self) -> list[int]:
        return [int(m) for m in re.findall(r"has been submitted with SLURM jobid (\d+)", self.output)]


# --------------------------------------------------------------------------- cluster


@dataclass
class SlurmCluster:
    """Handle on a running cluster: its environment, job records and logs."""

    root: Path
    node: str
    env: dict[str, str]
    marker: str
    gpus: int
    partition: str = PARTITION
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)
    leftovers_killed: list[str] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def jobcomp_file(self) -> Path:
        return self.root / "jobcomp.txt"

    @property
    def daemon_pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.processes.items()}

    def run(self, cmd: Sequence[str], *, cwd: Path | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command with the cluster's client environment (never raises on exit status)."""
        return subprocess.run(
            list(cmd), cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def snakemake(
        self,
        workdir: Path,
        *args: str,
        profile: Path | None = SLURM_PROFILE,
        timeout: float = 600.0,
        check: bool = True,
    ) -> SnakemakeRun:
        """Run ``python -m snakemake`` in ``workdir`` against this cluster.

        Adds ``--workflow-profile <profile>`` (the project's Slurm profile unless told
        otherwise) and ``FAST_STATUS_ARGS``; everything else comes from ``args``.
        With ``check`` a non-zero exit raises ``AssertionError`` carrying Snakemake's
        output, the Slurm job logs and the daemon logs.
        """
        cmd = [sys.executable, "-m", "snakemake"]
        if profile is not None:
            cmd += ["--workflow-profile", str(profile)]
        cmd += [*FAST_STATUS_ARGS, *args]
        try:
            proc = subprocess.run(
                cmd, cwd=workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=timeout, check=False, preexec_fn=_parent_death_signal(),
            )
            output, returncode = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            returncode = -1
            output += f"\n[timed out after {timeout} s]"
        match = re.search(r"SLURM run ID: (\S+)", output)
        run = SnakemakeRun(tuple(cmd), returncode, output, match.group(1) if match else None)
        if check and returncode != 0:
            raise AssertionError(
                f"snakemake failed (exit {returncode}): {shlex.join(cmd)}\n--- snakemake output ---\n"
                f"{_last_lines(output, 120)}\n{self._job_logs(workdir)}\n{self.daemon_logs()}"
            )
        return run

    def jobs(self) -> list[SlurmJob]:
        """Every job the controller still knows (all of this cluster's, given MinJobAge)."""
        result = self.run(["scontrol", "-o", "-d", "show", "job"])
        if result.returncode != 0:
            raise SlurmError(f"scontrol show job failed: {result.stderr.strip()}\n{self.daemon_logs()}")
        jobs = []
        for line in result.stdout.splitlines():
            if not line.startswith("JobId="):
                continue
            f = _parse_scontrol_line(line)
            jobs.append(
                SlurmJob(
                    job_id=int(f["JobId"]),
                    name=f.get("JobName", ""),
                    state=f.get("JobState", ""),
                    exit_code=f.get("ExitCode", ""),
                    comment=f.get("Comment", "(null)"),
                    partition=f.get("Partition", ""),
                    num_cpus=int(f.get("NumCPUs", "0")),
                    min_memory=f.get("MinMemoryNode", f.get("MinMemoryCPU", "")),
                    time_limit=f.get("TimeLimit", ""),
                    tres_per_job=f.get("TresPerJob", ""),
                    allocated_gres=f.get("JOB_GRES", "(null)"),
                    fields=f,
                )
            )
        return sorted(jobs, key=lambda j: j.job_id)

    def jobs_of(self, run: SnakemakeRun) -> list[SlurmJob]:
        """The Slurm jobs one Snakemake run submitted (the executor names them by its run ID)."""
        if run.run_id is None:
            raise AssertionError(f"no 'SLURM run ID' in Snakemake's output - was the slurm executor used?\n{_last_lines(run.output, 40)}")
        return [job for job in self.jobs() if job.name == run.run_id]

    def jobcomp_records(self) -> dict[int, str]:
        """JobId -> final JobState from the job-completion log (written by slurmctld when a job ends)."""
        records: dict[int, str] = {}
        if self.jobcomp_file.exists():
            for line in self.jobcomp_file.read_text().splitlines():
                f = _parse_scontrol_line(line)
                if "JobId" in f:
                    records[int(f["JobId"])] = f.get("JobState", "")
        return records

    def daemon_logs(self, lines: int = 60) -> str:
        """Tails of the daemons' logs, for failure messages.

        The log file where the daemon wrote one, else its captured stdout/stderr
        (early fatal errors, and munged, which logs to stderr in the foreground).
        """
        parts = []
        for name in DAEMONS:
            for path in (self.root / "log" / f"{name}.log", self.root / "log" / f"{name}.out"):
                if path.is_file() and path.stat().st_size:
                    text = _last_lines(path.read_text(errors="replace"), lines)
                    parts.append(f"--- {path.name} (last {lines} lines) ---\n{text}")
                    break
        return "\n".join(parts)

    def _job_logs(self, workdir: Path, lines: int = 40) -> str:
        logdir = workdir / ".snakemake" / "slurm_logs"
        parts = []
        for path in sorted(logdir.rglob("*.log")) if logdir.exists() else []:
            parts.append(f"--- slurm job log {path.relative_to(workdir)} ---\n{_last_lines(path.read_text(errors='replace'), lines)}")
        return "\n".join(parts)


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _node_hardware() -> str:
    """The node's real CPU layout and memory, as ``slurmd -C`` reports them."""
    out = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    first = out.splitlines()[0]
    keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    pairs = dict(token.split("=", 1) for token in first.split() if "=" in token)
    return " ".join(f"{k}={pairs[k]}" for k in keep if k in pairs)


def _write_config(root: Path, node: str, ports: list[int], gpus: int) -> None:
    etc = root / "etc"
    # Fake GPUs: Slurm wants a character device per GPU but, with TaskPlugin=task/none,
    # never opens or fences it; it only schedules and numbers them (a job allocated
    # GPU i sees CUDA_VISIBLE_DEVICES=i).
    if not 1 <= gpus <= len(FAKE_GPU_DEVICES):
        raise ValueError(f"gpus must be 1..{len(FAKE_GPU_DEVICES)}, got {gpus}")
    devices = [f"NodeName={node} Name=gpu File={dev}\n" for dev in FAKE_GPU_DEVICES[:gpus]]
    conf = f"""\
# Private single-node test cluster (written by tests/slurm_cluster.py).
ClusterName=dimcollapse-test
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={etc}/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
DefMemPerCPU=1000
MinJobAge={MIN_JOB_AGE_S}
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
NodeName={node} NodeAddr=127.0.0.1 {_node_hardware()} Gres=gpu:{gpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    (etc / "slurm.conf").write_text(conf)
    (etc / "gres.conf").write_text("AutoDetect=off\n" + "".join(devices))
    # Keep the distribution's /etc/slurm/plugstack.conf (SPANK plugins) out of it.
    (etc / "plugstack.conf").write_text("")


def _write_client_wrappers(root: Path) -> Path:
    """``bin/<client>`` scripts that pin SLURM_CONF to the private configuration.

    Needed because the Slurm executor's job step (snakemake-executor-plugin-slurm-jobstep)
    deletes every ``SLURM_*`` variable, ``SLURM_CONF`` included, before it calls
    ``srun`` inside the job; on a real cluster ``srun`` then reads
    /etc/slurm/slurm.conf, which this private cluster does not write.
    """
    bindir = root / "bin"
    for name in CLIENTS:
        real = _which(name)
        assert real is not None, name
        script = bindir / name
        script.write_text(
            f"#!/bin/sh\nSLURM_CONF={shlex.quote(str(root / 'etc' / 'slurm.conf'))}\n"
            f"export SLURM_CONF\nexec {shlex.quote(real)} \"$@\"\n"
        )
        script.chmod(0o755)
    return bindir


def _client_env(root: Path, bindir: Path, marker: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Leave no outer Slurm job context (or client defaults) in the environment.
        if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_", "SALLOC_"))
    }
    env["SLURM_CONF"] = str(root / "etc" / "slurm.conf")
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", ""), SYSTEM_PATH])
    env[MARKER_VAR] = marker
    return env


def _set_parent_death_signal() -> None:
    """Child side of Popen: get SIGTERM if the test process dies without cleaning up."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _parent_death_signal() -> Callable[[], None] | None:
    """``preexec_fn`` for children that must not outlive the test process.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only safe
    from the main thread (pytest and pytest-xdist run tests there).
    """
    return _set_parent_death_signal if threading.current_thread() is threading.main_thread() else None


def _start(cluster: SlurmCluster, name: str, cmd: list[str], env: dict[str, str]) -> None:
    log = open(cluster.root / "log" / f"{name}.out", "wb")
    try:
        cluster.processes[name] = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cluster.root,
            start_new_session=True,  # a terminal Ctrl-C reaches us, and we stop them in order
            preexec_fn=_parent_death_signal(),
        )
    finally:
        log.close()


def _wait_for(what: str, cluster: SlurmCluster, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.processes.items():
            if proc.poll() is not None:
                raise SlurmError(f"{name} exited with status {proc.returncode} while waiting for {what}\n{cluster.daemon_logs()}")
        if predicate():
            return
        time.sleep(0.25)
    raise SlurmError(f"timed out after {timeout:.0f} s waiting for {what}\n{cluster.daemon_logs()}")


def _start_daemons(cluster: SlurmCluster, startup_timeout: float) -> None:
    root = cluster.root
    daemon_env = {**cluster.env}
    socket_path = root / "munge" / "munge.socket"
    _start(
        cluster,
        "munged",
        [
            _which("munged") or "munged", "--foreground",
            f"--socket={socket_path}",
            f"--key-file={root / 'munge-key' / 'munge.key'}",
            f"--pid-file={root / 'run' / 'munged.pid'}",
            f"--seed-file={root / 'munge-key' / 'munged.seed'}",
            f"--log-file={root / 'log' / 'munged.log'}",
        ],
        daemon_env,
    )
    _wait_for("the MUNGE socket", cluster, socket_path.exists, startup_timeout)
    _start(cluster, "slurmctld", [_which("slurmctld") or "slurmctld", "-D", "-f", str(cluster.conf)], daemon_env)
    _start(cluster, "slurmd", [_which("slurmd") or "slurmd", "-D", "-N", cluster.node, "-f", str(cluster.conf)], daemon_env)

    def node_idle() -> bool:
        result = cluster.run(["sinfo", "--noheader", "--Node", "--format=%T"], timeout=10)
        return result.returncode == 0 and result.stdout.split() == ["idle"]

    _wait_for(f"node {cluster.node} to be idle", cluster, node_idle, startup_timeout)


# --------------------------------------------------------------------------- teardown


def _cluster_processes(root: Path, marker: str, daemons: set[int]) -> dict[int, str]:
    """Live processes that belong to the cluster in ``root``, except ``daemons``.

    Daemons and job processes carry the cluster's marker variable (jobs inherit the
    submitting Snakemake's environment); ``slurmstepd`` keeps the private slurmd log
    open. Children of the given daemons (slurmctld's ``slurmscriptd``) end with them.
    """
    found: dict[int, str] = {}
    skip = {os.getpid(), *daemons}
    prefix = str(root) + os.sep
    tag = f"{MARKER_VAR}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if state == "Z" or int(ppid) in daemons:
                continue
            belongs = tag in (entry / "environ").read_bytes().split(b"\0")
            if not belongs:
                belongs = any(os.readlink(fd).startswith(prefix) for fd in (entry / "fd").iterdir())
            if belongs:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError, ValueError):
            continue
    return found


def _processes_of(cluster: SlurmCluster) -> dict[int, str]:
    """Processes of this cluster other than the daemons we hold (jobs, job steps)."""
    daemons = {proc.pid for proc in cluster.processes.values() if proc.poll() is None}
    return _cluster_processes(cluster.root, cluster.marker, daemons)


def _cancel_jobs(cluster: SlurmCluster, timeout: float) -> None:
    """scancel every job of the cluster and wait until their processes are gone."""
    if cluster.processes.get("slurmctld") is None or cluster.processes["slurmctld"].poll() is not None:
        return
    queue = cluster.run(["squeue", "--noheader", "--format=%i"], timeout=10)
    ids = queue.stdout.split() if queue.returncode == 0 else []
    if ids:
        cluster.run(["scancel", *ids], timeout=20)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = cluster.run(["squeue", "--noheader", "--format=%i", "--states=PENDING,RUNNING,COMPLETING,SUSPENDED,CONFIGURING"], timeout=10)
        if active.returncode != 0 or not active.stdout.split():
            if not _processes_of(cluster):
                return
        time.sleep(0.5)


def _stop_process(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Stop a child by PID: SIGTERM, then SIGKILL after ``timeout``; say which it took."""
    if proc.poll() is not None:
        return f"already exited ({proc.returncode})"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return "SIGTERM"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
        return "SIGKILL"


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie has finished: only its entry is left)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _kill_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _teardown(cluster: SlurmCluster, stop_timeout: float = 15.0) -> None:
    """Cancel jobs, stop the daemons by PID (slurmd, slurmctld, munged) and verify."""
    errors = []
    try:
        _cancel_jobs(cluster, timeout=30.0)
    except (subprocess.SubprocessError, OSError) as exc:
        errors.append(f"cancelling jobs: {exc}")
    for name in ("slurmd", "slurmctld", "munged"):
        proc = cluster.processes.get(name)
        if proc is not None:
            cluster.stopped[name] = _stop_process(proc, stop_timeout)
    alive = [f"{name} (pid {proc.pid})" for name, proc in cluster.processes.items() if proc.poll() is None]
    if alive:
        errors.append(f"daemons still running after SIGKILL: {', '.join(alive)}")
    # Job steps and job processes outlive slurmd by design; none should be left after
    # the cancel above, but make sure (they were started through this cluster).
    for pid, cmd in _processes_of(cluster).items():
        cluster.leftovers_killed.append(f"{pid}: {cmd}")
        _kill_pid(pid, 5.0)
    remaining = _processes_of(cluster)
    if remaining:
        errors.append(f"processes of the test cluster still running: {remaining}")
    if errors:
        raise SlurmError("; ".join(errors))


def _start_watchdog(root: Path, marker: str) -> subprocess.Popen[bytes]:
    """A separate process that cleans up if this process dies without teardown (SIGKILL).

    The daemons get SIGTERM from the kernel when we die, but job steps, job processes
    and a running Snakemake would be orphaned; the watchdog stops them and deletes
    the cluster directory. A normal teardown stops the watchdog by PID.
    """
    env = {k: v for k, v in os.environ.items() if k != MARKER_VAR}
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--watchdog", str(os.getpid()), str(root), marker],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True,
    )


def _watchdog(parent: int, root: Path, marker: str) -> None:
    while os.getppid() == parent:  # reparented once the test process is gone
        time.sleep(1.0)
    for _ in range(3):  # processes may still be forking while we go
        leftovers = _cluster_processes(root, marker, set())
        if not leftovers:
            break
        for pid in leftovers:
            _kill_pid(pid, 5.0)
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the cluster runs.

    pytest answers KeyboardInterrupt by ending the session *and* tearing fixtures
    down, so a CI timeout that sends SIGTERM still stops the daemons.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def running_cluster(gpus: int = 2, startup_timeout: float = 60.0, keep_dir: bool = False) -> Iterator[SlurmCluster]:
    """Start a private single-node Slurm cluster; stop every daemon it started on exit.

    Assumes Slurm and MUNGE are installed (see ``ensure_slurm_installed``). Raises
    ``SlurmError`` with the daemon logs if the cluster does not come up, or if any
    daemon or job process is still alive after teardown.
    """
    root = Path(tempfile.mkdtemp(prefix="dimcollapse-slurm-"))
    node = socket.gethostname().split(".")[0]
    cluster = SlurmCluster(root=root, node=node, env={}, marker=uuid.uuid4().hex, gpus=gpus)
    watchdog = _start_watchdog(root, cluster.marker)
    try:
        with _terminate_as_interrupt():
            _prepare_dirs(root)
            _write_config(root, node, _free_ports(2), gpus)
            cluster.env = _client_env(root, _write_client_wrappers(root), cluster.marker)
            _start_daemons(cluster, startup_timeout)
            yield cluster
    finally:
        # Outside the SIGTERM handler: a second SIGTERM during teardown ends the
        # process at once (then the daemons' parent-death signal and the watchdog act).
        try:
            _teardown(cluster)
        finally:
            _stop_process(watchdog, 5.0)
            if not keep_dir:
                shutil.rmtree(root, ignore_errors=True)


def _prepare_dirs(root: Path) -> None:
    root.chmod(0o755)  # munged insists that every user can reach its socket directory
    for sub, mode in (("etc", 0o755), ("bin", 0o755), ("munge", 0o755), ("munge-key", 0o700),
                      ("state", 0o700), ("spool", 0o755), ("log", 0o755), ("run", 0o755)):
        (root / sub).mkdir()
        (root / sub).chmod(mode)
    key = root / "munge-key" / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A running private Slurm cluster shared by the tests of one pytest process.

    Skips with the reason where Slurm cannot be had here (not root, no apt-get, no
    package registry reachable); fails on any other problem.
    """
    try:
        ensure_slurm_installed()
    except SlurmUnavailable as exc:
        pytest.skip(f"no real Slurm: {exc}")
    with running_cluster() as cluster:
        yield cluster


if __name__ == "__main__" and sys.argv[1:2] == ["--watchdog"]:
    _watchdog(int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
