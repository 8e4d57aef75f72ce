"""One GPU per concurrent extraction job on a node, without a scheduler's help.

Snakemake's local executor counts a ``gpu`` resource but assigns no device ids, so
with ``--resources gpu=4`` four extraction jobs would all run on the first GPU. Each
job therefore claims a *slot* before CUDA starts: a non-blocking ``fcntl.flock`` on
one of N lock files in a node-local directory, one per GPU visible to the job. The
job then narrows ``CUDA_VISIBLE_DEVICES`` to the GPU it won (so the model runs on
``cuda:0`` of a one-GPU view) and keeps the lock file open for the rest of its life:
the kernel drops an flock when its last file descriptor closes, so the slot comes
free when the job ends for any reason, SIGKILL and out-of-memory kills included, and
a stale lock file never blocks anyone.

* The GPUs: the entries of an existing ``CUDA_VISIBLE_DEVICES`` (indices, UUIDs or MIG
  ids; a job started with ``2,3`` only ever takes 2 or 3), else ``0 … N-1`` with N
  counted from the driver (``/proc/driver/nvidia/gpus``, else ``nvidia-smi -L``),
  never by initialising CUDA.
* Lock files are named after the GPU entry, not after a position in the list, so jobs
  started with different ``CUDA_VISIBLE_DEVICES`` lists still agree on who holds a GPU.
* When every GPU is taken the job waits, retrying with jittered exponential back-off
  (capped at a few seconds) so that waiting jobs neither spin nor retry in lockstep.
* Under Slurm (``SLURM_JOB_ID`` set, with ``CUDA_VISIBLE_DEVICES`` or
  ``SLURM_JOB_GPUS``/``SLURM_STEP_GPUS``) the allocation is Slurm's: nothing is locked
  or changed.
* flock is unreliable on NFS: the directory must be node-local (default
  ``$XDG_RUNTIME_DIR/dimcollapse-gpus``, else ``/tmp/dimcollapse-gpus-<uid>``). Slots
  are per user: jobs of different users do not see each other's locks.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

NVIDIA_PROC_GPUS = Path("/proc/driver/nvidia/gpus")
_SLURM_GPU_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")
#: File descriptors of the slots this process holds; kept open (never closed) on purpose.
_HELD: list[int] = []


@dataclass(frozen=True)
class GpuSlot:
    """The GPU a job runs on.

    ``device`` is the ``CUDA_VISIBLE_DEVICES`` entry of the GPU (the physical index,
    UUID or MIG id), ``slot`` its position among the ``n_slots`` GPUs the job could
    choose from, ``lock`` the lock file held (None under Slurm) and ``source``
    ``"lock"`` or ``"slurm"``.
    """

    device: str
    slot: int
    n_slots: int
    lock: Path | None
    source: str


def default_lock_dir(env: Mapping[str, str] = os.environ) -> Path:
    """A node-local, per-user directory for the lock files."""
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "dimcollapse-gpus"
    return Path("/tmp") / f"dimcollapse-gpus-{os.getuid()}"


def count_gpus(proc_dir: Path = NVIDIA_PROC_GPUS) -> int:
    """NVIDIA GPUs on this node, from the driver, without initialising CUDA.

    ``/proc/driver/nvidia/gpus`` holds one entry per GPU; where it is missing (some
    containers) ``nvidia-smi -L`` lists one ``GPU <i>:`` line per GPU. 0 when neither
    is available.
    """
    if proc_dir.is_dir():
        return sum(1 for _ in proc_dir.iterdir())
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if re.match(r"GPU \d+:", line))


def visible_gpus(env: Mapping[str, str] = os.environ, proc_dir: Path = NVIDIA_PROC_GPUS) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` entries a job may choose from (empty: no GPU)."""
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = [e.strip() for e in listed.split(",") if e.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        return [] if not entries or entries[0] == "-1" else entries
    return [str(i) for i in range(count_gpus(proc_dir))]


def physical_gpu(env: Mapping[str, str] = os.environ) -> str:
    """The GPU that ``cuda:0`` of this process is: the first visible entry (``0`` if unrestricted)."""
    listed = [e.strip() for e in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    return listed[0] if listed else "0"


def slurm_allocated(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this is a Slurm job whose GPUs Slurm chose (so they are not ours to pick)."""
    return bool(env.get("SLURM_JOB_ID")) and any(env.get(v) for v in _SLURM_GPU_VARS)


def _lock_name(device: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", device) + ".lock"


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``path``, or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    # Who holds it, for a person reading the directory; the lock itself is the flock.
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
    return fd


def acquire_gpu(
    lock_dir: str | os.PathLike[str] | None = None,
    *,
    env: MutableMapping[str, str] = os.environ,
    timeout: float | None = None,
    max_backoff: float = 5.0,
    proc_dir: Path = NVIDIA_PROC_GPUS,
) -> GpuSlot | None:
    """Claim a GPU for the rest of this process's life and point ``CUDA_VISIBLE_DEVICES`` at it.

    Must run before CUDA initialises (before the first CUDA call of torch), since CUDA
    reads ``CUDA_VISIBLE_DEVICES`` only once. Returns None when no GPU is visible
    (nothing to claim), the Slurm allocation unchanged under Slurm, else the slot
    won. Waits while every GPU is taken; after ``timeout`` seconds (None: no limit)
    raises :class:`TimeoutError` naming the lock directory.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("acquire_gpu() must run before CUDA initialises: CUDA_VISIBLE_DEVICES is read only once")
    devices = visible_gpus(env, proc_dir)
    if slurm_allocated(env):
        shown = env.get("CUDA_VISIBLE_DEVICES") or env.get("SLURM_JOB_GPUS") or env.get("SLURM_STEP_GPUS", "")
        log.info("Slurm job %s: using the GPUs Slurm allocated (%s)", env["SLURM_JOB_ID"], shown)
        return GpuSlot(device=shown, slot=0, n_slots=max(len(devices), 1), lock=None, source="slurm")
    if not devices:
        return None
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir(env)
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    delay, attempt = 0.05, 0
    while True:
        for slot, device in enumerate(devices):
            path = directory / _lock_name(device)
            fd = _try_lock(path)
            if fd is not None:
                _HELD.append(fd)
                env["CUDA_VISIBLE_DEVICES"] = device
                log.info("GPU slot %d of %d: CUDA_VISIBLE_DEVICES=%s (lock %s)", slot, len(devices), device, path)
                return GpuSlot(device=device, slot=slot, n_slots=len(devices), lock=path, source="lock")
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            raise TimeoutError(
                f"all {len(devices)} GPUs ({','.join(devices)}) stayed taken for {waited:.0f} s "
                f"(locks in {directory}); lower --resources gpu=… or wait for the other jobs"
            )
        if attempt % 60 == 0:
            log.info("all %d GPUs are taken (locks in %s); waiting", len(devices), directory)
        attempt += 1
        pause = delay * random.uniform(0.5, 1.5)
        if timeout is not None:
            pause = min(pause, max(timeout - waited, 0.0))
        time.sleep(pause)
        delay = min(delay * 2, max_backoff)


__all__ = [
    "GpuSlot", "acquire_gpu", "count_gpus", "default_lock_dir", "physical_gpu", "slurm_allocated", "visible_gpus",
]
