"""Fetching model checkpoints into place, verifiably and without ever leaving a partial file.

:func:`fetch_checkpoint` is what the workflow's download rule calls. Sources:

* ``http://`` / ``https://`` URLs: streamed in 1 MiB chunks into ``<dest>.part`` beside
  the destination, with a progress bar (tqdm, on stderr) when ``progress`` is true.
  Connection errors, timeouts, HTTP 5xx/408/429 and connections that close early are
  retried up to ``retries`` times, waiting ``backoff * 2**attempt`` seconds, but no new
  attempt starts once ``retry_window`` seconds have passed: an unreachable server fails
  within seconds (4 attempts in about 4 s by default), not minutes. Each retry (and each
  later run) resumes the ``.part`` file with an HTTP ``Range`` request, and starts over if
  the server ignores the range. Other HTTP errors (404, 403, …) fail at once. A server
  answering with an HTML page (login or error pages say 200 too) is an error, not a
  checkpoint.
* ``file://`` URLs and plain local paths: copied (not linked), so the pipeline's copy
  cannot change or vanish when the original is edited, moved or deleted. A checkpoint
  is at most a few hundred megabytes, so the copy is cheap next to its decoding cost.
  The copy is made on every call, never taken from an earlier run: a file fixed or
  replaced at the same path must reach the pipeline (the workflow reruns the rule when
  the file's size or mtime changes, :func:`local_source_state`). A missing file fails at
  once; there is nothing to retry.
* Google Drive (``gdrive:<id>``, ``https://drive.google.com/...``; the DPC checkpoints):
  Drive answers large files with an interactive virus-scan page, so they cannot be
  fetched non-interactively. They are manual downloads: if the file is already at the
  destination it is used (and verified), otherwise :class:`DownloadError` says which
  page to open and where to save the file.

Before the file is moved into place its SHA-256 is computed; if ``sha256`` is given and
differs, the file is deleted and :class:`DownloadError` reports both hashes (the next run
downloads afresh). The move is an atomic rename (:func:`dimcollapse.atomic.atomic_path`),
so the destination path only ever holds a complete, verified file. A JSON sidecar
``<dest>.json`` records the source, path, size, computed SHA-256, whether it was checked
against a pinned hash, and the time: pin the recorded hash in the config after a first
trusted download. For remote sources an existing destination is reused without network
access (it is verified when a hash is pinned; a mismatching one is replaced).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dimcollapse import __version__
from dimcollapse.atomic import atomic_path, write_json
from dimcollapse.disk_full import is_disk_full, naming_a_full_disk
from dimcollapse.errors import KnownError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_GDRIVE_PATTERNS = (
    re.compile(r"^gdrive:(?P<id>[\w-]+)$"),
    re.compile(r"^https?://drive\.google\.com/file/d/(?P<id>[\w-]+)"),
    re.compile(r"^https?://drive\.google\.com/(?:uc|open)\?(?:.*&)?id=(?P<id>[\w-]+)"),
)


class DownloadError(KnownError):
    """A checkpoint that could not be fetched; the message names the source and the manual fix."""


class _Transient(Exception):
    """A failure worth retrying (network trouble, server overload, connection closed early)."""


def partial_path(dest: str | os.PathLike[str]) -> Path:
    """Where an interrupted HTTP download of ``dest`` is kept for resuming."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def sidecar_path(dest: str | os.PathLike[str]) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".json")


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def gdrive_id(source: str) -> str | None:
    """The Google Drive file id of ``source``, or None if it is not a Drive source."""
    for pattern in _GDRIVE_PATTERNS:
        m = pattern.match(source)
        if m:
            return m["id"]
    return None


