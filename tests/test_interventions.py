"""Frame-order interventions: the orders themselves, their application to views, their configuration."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from dimcollapse.data.interventions import (
    FRAME_ORDERS,
    frame_indices,
    intervened_space,
    reorder_views,
    shuffled_indices,
    split_space,
    views_intervention,
)
from dimcollapse.data.protocols import resolve_protocol
from dimcollapse.extraction.store import clip_keys

KEYS = clip_keys([f"content{i}" for i in range(64)], [2.5] * 64, [30.0] * 64)


def test_reversed_twice_is_the_original() -> None:
    for frames in (1, 2, 7, 8, 25):
        once = frame_indices("reversed", frames)
        assert np.array_equal(once, np.arange(frames)[::-1])
        assert np.array_equal(once[once], np.arange(frames))
    video = torch.randn(3, 2, 3, 8, 5, 5)
    rev = np.stack([frame_indices("reversed", 8)] * 3)
    assert torch.equal(reorder_views(reorder_views(video, rev), rev), video)
    assert torch.equal(reorder_views(video, rev), video.flip(3))


@pytest.mark.parametrize("frames", [2, 3, 4, 8, 16, 25, 64])
def test_shuffled_is_a_permutation_never_the_identity(frames: int) -> None:
    orders = [shuffled_indices(frames, key) for key in KEYS]
    for order in orders:
        assert sorted(order.tolist()) == list(range(frames))
        assert not np.array_equal(order, np.arange(frames))
    if frames >= 8:  # seeded per clip: clips get different permutations
        assert len({tuple(o) for o in orders}) > len(orders) // 2
    assert np.array_equal(shuffled_indices(1, KEYS[0]), [0])


def test_shuffled_is_the_same_on_every_run_and_process() -> None:
    """Pinned values: a change of the generator (or of NumPy) would show here; a child process
    with another hash seed draws the same."""
    assert shuffled_indices(8, b"\x00" * 16).tolist() == PINNED_8
    assert frame_indices("shuffled", 8, KEYS[3]).tolist() == frame_indices("shuffled", 8, bytes(KEYS[3])).tolist()
    code = ("from dimcollapse.data.interventions import shuffled_indices; from dimcollapse.extraction.store import "
            "clip_keys; k = clip_keys(['content3'], [2.5], [30.0]); print(shuffled_indices(16, k[0]).tolist())")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""})
    assert child.stdout.strip() == str(shuffled_indices(16, KEYS[3]).tolist())


PINNED_8 = [1, 5, 3, 4, 6, 2, 0, 7]


def test_frozen_repeats_the_middle_frame() -> None:
    assert frame_indices("frozen", 8).tolist() == [4] * 8
    assert frame_indices("frozen", 5).tolist() == [2] * 5
    assert frame_indices("original", 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown frame order 'sideways'"):
        frame_indices("sideways", 4)


def test_space_names() -> None:
    assert intervened_space("representation", "shuffled") == "representation@shuffled"
    assert intervened_space("layer.blocks.3", "original") == "layer.blocks.3"
    assert split_space("layer.blocks.3@frozen") == ("layer.blocks.3", "frozen")
    assert split_space("representation") == ("representation", "original")
    assert split_space("mine@10") == ("mine@10", "original")  # a series member's name is not an order
    assert FRAME_ORDERS == ("original", "reversed", "shuffled", "frozen")


def _frames_of_views(views: torch.Tensor, dpc: bool) -> torch.Tensor:
    """One view's frames as C × T′ × H × W (DPC: the N·SL frames of its blocks in sequence)."""
    if dpc:
        n, c, sl, h, w = views.shape
        return views.permute(1, 0, 2, 3, 4).reshape(c, n * sl, h, w)
    return views


