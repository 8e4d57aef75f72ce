"""Streaming statistics of feature matrices: the pairwise-mergeable count, mean and centred
co-moment of L2-normalised rows (:class:`MomentStats`), and a bounded-memory reader of
``.npy`` files in row chunks (:class:`NpyRows`).

Everything the spectrum needs (:mod:`dimcollapse.analysis.spectrum`) is accumulated here
in float64, chunk by chunk, and merged with Chan, Golub & LeVeque's pairwise update, so a
feature matrix is never held in memory and statistics of shards merge exactly into those
of the whole. Degenerate input is noticed on the way (all-zero rows, a matrix whose rows
are all the same) at the cost of one comparison per block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.linalg.blas import dger

from dimcollapse.atomic import atomic_path

DEFAULT_CHUNK_ROWS = 4096
"""Rows per streamed chunk: big enough for BLAS to run at full speed (2048 rows measured
about 10 % slower at D = 2048); the chunk's float64 working copy is then 64 MiB at
D = 2048, next to 32 MiB for each D×D matrix."""

NORM_EPS = 1e-12
"""Row norms are clamped to at least this before dividing (torch's F.normalize default),
so an all-zero row stays zero instead of becoming NaN."""

STATS_FORMAT_VERSION = 1



# --------------------------------------------------------------------------------------
# Streaming statistics



class MomentStats:
    """Pairwise-mergeable (count, mean, centred co-moment) of L2-normalised feature rows.

    ``m2`` is Σ (x - mean)(x - mean)^T over all rows seen, in float64. Optional
    non-negative row weights act as frequency weights (a bootstrap resample's counts).

    Degenerate input is tracked on the way: ``zero_rows`` counts all-zero rows, and while
    every row equals the first one a block costs one comparison instead of its float64
    copy and D×D product, so a constant matrix (all zeros, say) costs about one read and
    makes :func:`~dimcollapse.analysis.spectrum.spectrum_of` raise ``ConstantFeatures`` before any
    eigendecomposition.
    """

    def __init__(self, dim: int, normalize: bool = True) -> None:
        if dim < 1:
            raise ValueError(f"feature dimension must be >= 1, got {dim}")
        self.dim = int(dim)
        self.normalize = bool(normalize)
        self.count = 0.0
        self.mean = np.zeros(self.dim)
        self.m2 = np.zeros((self.dim, self.dim))
        self.zero_rows = 0
        #: the row every row streamed so far equals (normalised), while ``not varied``; ``None``
        #: for statistics not streamed here (loaded, built by hand, weighted)
        self.same_row: np.ndarray | None = None
        self.varied = False
        self._first: np.ndarray | None = None  # that row as stored
        self._first_is_zero = False

    # -- accumulation -------------------------------------------------------------------

    def update(
        self,
        rows: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        source: str = "features",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> MomentStats:
        """Add feature rows (any float dtype), normalising each row first when enabled.

        ``rows`` is processed in blocks of ``chunk_rows`` so the float64 working copy
        stays bounded whatever its length. ``source`` names the data in error messages.
        Returns ``self``.
        """
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"{source}: expected a 2-D array with {self.dim} columns, got shape {rows.shape}")
        check_dtype(rows.dtype, source)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (rows.shape[0],):
                raise ValueError(f"{source}: weights shape {weights.shape} does not match {rows.shape[0]} rows")
            if not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError(f"{source}: weights must be finite and non-negative")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        for start in range(0, rows.shape[0], chunk_rows):
            stop = min(start + chunk_rows, rows.shape[0])
            w = None if weights is None else weights[start:stop]
            self.add_block(rows[start:stop], w, f"{source} rows {start}..{stop - 1}")
        return self

    def add_block(self, block: np.ndarray, weights: np.ndarray | None, where: str) -> None:
        # the shortcut holds only while every row so far was streamed here (not for loaded statistics)
        streamed_here = self.count == 0 or self._first is not None
        if weights is None and not self.varied and streamed_here and len(block) and self._repeats_first_row(block):
            return
        x = np.array(block, dtype=np.float64, order="C")
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{where}: non-finite value (NaN or inf) in block row {bad}")
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        self.zero_rows += int(np.count_nonzero(norms == 0.0))
        if self.normalize:
            x /= np.maximum(norms, NORM_EPS)[:, None]
        if weights is not None:
            keep = weights > 0
            if not keep.all():
                x = x[keep]
                weights = weights[keep]
            n_b = float(weights.sum())
        else:
            n_b = float(x.shape[0])
        if n_b == 0.0:
            return
        self.varied = True
        if weights is not None:
            mean_b = (weights @ x) / n_b
            x -= mean_b
            x *= np.sqrt(weights)[:, None]
        else:
            mean_b = x.mean(axis=0)
            x -= mean_b
        m2_b = x.T @ x  # numpy recognises A.T @ A and calls BLAS syrk
        self._merge_moments(n_b, mean_b, m2_b)

    def _repeats_first_row(self, block: np.ndarray) -> bool:
        """Add ``block`` if every row of it equals the first row seen, as stored (NaN never
        does): it then adds count and mean, and no co-moment, at the cost of one comparison."""
        first = block[0] if self._first is None else self._first
        if not (block == first).all():
            return False
        if self._first is None:
            row = np.array(first, dtype=np.float64)
            if not np.isfinite(row).all():
                return False  # the general path names it
            norm = float(np.sqrt(row @ row))
            if self.normalize:
                row /= max(norm, NORM_EPS)
            self._first, self.same_row, self._first_is_zero = np.array(first), row, norm == 0.0
        assert self.same_row is not None  # kept together with ``_first``
        self.zero_rows += block.shape[0] if self._first_is_zero else 0
        self._merge_moments(float(block.shape[0]), self.same_row, None)
        return True

    def _merge_moments(self, n_b: float, mean_b: np.ndarray, m2_b: np.ndarray | None) -> None:
        """Chan/Golub/LeVeque: combine (n_a, mean_a, M2_a) with (n_b, mean_b, M2_b) in place
        (``m2_b=None``: a zero co-moment)."""
        n_a = self.count
        if n_a == 0.0:
            self.count = n_b
            self.mean = np.array(mean_b, dtype=np.float64)
            if m2_b is not None:
                self.m2 = np.array(m2_b, dtype=np.float64, order="C")
            return
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        if m2_b is not None:
            self.m2 += m2_b
        # m2 += (n_a n_b / n) δ δ^T in place (BLAS dger on the F-ordered view of the
        # C-ordered symmetric matrix), sparing a D×D temporary
        if self.m2.flags.c_contiguous:
            dger(n_a * n_b / n, delta, delta, a=self.m2.T, overwrite_a=True)
        else:
            self.m2 += np.outer(delta, delta * (n_a * n_b / n))
        self.count = n

    def merge(self, other: MomentStats) -> MomentStats:
        """A new object holding the statistics of both inputs' rows together."""
        if other.dim != self.dim or other.normalize != self.normalize:
            raise ValueError(
                f"cannot merge statistics of dim={self.dim}, normalize={self.normalize} "
                f"with dim={other.dim}, normalize={other.normalize}"
            )
        out = self.copy()
        if other.count > 0:
            if out.count == 0:
                out.same_row, out.varied = other.same_row, other.varied
                out._first, out._first_is_zero = other._first, other._first_is_zero
            else:
                out.varied = out.varied or other.varied or not _same_row(out.same_row, other.same_row)
            out._merge_moments(other.count, other.mean, other.m2)
            out.zero_rows += other.zero_rows
        return out

    def copy(self) -> MomentStats:
        out = MomentStats(self.dim, self.normalize)
        out.count = self.count
        out.mean = self.mean.copy()
        out.m2 = self.m2.copy()
        out.zero_rows, out.same_row, out.varied = self.zero_rows, self.same_row, self.varied
        out._first, out._first_is_zero = self._first, self._first_is_zero
        return out

    # -- derived matrices ---------------------------------------------------------------

    @property
    def covariance(self) -> np.ndarray:
        """Sample covariance M2 / (N - 1), as ``np.cov`` computes it."""
        if self.count < 2:
            raise ValueError(f"covariance needs at least 2 rows, have {self.count:g}")
        return self.m2 / (self.count - 1.0)

    @property
    def second_moment(self) -> np.ndarray:
        """Uncentred Σ x x^T = M2 + N·mean·mean^T (eigenvalues = σ² of the uncentred matrix)."""
        s = np.array(self.m2, dtype=np.float64, order="C")
        dger(self.count, self.mean, self.mean, a=s.T, overwrite_a=True)  # in place, no D×D temporary
        return s

    # -- persistence --------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the statistics to an ``.npz`` file, atomically."""
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                version=np.int64(STATS_FORMAT_VERSION),
                count=np.float64(self.count),
                mean=self.mean,
                m2=self.m2,
                normalize=np.bool_(self.normalize),
                zero_rows=np.int64(self.zero_rows),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MomentStats:
        """Read statistics written by :meth:`save`; a malformed file raises naming it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable statistics file: {err}") from err
        missing = {"version", "count", "mean", "m2", "normalize"} - set(fields)
        if missing:
            raise ValueError(f"{path}: not a statistics file, missing {sorted(missing)}")
        if int(fields["version"]) != STATS_FORMAT_VERSION:
            version = int(fields["version"])
            raise ValueError(f"{path}: statistics format version {version}, expected {STATS_FORMAT_VERSION}")
        mean, m2 = fields["mean"], fields["m2"]
        if mean.ndim != 1 or m2.shape != (mean.size, mean.size):
            raise ValueError(f"{path}: inconsistent shapes mean {mean.shape}, m2 {m2.shape}")
        out = cls(mean.size, bool(fields["normalize"]))
        out.count = float(fields["count"])
        out.mean = mean.astype(np.float64)
        out.m2 = np.array(m2, dtype=np.float64, order="C")
        out.zero_rows = int(fields.get("zero_rows", 0))
        return out

    # -- construction from data ---------------------------------------------------------

    @classmethod
    def from_array(
        cls, features: np.ndarray, normalize: bool = True, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> MomentStats:
        features = np.asarray(features)
        if features.ndim != 2:
            raise ValueError(f"features: expected a 2-D array (N × D), got shape {features.shape}")
        return cls(features.shape[1], normalize).update(features, chunk_rows=chunk_rows)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], normalize: bool = True, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> MomentStats:
        reader = NpyRows(path)
        stats = cls(reader.dim, normalize)
        for start, block in reader.chunks(chunk_rows):
            stats.add_block(block, None, f"{path} rows {start}..{start + block.shape[0] - 1}")
        return stats


# --------------------------------------------------------------------------------------
# Reading .npy files in row chunks


def _same_row(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two ``same_row`` values agree (``None``, not streamed here, agrees with ``None``)."""
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)


def check_dtype(dtype: np.dtype, source: str) -> None:
    if dtype.kind != "f":
        raise ValueError(f"{source}: features must be floating point, got dtype {dtype}")


class NpyRows:
    """Row-chunk reader of a 2-D C-order ``.npy`` file with bounded memory.

    Chunks are read with ``readinto`` into one reused buffer instead of through a memory
    map: a map's touched pages count towards the process's resident memory until it is
    unmapped, so mapping an 8 GB file would make the resident size grow with N.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except ValueError as err:
                raise ValueError(f"{self.path}: not a readable .npy file: {err}") from err
            self.offset = fh.tell()
        if len(shape) != 2:
            raise ValueError(f"{self.path}: expected a 2-D feature matrix (N × D), got shape {shape}")
        if fortran and shape[0] > 1 and shape[1] > 1:
            raise ValueError(f"{self.path}: Fortran-order arrays are not supported; save features in C order")
        check_dtype(dtype, str(self.path))
        self.n_rows, self.dim = int(shape[0]), int(shape[1])
        self.dtype = dtype
        expected = self.offset + self.n_rows * self.dim * dtype.itemsize
        actual = self.path.stat().st_size
        if actual < expected:
            raise ValueError(f"{self.path}: truncated: {actual} bytes, header promises {expected} ({shape}, {dtype})")
        if self.n_rows == 0 or self.dim == 0:
            raise ValueError(f"{self.path}: empty feature matrix of shape {shape}")

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, block)``; ``block`` is a view of a reused buffer."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        buf = np.empty((min(chunk_rows, self.n_rows), self.dim), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(self.offset)
            for start in range(0, self.n_rows, chunk_rows):
                rows = min(chunk_rows, self.n_rows - start)
                view = buf[:rows].data.cast("B")  # the rows' bytes, read into in place
                got = 0
                while got < len(view):
                    n = fh.readinto(view[got:])
                    if not n:
                        raise ValueError(f"{self.path}: unexpected end of file at row {start}")
                    got += n
                yield start, buf[:rows]


def row_source(source: np.ndarray | str | os.PathLike[str]) -> tuple[int, int, str]:
    if isinstance(source, (str, os.PathLike)):
        reader = NpyRows(source)
        return reader.n_rows, reader.dim, str(source)
    arr = np.asarray(source)
    if arr.ndim != 2:
        raise ValueError(f"features: expected a 2-D array (N × D), got shape {arr.shape}")
    return arr.shape[0], arr.shape[1], "features"


def iter_rows(source: np.ndarray | str | os.PathLike[str], chunk_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    if isinstance(source, (str, os.PathLike)):
        yield from NpyRows(source).chunks(chunk_rows)
    else:
        arr = np.asarray(source)
        for start in range(0, arr.shape[0], chunk_rows):
            yield start, arr[start : start + chunk_rows]