def fetch_checkpoint(
    source: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 15.0,
    retry_window: float = 15.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Put the file named by ``source`` at ``dest`` (see the module docstring) and return its record.

    The record (also written to ``<dest>.json``) has ``source``, ``path``, ``size``,
    ``sha256`` (computed), ``expected_sha256`` (the pinned one or None), ``verified``
    (True when checked against a pinned hash), ``method`` (``http``, ``copy`` or
    ``existing``) and ``time`` (UTC, ISO 8601). ``timeout`` bounds each connection
    attempt and each wait for data, ``retry_window`` the time after which no new attempt
    starts.
    """
    dest = Path(dest)
    expected = _normalise_sha256(sha256)
    if retries < 0 or backoff < 0 or timeout <= 0 or retry_window < 0:
        raise ValueError("retries, backoff and retry_window must be >= 0 and timeout > 0")
    local = local_source(source)
    if local is not None:
        return _finish(source, dest, _copy_local(source, local, dest, expected), expected, "copy")

    if dest.is_file():
        actual = sha256_file(dest)
        if expected is None or actual == expected:
            return _finish(source, dest, actual, expected, "existing")
        bad = dest.with_name(dest.name + ".sha256-mismatch")
        os.replace(dest, bad)
        log.warning("%s: SHA-256 %s does not match the pinned %s; moved it to %s and fetching again",
                    dest, actual, expected, bad)

    drive_id = gdrive_id(source)
    if drive_id is not None:
        raise DownloadError(
            f"{source}: Google Drive files cannot be downloaded non-interactively (Drive answers with a "
            f"virus-scan confirmation page). Open https://drive.google.com/file/d/{drive_id}/view in a browser, "
            f"download the file and save it as {dest.resolve()} (file name {dest.name!r}), then run again."
        )
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(
            f"{source}: unsupported source scheme {scheme!r} (use http(s)://, file://, gdrive:<id> or a path)"
        )
    actual = _download_http(source, dest, expected, retries, backoff, timeout, retry_window, progress)
    return _finish(source, dest, actual, expected, "http")


def local_source(source: str) -> Path | None:
    """The local file a ``file://`` URL or plain path names; None for remote sources."""
    if gdrive_id(source) is not None:
        return None
    parts = urllib.parse.urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if scheme and len(scheme) > 1:  # "c:" on Windows is a drive letter, not a scheme
        return None
    return Path(source).expanduser()


def local_source_state(source: str | None) -> dict[str, Any] | None:
    """Path, size and mtime of a local checkpoint source (stat only; of each file of a folder),
    for a rule param.

    The download rule carries this so Snakemake copies the file again when it is fixed
    or replaced at the same path; None for remote sources and for no checkpoint.
    """
    local = local_source(source) if source else None
    if local is None:
        return None
    path = local.resolve()
    if path.is_dir():  # a transformers checkpoint folder: every file of it
        files = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.iterdir()) if p.is_file()}
        return {"path": str(path), "files": files}
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path), "size": None, "mtime_ns": None}
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def name_the_source(message: str, checkpoint: str | os.PathLike[str]) -> str:
    """``message`` about the pipeline's copy ``checkpoint``, rewritten to name the user's file.

    The download rule records where a checkpoint came from (``<checkpoint>.json``); a
    problem with the copy is a problem with that source, which is what the user must fix.
    """
    try:
        record = json.loads(sidecar_path(checkpoint).read_text())
    except (OSError, ValueError):
        return message
    source = record.get("source")
    if not source or record.get("method") != "copy":
        return message
    named = f"{source} (copied to {checkpoint})"
    text = message.replace(str(checkpoint), named, 1) if str(checkpoint) in message else f"{named}: {message}"
    return f"{text}. Fix or replace {source}; the next run copies it again"


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = str(sha256).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return value


def _manual(source: str, dest: Path) -> str:
    return f"download {source} by hand and save it as {dest.resolve()}, then run again"


def _check_hash(source: str, file: Path, dest: Path, expected: str | None) -> str:
    """SHA-256 of ``file``; on a mismatch with ``expected`` the file is deleted and DownloadError raised."""
    actual = sha256_file(file)
    if expected is not None and actual != expected:
        file.unlink(missing_ok=True)
        raise DownloadError(
            f"{source}: SHA-256 mismatch: got {actual}, expected {expected}; the file was deleted. "
            f"Check the pinned hash in the config, or {_manual(source, dest)}"
        )
    return actual


