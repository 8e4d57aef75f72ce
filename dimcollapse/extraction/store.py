"""The clip-level, content-addressed feature store: compute each clip once.

Features are stored per clip under a key of everything that decides their numbers, so
that an extraction job computes only clips the store lacks. Touching videos, copying a
dataset, changing the number of shards, adding videos or renaming a model instance
reuse what was computed; a new checkpoint, sampling, precision or numerics version does
not (see :func:`instance_identity` and :func:`clip_keys`).

Layout (``results/store/`` in the workflow)::

    <instance key>/             one model instance × sampling × precision × numerics version
        instance.json           what the key stands for, and who wrote it (read by
                                ``dimcollapse store list``, never by extraction)
        data/<segment>.npz      immutable: features of some clips, one array per space
        keys/<name>.npz         the index: clip keys → (segment, position), ok flags
        quarantine/data/        segments found unreadable (``<segment>.npz``), or a
                                ``<segment>.missing`` note for one that had vanished
        quarantine/keys/        index files found unreadable

*Entries* are grouped per instance key directory; inside it a clip is keyed by
:func:`clip_keys` (its video's content hash, duration and fps). An entry holds one vector
per feature space (``representation``, ``embedding``, ``layer.<module>``, per-view
``<space>_views``...): a lookup that asks for a space the entry's segment lacks treats
the clip as missing, and computing it again writes a new entry with every space. A
video that failed to decode is stored too (with its stage and error), so reruns do not
try it again.

Safety without locks (several shards and Slurm jobs on a shared file system write at
once): a segment is written under a unique name and published by an atomic rename of
its data file first, then of its keys file; readers only list keys files, so a killed
writer leaves nothing they can see half-written (at most a ``.tmp`` file or a data file
that no key points to). Files are never modified after publication. Compaction merges
keys files into one, writing the merged file before deleting the ones it read, so
concurrent readers and compactors at worst see an entry twice (lookups take any one:
equal keys mean equal numbers). Opening reads only keys files, 16 bytes plus a few per
clip: about 25 MB for 10⁶ clips once compacted.

A file that is torn or corrupt all the same (a disk fault, a partial copy between file
systems) is moved to ``quarantine/`` by the first reader that meets it, with a warning
naming it; lookups skip every entry of a quarantined segment, so its clips are computed
again and the run finishes as a clean one would. Nothing is deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dimcollapse.atomic import atomic_path, unique_name, write_json
from dimcollapse.data.interventions import ORIGINAL
from dimcollapse.extraction.numerics import NUMERICS_VERSION
from dimcollapse.extraction.shards import ShardResult
from dimcollapse.failures import Failure
from dimcollapse.quarantine import QUARANTINE, move_aside

log = logging.getLogger(__name__)

KEY_BYTES = 16
KEY_DTYPE = f"S{KEY_BYTES}"
#: Compact an instance's keys files into one when a job finds at least this many.
COMPACT_AT = 32
_DATA, _KEYS = "data", "keys"
#: What reading a torn or corrupt ``.npz`` raises (a truncated file: ``BadZipFile`` or,
#: when empty, ``EOFError``; flipped bytes: ``BadZipFile`` on the CRC check).
DAMAGED = (zipfile.BadZipFile, EOFError, ValueError, KeyError)
#: The note left in ``quarantine/data/`` for a segment that an index names but that is gone.
MISSING_SUFFIX = ".missing"
DESCRIPTION = "instance.json"


# ------------------------------------------------------------------------------- keys
def clip_keys(content: Sequence[str], duration: Sequence[float], fps: Sequence[float]) -> np.ndarray:
    """Store keys of manifest rows: BLAKE2b-128 of (content hash, duration, fps).

    Duration and fps decide which frames a protocol selects; they are included so that
    a change in how the manifest measures them can never reuse clips sampled differently.
    """
    keys = [
        hashlib.blake2b(f"{c}\0{float(d)!r}\0{float(f)!r}".encode(), digest_size=KEY_BYTES).digest()
        for c, d, f in zip(content, duration, fps)
    ]
    return np.array(keys, dtype=KEY_DTYPE).reshape(len(keys))


def batch_context_keys(keys: np.ndarray, batch_size: int) -> np.ndarray:
    """Keys of clips whose features depend on their batch: the clip plus its whole block.

    Row ``r`` belongs to the block of rows ``[⌊r/B⌋·B, ⌊r/B⌋·B + B)`` (cut at the end of
    the manifest); the key hashes the clip's own key and the keys of the block in order.
    """
    raw = np.ascontiguousarray(np.asarray(keys, dtype=KEY_DTYPE)).view(np.uint8).reshape(-1, KEY_BYTES)
    out = []
    for start in range(0, len(raw), batch_size):
        block = raw[start : start + batch_size]
        context = block.tobytes()
        out += [hashlib.blake2b(b"batch\0" + k.tobytes() + context, digest_size=KEY_BYTES).digest() for k in block]
    return np.array(out, dtype=KEY_DTYPE).reshape(len(out))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (checkpoints, model config files), streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(checkpoint: str | os.PathLike[str]) -> str:
    """SHA-256 of a checkpoint's content: of the file, or, for the download rule's record of a
    transformers folder, of its config and weight files' hashes (never of the folder's path)."""
    from dimcollapse.models.hub import SNAPSHOT_RECORD, content_digest, read_snapshot_record

    if Path(checkpoint).name == SNAPSHOT_RECORD:
        return content_digest(read_snapshot_record(checkpoint)[1])
    return file_sha256(checkpoint)


def instance_identity(job: Mapping[str, Any], checkpoint: str | None, *, clip_cache: bool = False) -> dict[str, Any]:
    """Everything about a job that decides the numbers of a clip's features.

    ``job`` is the extract rule's ``extraction_params``. The checkpoint counts by its
    SHA-256 (not its path or mtime) and a model config file by its content; the instance
    name, label, shards, batch size, device, workers and threads are left out (the latter
    three only change float rounding; see the README). So are the ``layers`` and
    ``time_resolved`` build options: which layers are read, and whether a space's time axis
    is kept too, does not change any number; they are more arrays of the clip's entries
    (a lookup asking for one an entry lacks misses). A frame order other than the original
    (``frame_order``, :mod:`dimcollapse.data.interventions`) is a key of its own.
    """
    model = job["model"]
    config = model.get("config")
    order = job.get("frame_order", ORIGINAL)
    return {
        "method": model["method"],
        "checkpoint_sha256": checkpoint_sha256(checkpoint) if checkpoint else None,
        "config_sha256": file_sha256(config) if config and Path(config).is_file() else config,
        "build_options": {k: v for k, v in job["build_options"].items() if k not in ("layers", "time_resolved")},
        "protocol": job["protocol"],
        # the clip cache stores frames scaled to uint8, which can differ from decoding on the fly
        "frames": "clip cache" if clip_cache else "decoded",
        "precision": job["precision"],
        "numerics_version": NUMERICS_VERSION,
        **({"frame_order": order} if order != ORIGINAL else {}),
    }


def identity_key(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


# ------------------------------------------------------------------------------ store
@dataclass
class Lookup:
    """Where the store holds each queried clip: ``found`` rows and their locations."""

    found: np.ndarray  # bool per query
    segment: np.ndarray  # int, index into ``segments`` (valid where found)
    pos: np.ndarray  # int, row in the segment's arrays
    segments: list[str]


class InstanceStore:
    """The entries of one instance key (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str], identity: Mapping[str, Any] | None = None,
                 used_by: Mapping[str, Any] | None = None) -> None:
        self.dir = Path(directory)
        (self.dir / _DATA).mkdir(parents=True, exist_ok=True)
        (self.dir / _KEYS).mkdir(parents=True, exist_ok=True)
        if identity is not None:
            self._describe(identity, used_by)

    def _describe(self, identity: Mapping[str, Any], used_by: Mapping[str, Any] | None) -> None:
        """Write ``instance.json``: the identity, and under ``used_by`` each model instance
        (name, checkpoint path) that wrote to this key, which ``store list`` shows."""
        description = self.dir / DESCRIPTION
        try:
            known = json.loads(description.read_text())
        except (OSError, ValueError):
            known = {}
        users = known.get("used_by", [])
        if known and (used_by is None or dict(used_by) in users):
            return
        write_json(description, {**identity, "used_by": users + ([dict(used_by)] if used_by else [])})

    # -------------------------------------------------------------------- reading
    def _keys_files(self) -> list[Path]:
        return sorted((self.dir / _KEYS).glob("*.npz"))

    def _read_index(self, files: Sequence[Path]) -> tuple[list[dict[str, np.ndarray]], list[Path]]:
        parts, read = [], []
        for f in files:
            try:
                parts.append(_load_index(f))
                read.append(f)
            except FileNotFoundError:
                continue  # merged into another keys file by a concurrent compaction
            except DAMAGED as err:
                self.quarantine(f, f"{type(err).__name__}: {err}", "its clips are computed again")
            except OSError as err:  # an I/O error need not mean a damaged file: leave it be
                log.warning("feature store: cannot read index file %s (%s); its clips are computed again", f, err)
        return parts, read

    # ------------------------------------------------------------------ quarantine
    def quarantine(self, path: Path, reason: str, consequence: str) -> None:
        """Move a damaged data or keys file to ``quarantine/`` (a note if it is gone), with a warning.

        Lookups skip the entries of a quarantined segment (:meth:`quarantined`).
        """
        folder = self.dir / QUARANTINE / path.parent.name
        moved = move_aside(path, folder)
        if moved is None and path.parent.name == _DATA and path.stem not in self.quarantined():
            note = folder / f"{path.stem}{MISSING_SUFFIX}"
            folder.mkdir(parents=True, exist_ok=True)
            note.write_text(f"{path}: {reason}\n")
            moved = note
        where = f"moved to {moved}" if moved is not None else "another job moved it aside"
        log.warning("feature store: %s is unreadable (%s); %s; %s", path, reason, where, consequence)

    def quarantined(self) -> set[str]:
        """Names of the segments moved to (or noted missing in) ``quarantine/data/``."""
        folder = self.dir / QUARANTINE / _DATA
        return {f.name.split(".")[0] for f in folder.iterdir()} if folder.is_dir() else set()

    def lookup(self, keys: np.ndarray, spaces: Sequence[str]) -> Lookup:
        """Locate ``keys`` among entries that hold every one of ``spaces`` (or a failure)."""
        parts, _ = self._read_index(self._keys_files())
        dropped = self.quarantined()
        segments: list[str] = []
        all_keys, all_seg, all_pos = [], [], []
        wanted = set(spaces)
        for p in parts:
            has = np.array([wanted <= set(json.loads(str(s))) for s in p["spaces"]], bool)
            usable = p["ok"] == 0
            if len(has):
                usable = usable | has[p["seg"]]
                if dropped:
                    usable &= ~np.isin(p["segments"].astype(str), list(dropped))[p["seg"]]
            all_keys.append(p["keys"][usable])
            all_seg.append(p["seg"][usable].astype(np.int64) + len(segments))
            all_pos.append(p["pos"][usable])
            segments += [str(s) for s in p["segments"]]
        query = np.asarray(keys, dtype=KEY_DTYPE)
        k = np.concatenate(all_keys) if all_keys else np.zeros(0, KEY_DTYPE)
        if not len(k):
            none = np.zeros(len(query), np.int64)
            return Lookup(np.zeros(len(query), bool), none, none, segments)
        order = np.argsort(k, kind="stable")  # near-linear on a compacted (sorted) index
        k = k[order]
        at = _search(k, query)
        found = k[at] == query
        seg = np.concatenate(all_seg)[order][at]
        pos = np.concatenate(all_pos)[order][at]
        return Lookup(found, seg, pos, segments)

    def read(self, lookup: Lookup, rows: np.ndarray, ids: Sequence[str], paths: Sequence[str],
             spaces: Sequence[str]) -> tuple[ShardResult, np.ndarray]:
        """The stored entries of the found ``rows`` (manifest positions of the queries).

        Returns them as a :class:`ShardResult` (failures carry this manifest's id and path)
        and the rows whose segment could not be read (to be computed again).
        """
        out_rows, ok, short, failures, unreadable = [], [], [], [], []
        feats: dict[str, list[np.ndarray]] = {s: [] for s in spaces}
        found = np.flatnonzero(lookup.found)
        for seg in np.unique(lookup.segment[found]):
            sel = found[lookup.segment[found] == seg]
            name = lookup.segments[seg]
            try:
                with np.load(self.dir / _DATA / f"{name}.npz", allow_pickle=False) as data:
                    pos = lookup.pos[sel]
                    seg_ok = data["ok"][pos]
                    seg_short = data["short"][pos]
                    errors = data["error"][pos]
                    stages = data["stage"][pos]
                    # A space the segment lacks can only be asked of its failures (see lookup).
                    seg_feats = {s: data[f"feat_{s}"][pos] if f"feat_{s}" in data.files
                                 else np.zeros((len(sel), 0), np.float32) for s in spaces}
            except FileNotFoundError as err:  # an index names it, but it is gone
                self.quarantine(self.dir / _DATA / f"{name}.npz", str(err), f"{len(sel)} clips are computed again")
                unreadable.append(rows[sel])
                continue
            except DAMAGED as err:
                self.quarantine(self.dir / _DATA / f"{name}.npz", f"{type(err).__name__}: {err}",
                                f"{len(sel)} clips are computed again")
                unreadable.append(rows[sel])
                continue
            except OSError as err:  # an I/O error need not mean a damaged file: leave it be
                log.warning("feature store: cannot read segment %s (%s); %d clips are computed again",
                            self.dir / _DATA / f"{name}.npz", err, len(sel))
                unreadable.append(rows[sel])
                continue
            for s in spaces:
                # A failures-only segment has width-0 features; real widths come from others.
                feats[s].append(seg_feats[s] if seg_ok.any() else np.zeros((len(sel), 0), np.float32))
            out_rows.append(rows[sel])
            ok.append(seg_ok)
            short.append(seg_short)
            failures += [Failure(ids[r], paths[r], str(st), str(e))
                         for r, good, st, e in zip(rows[sel], seg_ok, stages, errors) if not good]
        if not out_rows:
            nothing = {s: np.zeros((0, 0), np.float32) for s in spaces}
            empty = ShardResult(np.zeros(0, np.int64), np.zeros(0, bool), nothing, [])
            return empty, np.concatenate(unreadable) if unreadable else np.zeros(0, np.int64)
        dims = {s: max(a.shape[1] for a in feats[s]) for s in spaces}
        features = {
            s: np.concatenate(
                [a if a.shape[1] == dims[s] else np.zeros((len(a), dims[s]), np.float32) for a in feats[s]]
            )
            for s in spaces
        }
        result = ShardResult(
            np.concatenate(out_rows).astype(np.int64), np.concatenate(ok), features, failures, np.concatenate(short)
        )
        return result, np.concatenate(unreadable) if unreadable else np.zeros(0, np.int64)

    # -------------------------------------------------------------------- writing
    def add(self, keys: np.ndarray, result: ShardResult, ids: Sequence[str]) -> str:
        """Publish the clips of ``result`` as one new segment.

        ``keys`` and ``ids`` (the manifest ids, which name failure records) are in the
        order of ``result.rows``.
        """
        keys = np.asarray(keys, dtype=KEY_DTYPE)
        if not len(keys) == len(ids) == len(result.rows):
            raise ValueError(f"{len(keys)} keys and {len(ids)} ids for {len(result.rows)} clips")
        name = unique_name("seg")
        by_id = {f.id: f for f in result.failures}
        stage = np.array([by_id[i].stage if not good else "" for i, good in zip(ids, result.ok)], dtype=str)
        error = np.array([by_id[i].error if not good else "" for i, good in zip(ids, result.ok)], dtype=str)
        arrays = {
            "ok": result.ok,
            "short": result.short,
            "stage": stage,
            "error": error,
            **{f"feat_{s}": np.ascontiguousarray(v, np.float32) for s, v in result.features.items()},
        }
        with (
            atomic_path(self.dir / _DATA / f"{name}.npz", suffix=".npz", need=_nbytes(arrays)) as tmp,
            open(tmp, "wb") as fh,
        ):
            np.savez(fh, allow_pickle=False, **arrays)  # every reader loads with allow_pickle=False
        try:
            self._write_keys(
                name,
                {
                    "keys": keys,
                    "seg": np.zeros(len(keys), np.int32),
                    "pos": np.arange(len(keys), dtype=np.int32),
                    "ok": result.ok.astype(bool),
                    "segments": np.array([name]),
                    "spaces": np.array([json.dumps(sorted(result.features))]),
                },
            )
        except BaseException:  # e.g. a full disk: no index names the segment, so nothing can read it
            (self.dir / _DATA / f"{name}.npz").unlink(missing_ok=True)
            raise
        return name

    def _write_keys(self, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        with (
            atomic_path(self.dir / _KEYS / f"{name}.npz", suffix=".npz", need=_nbytes(arrays)) as tmp,
            open(tmp, "wb") as fh,
        ):
            np.savez(fh, allow_pickle=False, **arrays)  # every reader loads with allow_pickle=False

    def compact(self, at_least: int = COMPACT_AT) -> bool:
        """Merge the keys files into one when there are ``at_least`` of them.

        Data segments are left as they are (rewriting features would cost I/O for
        nothing: opening the store only reads keys).
        """
        files = self._keys_files()
        if len(files) < max(at_least, 2):
            return False
        parts, read = self._read_index(files)
        if len(read) < 2:
            return False
        names = np.concatenate([p["segments"].astype(str) for p in parts])
        spaces = np.concatenate([p["spaces"].astype(str) for p in parts])
        # Concurrent compactions can leave the same entries in two files: keep one copy.
        segments, first, inverse = np.unique(names, return_index=True, return_inverse=True)
        offsets = np.cumsum([0] + [len(p["segments"]) for p in parts])
        keys = np.concatenate([p["keys"] for p in parts])
        seg = np.concatenate([inverse[p["seg"].astype(np.int64) + o] for p, o in zip(parts, offsets)]).astype(np.int32)
        pos = np.concatenate([p["pos"] for p in parts])
        ok = np.concatenate([p["ok"] for p in parts])
        order = np.lexsort((pos, seg, keys))  # sorted by key: the next lookup sorts in linear time
        keys, seg, pos, ok = keys[order], seg[order], pos[order], ok[order]
        keep = np.ones(len(keys), bool)
        keep[1:] = (keys[1:] != keys[:-1]) | (seg[1:] != seg[:-1]) | (pos[1:] != pos[:-1])
        if dropped := self.quarantined():  # entries of quarantined segments go for good
            keep &= ~np.isin(segments.astype(str), list(dropped))[seg]
        self._write_keys(
            unique_name("index"),
            {
                "keys": keys[keep],
                "seg": seg[keep],
                "pos": pos[keep],
                "ok": ok[keep],
                "segments": segments,
                "spaces": spaces[first],
            },
        )
        for f in read:
            f.unlink(missing_ok=True)
        log.info("feature store %s: merged %d index files (%d entries)", self.dir.name, len(read), int(keep.sum()))
        return True

    # ---------------------------------------------------------------- inspection
    def summary(self) -> dict[str, Any]:
        """What ``dimcollapse store list`` shows of this key, read without changing anything:
        the description, distinct clips held, bytes on disk and when an entry was last added."""
        clips: set[bytes] = set()
        dropped = self.quarantined()
        for f in self._keys_files():
            try:
                part = _load_index(f)
            except (*DAMAGED, OSError):
                continue  # verify names it
            live = ~np.isin(part["segments"].astype(str), list(dropped))[part["seg"]] if dropped else slice(None)
            clips.update(part["keys"][live].tolist())
        files = [f for f in self.dir.rglob("*") if f.is_file()]
        written = [f.stat().st_mtime for sub in (_DATA, _KEYS) for f in (self.dir / sub).glob("*.npz")]
        try:
            description = json.loads((self.dir / DESCRIPTION).read_text())
        except (OSError, ValueError):
            description = {}
        return {
            "key": self.dir.name,
            **description,
            "clips": len(clips),
            "bytes": sum(f.stat().st_size for f in files),
            "last_written": max(written, default=None),
            "quarantined": sum(1 for f in files if f.relative_to(self.dir).parts[0] == QUARANTINE),
        }

    def verify(self, repair: bool = False) -> list[str]:
        """Read every index file and segment in full; one line per torn, corrupt or missing file.

        ``repair`` moves each to ``quarantine/`` (:meth:`quarantine`), so the clips it held
        are computed again by the next extraction.
        """
        problems: list[str] = []

        def found(path: Path, reason: str) -> None:
            problems.append(f"{path}: {reason}")
            if repair:
                self.quarantine(path, reason, "its clips are computed again")

        dropped = self.quarantined()
        rows_needed: dict[str, int] = {}
        for f in self._keys_files():
            try:
                part = _load_index(f)
                _check_index(part)
            except FileNotFoundError:
                continue
            except (*DAMAGED, OSError) as err:
                found(f, f"{type(err).__name__}: {err}")
                continue
            for s, name in enumerate(part["segments"].astype(str)):
                if name not in dropped and (pos := part["pos"][part["seg"] == s]).size:
                    rows_needed[name] = max(rows_needed.get(name, 0), int(pos.max()) + 1)
        present = set()
        for f in sorted((self.dir / _DATA).glob("*.npz")):
            present.add(f.stem)
            try:
                rows = _check_segment(f)
            except FileNotFoundError:
                continue
            except (*DAMAGED, OSError) as err:
                found(f, f"{type(err).__name__}: {err}")
                continue
            if rows < rows_needed.get(f.stem, 0):
                found(f, f"holds {rows} clips, its index names clip {rows_needed[f.stem] - 1}")
        for name in sorted(set(rows_needed) - present):
            found(self.dir / _DATA / f"{name}.npz", "named by the index but missing")
        return problems


def _nbytes(arrays: Mapping[str, np.ndarray]) -> int:
    """About the size of an uncompressed ``.npz`` of ``arrays`` (the zip adds a little)."""
    return sum(np.asarray(a).nbytes for a in arrays.values())


def _load_index(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one keys file (raises what a damaged file raises, see :data:`DAMAGED`)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in ("keys", "seg", "pos", "ok", "segments", "spaces")}


def _check_index(part: Mapping[str, np.ndarray]) -> None:
    n = len(part["keys"])
    if not (len(part["seg"]) == len(part["pos"]) == len(part["ok"]) == n) or len(part["segments"]) != len(
        part["spaces"]
    ):
        raise ValueError("index arrays of different lengths")
    if n and (part["seg"].min() < 0 or part["seg"].max() >= len(part["segments"]) or part["pos"].min() < 0):
        raise ValueError("index names a segment or clip out of range")


def _check_segment(path: Path) -> int:
    """Read every array of a data segment (the zip CRCs are checked); return its clip count."""
    with np.load(path, allow_pickle=False) as data:
        lengths = {name: len(data[name]) for name in data.files}
    if not {"ok", "short", "stage", "error"} <= set(lengths) or len(set(lengths.values())) != 1:
        raise ValueError(f"arrays {sorted(lengths)} missing or of different lengths")
    return lengths["ok"]


def _high_words(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each key as a big-endian integer (same order as the bytes)."""
    return np.frombuffer(np.ascontiguousarray(keys).tobytes(), dtype=">u8")[::2].astype(np.uint64)


def _search(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``np.searchsorted(sorted_keys, query)`` clipped to valid positions, done on integers.

    Searching 16-byte strings is slow (1.5 s for 10⁶ in 10⁶); the first 8 bytes as an
    integer give the same answer whenever they differ, and the rare queries that share
    them with a different stored key are searched again on the full key.
    """
    if len(sorted_keys) == 0:
        return np.zeros(len(query), np.int64)
    high = _high_words(sorted_keys)
    qhigh = _high_words(query)
    order = np.argsort(qhigh)  # sorted queries search about twice as fast (memory locality)
    at = np.empty(len(query), np.int64)
    at[order] = np.minimum(np.searchsorted(high, qhigh[order]), len(sorted_keys) - 1)
    tie = (high[at] == qhigh) & (sorted_keys[at] != query)
    if tie.any():
        at[tie] = np.minimum(np.searchsorted(sorted_keys, query[tie]), len(sorted_keys) - 1)
    return at


class FeatureStore:
    """The store root: one :class:`InstanceStore` per instance key."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def instance(self, identity: Mapping[str, Any], used_by: Mapping[str, Any] | None = None) -> InstanceStore:
        """The entries of ``identity``; ``used_by`` (model instance name and checkpoint path)
        is recorded in its ``instance.json`` for ``dimcollapse store list``."""
        return InstanceStore(self.root / identity_key(identity), identity, used_by)