@pytest.mark.parametrize("preset", ["paper", "dpc", "slowfast_test"])
@pytest.mark.parametrize("order", ["reversed", "shuffled", "frozen"])
def test_views_get_each_clip_s_frames_in_its_order(preset: str, order: str) -> None:
    """The reordered views are the original frames taken in the clip's order, every window alike
    (DPC: its 25 frames across the 5 blocks)."""
    options = {"paper": {"frames": 6}, "dpc": {"num_seq": 3, "seq_len": 4},
               "slowfast_test": {"frames": 5, "temporal_views": 2, "spatial_views": 1}}[preset]
    protocol = resolve_protocol(preset, crop_size=4, **options)
    rows = np.array([5, 17, 2])
    video = torch.randn(len(rows), protocol.views, *protocol.clip_shape)
    intervene = views_intervention(protocol, order, KEYS)
    out = intervene(video, rows)
    t = protocol.frames_per_window
    for b, row in enumerate(rows):
        index = frame_indices(order, t, KEYS[row])
        for v in range(protocol.views):
            before = _frames_of_views(video[b, v], preset == "dpc")
            after = _frames_of_views(out[b, v], preset == "dpc")
            assert torch.equal(after, before[:, index])
    assert views_intervention(protocol, "original", KEYS) is None


def test_reorder_refuses_mismatched_orders() -> None:
    with pytest.raises(ValueError, match="frame orders of shape"):
        reorder_views(torch.zeros(2, 1, 3, 4, 2, 2), np.zeros((2, 5), np.int64))


def test_the_config_section_expands_series_and_names_unknown_instances() -> None:
    from dimcollapse.config.instances import model_instances
    from dimcollapse.config.temporal import extraction_job, intervened_spaces, interventions

    config = {
        "models": {"a": {"method": "SimCLR"},
                   "run": {"method": "supervised", "checkpoints": ["w/epoch_5.pth", "w/epoch_10.pth"]}},
        "temporal": {"interventions": {"run": ["frozen", "shuffled"], "a": ["reversed"]}},
        "extraction": {"precision": "fp32", "keep_views": False}, "datasets": {"d": {}},
    }
    instances = model_instances(config)
    orders = interventions(config, instances)
    assert orders == {"a": ("reversed",), "run@5": ("shuffled", "frozen"), "run@10": ("shuffled", "frozen")}
    assert intervened_spaces(instances["a"], orders["a"]) == ["representation@reversed", "embedding@reversed"]
    protocol = resolve_protocol("paper")
    plain = extraction_job(config, instances["a"], protocol)
    assert "frame_order" not in plain and "time_resolved" not in plain["model"]  # jobs as before
    assert extraction_job(config, instances["a"], protocol, "reversed") == {**plain, "frame_order": "reversed"}
    config["temporal"]["interventions"]["zz"] = ["shuffled"]
    with pytest.raises(ValueError, match=r"temporal.interventions: unknown model instances \['zz'\]"):
        interventions(config, instances)


def test_the_schema_takes_only_known_orders() -> None:
    from snakemake.utils import validate

    from workflow_helpers import REPO

    schema = str(REPO / "schemas" / "config.schema.yaml")
    config = {"datasets": {"d": {"layout": "folder", "root": "x"}}, "models": {"a": {"method": "SimCLR"}},
              "temporal": {"interventions": {"a": ["shuffled"]}}}
    validate(config, schema)
    config["temporal"]["interventions"]["a"] = ["sideways"]
    with pytest.raises(Exception, match="sideways"):
        validate(config, schema)


def test_store_prune_keeps_the_key_of_every_frame_order(tmp_path) -> None:
    """Each order is a feature-store key of its own; ``dimcollapse store prune`` must count them as used."""
    from dimcollapse.config.instances import model_instances
    from dimcollapse.config.jobs import job_protocol
    from dimcollapse.extraction.store import identity_key, instance_identity
    from dimcollapse.results_stores import config_usage
    from dimcollapse.config.temporal import extraction_job

    config = {"models": {"a": {"method": "SimCLR", "seed": 1}}, "datasets": {"d": {}}, "protocols": {},
              "extraction": {"clip_cache": True, "precision": "fp32", "keep_views": False},
              "temporal": {"interventions": {"a": ["shuffled", "frozen"]}}}
    model = model_instances(config)["a"]
    protocol = job_protocol(config, "d", model)
    keys = {order: identity_key(instance_identity(extraction_job(config, model, protocol, order), None, clip_cache=True))
            for order in ("original", "shuffled", "frozen")}
    assert len(set(keys.values())) == 3
    assert config_usage([config], tmp_path).store_keys == set(keys.values())
