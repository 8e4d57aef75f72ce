"""The numerics version guards the feature store: features of a fixture video are pinned.

The store and the extract rule key features by ``NUMERICS_VERSION`` instead of a hash of
the code, so a refactoring reruns nothing. The price is this test: it extracts two real
sample videos through the whole job path (probe, content hash, decode, sampling, crop,
normalisation, seeded model construction, full batches, view averaging) for a Slow R50
(``paper`` sampling) and a DPC R18 (``dpc`` sampling), and compares with values pinned
for the current version. If a change alters them, bump ``NUMERICS_VERSION`` in
``dimcollapse/extraction/numerics.py`` and pin the new values under the new number.

The tolerance (1e-5 relative) absorbs CPU kernel differences between machines and
PyTorch builds; real numerics changes (a different resize, crop, frame or weight) move
these values by orders of magnitude more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from extract_fixtures import job_for, run_extract

from dimcollapse.data.content import file_digest
from dimcollapse.data.manifest import write_manifest
from dimcollapse.data.probe import probe_video
from dimcollapse.extraction.numerics import NUMERICS_VERSION
from dimcollapse.extraction.shards import ShardResult

VIDEOS = Path("/work/shared/testdata/videos")
FIXTURES = ("Megamind.avi", "vtest.avi")

#: {version: {(instance, space): (row norms, first 6 values of each row)}}: the current
#: version's pins only (bumping the version replaces them; git keeps the history)
PINNED: dict[int, dict[tuple[str, str], tuple[list[float], list[list[float]]]]] = {
    2: {  # dpc: frames scaled and rounded to uint8 like DPC's frame dumps (slowfast_test: SlowFast's own sampling)
        ("simclr", "representation"): (
            [35.707013, 30.430535],
            [[0.119207099, 0.542454779, 0.613546491, 0.26552093, 0.151249602, 0.0346348695],
             [0.127395943, 0.467349619, 0.56869626, 0.239297599, 0.115347177, 0.0515483096]]),
        ("simclr", "embedding"): (
            [1.00000006, 0.999999988],
            [[-0.150917798, -0.0669345334, -0.182825714, -0.0519063324, -0.0634635612, 0.0136070643],
             [-0.161611542, -0.0485326089, -0.184668317, -0.0416120924, -0.0782751068, 0.0310747586]]),
        ("dpc", "representation"): (
            [8.06482743, 5.9831538],
            [[0.0825775713, -0.626342475, 0.61283654, -0.328744292, 0.657469928, 0.73128289],
             [-0.0939227119, -0.461679161, 0.469743699, -0.238289386, 0.508223593, 0.47397089]]),
    },
}


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], np.ndarray]:
    if not VIDEOS.is_dir():
        pytest.skip("sample videos not available")
    root = tmp_path_factory.mktemp("numerics")
    rows = []
    for i, name in enumerate(FIXTURES):
        path = VIDEOS / name
        probe = probe_video(path)
        rows.append({"id": name, "path": str(path), "label": i, "label_name": f"c{i}", "duration": probe.duration,
                     "fps": probe.fps, "frames": probe.frames, "width": probe.width, "height": probe.height,
                     "content": file_digest(path)})
    manifest = root / "manifest.csv"
    write_manifest(manifest, pd.DataFrame(rows))
    threads = torch.get_num_threads()
    out = {}
    try:
        for name in ("simclr", "dpc"):
            path = root / f"{name}.npz"
            run_extract(job=job_for(name), manifest=manifest, output=path, store_root=root / "store")
            result = ShardResult.load(path)
            assert result.ok.all()
            out |= {(name, space): values for space, values in result.features.items()}
    finally:
        torch.set_num_threads(threads)
    return out


def test_fixture_features_match_the_pinned_values_of_this_numerics_version(
    features: dict[tuple[str, str], np.ndarray],
) -> None:
    assert NUMERICS_VERSION in PINNED, (
        f"NUMERICS_VERSION is {NUMERICS_VERSION} but no values are pinned for it: pin "
        f"{ {k: _summary(v) for k, v in features.items()} }"
    )
    pinned = PINNED[NUMERICS_VERSION]
    assert set(pinned) == set(features)
    for key, values in features.items():
        norms, heads = pinned[key]
        got_norms, got_heads = _summary(values)
        scale = max(norms)
        ok = np.allclose(got_norms, norms, rtol=1e-5) and np.allclose(got_heads, heads, rtol=1e-5, atol=1e-5 * scale)
        assert ok, (
            f"{key}: features of the fixture videos changed while NUMERICS_VERSION stayed {NUMERICS_VERSION}. "
            f"If the change is intended, bump NUMERICS_VERSION (dimcollapse/extraction/numerics.py) and pin "
            f"{(got_norms, got_heads)} under the new version; pinned: {(norms, heads)}"
        )


def _summary(values: np.ndarray) -> tuple[list[float], list[list[float]]]:
    norms = np.linalg.norm(values.astype(np.float64), axis=1)
    return [float(f"{n:.9g}") for n in norms], [[float(f"{v:.9g}") for v in row[:6]] for row in values]