def _copy_local(source: str, local: Path, dest: Path, expected: str | None) -> str:
    if not local.is_file():
        raise DownloadError(
            f"{source}: no such file ({local.resolve()}); put the checkpoint there, or correct "
            "its `checkpoint` entry in the config, then run again"
        )
    if local.resolve() == dest.resolve():
        return _check_hash(source, dest, dest, expected)
    with atomic_path(dest) as tmp:
        shutil.copyfile(local, tmp)
        return _check_hash(source, tmp, dest, expected)


def _download_http(
    url: str,
    dest: Path,
    expected: str | None,
    retries: int,
    backoff: float,
    timeout: float,
    retry_window: float,
    progress: bool,
) -> str:
    part = partial_path(dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, dest, part, timeout, progress)
            break
        except _Transient as err:
            wait = backoff * 2**attempt
            if attempt == retries or time.monotonic() - start + wait > retry_window:
                raise DownloadError(
                    f"{url}: download failed after {attempt + 1} attempts ({err}); "
                    f"{_partial_note(part)}{_manual(url, dest)}"
                ) from err
            log.warning("%s: %s; retrying in %.1f s (%d/%d)", url, err, wait, attempt + 1, retries)
            time.sleep(wait)
    actual = _check_hash(url, part, dest, expected)
    with atomic_path(dest) as tmp:
        os.replace(part, tmp)
    return actual


def _partial_note(part: Path) -> str:
    """What the failure message says about ``part``: only a partial file that exists is mentioned."""
    size = part.stat().st_size if part.is_file() else 0
    if not size:
        part.unlink(missing_ok=True)
        return ""
    return f"the partial file {part} ({size} bytes) is kept and the next run resumes it. Otherwise "


def _fetch_once(url: str, dest: Path, part: Path, timeout: float, progress: bool) -> None:
    """One request: resume or start ``part`` and stream the rest of the file into it."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"dimcollapse/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            total = _content_range_total(err.headers.get("Content-Range", ""))
            if total == have:  # the partial file is already complete
                return
            part.unlink()
            raise _Transient(f"server refused to resume at byte {have} (HTTP 416); starting over") from err
        if err.code in _RETRY_STATUS:
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(
            f"{url}: HTTP {err.code} {err.reason}; check the URL in the config, or {_manual(url, dest)}"
        ) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise _Transient(f"{type(err).__name__}: {reason}") from err

    with response:
        content_type = response.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() == "text/html":
            raise DownloadError(
                f"{url}: the server sent an HTML page, not a checkpoint (a login, error or confirmation page); "
                f"{_manual(url, dest)}"
            )
        if response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Transient(f"server resumed at byte {start}, not {have}; starting over")
            mode = "ab"
        else:  # 200: the server sent the whole file (it may ignore Range)
            have, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None and length.isdigit() else None
        total = None if remaining is None else have + remaining
        received = 0
        full_disk = naming_a_full_disk(
            part,
            need=remaining,
            written=lambda: received,
            kept=f"the partial file {part} is kept and the next run resumes it",
        )
        with (
            full_disk,
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                mininterval=1.0,
            ) as bar,
        ):
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                if is_disk_full(err):  # not the connection: retrying would not help
                    raise
                raise _Transient(f"connection lost after {have + received} bytes ({type(err).__name__})") from err
        if remaining is not None and received < remaining:
            raise _Transient(f"connection closed after {have + received} of {total} bytes")


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value.strip())
    return int(m[1]) if m else None


def _content_range_total(value: str) -> int | None:
    m = re.match(r"bytes (?:\*|\d+-\d+)/(\d+)", value.strip())
    return int(m[1]) if m else None


def _finish(source: str, dest: Path, actual: str, expected: str | None, method: str) -> dict[str, Any]:
    record = {
        "source": source,
        "path": str(dest.resolve()),
        "size": dest.stat().st_size,
        "sha256": actual,
        "expected_sha256": expected,
        "verified": expected is not None,
        "method": method,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(sidecar_path(dest), record)
    if expected is None:
        log.info("%s: SHA-256 %s (not pinned; add it to the config to verify future downloads)", dest, actual)
    return record


__all__ = [
    "DownloadError",
    "fetch_checkpoint",
    "gdrive_id",
    "local_source",
    "local_source_state",
    "name_the_source",
    "partial_path",
    "sha256_file",
    "sidecar_path",
]
