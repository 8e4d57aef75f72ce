"""The demo's collapse contrast: a small 3D CNN with and without a low-rank bottleneck."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from dimcollapse.analysis.spectrum import analyze
from dimcollapse.config.instances import model_instances
from dimcollapse.models import build_model
from workflow_helpers import REPO

BUILDER = "dimcollapse.models.demo_nets:demo_video_net"


def _representation(bottleneck: int | None, clips: torch.Tensor) -> np.ndarray:
    model = build_model("custom", builder=BUILDER, builder_options={"width": 64, "bottleneck": bottleneck},
                        seed=7, frames=clips.shape[2], crop_size=clips.shape[-1])
    with torch.no_grad():
        return model(clips)["representation"].numpy()


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Moving bright squares on noise: rows that differ in more than their mean."""
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(24, 3, 8, 48, 48, generator=g)
    for i in range(len(x)):
        top, left, step = int(torch.randint(0, 24, (1,), generator=g)), int(torch.randint(0, 24, (1,), generator=g)), i % 5 - 2
        for t in range(8):
            c = (left + step * t) % 36
            x[i, i % 3, t, top:top + 12, c:c + 12] = 1.0
    return x


@pytest.mark.filterwarnings("ignore::dimcollapse.analysis.spectrum.RankLimitedWarning")
def test_bottleneck_cuts_the_spectrum_at_its_rank_and_halves_rankme(clips: torch.Tensor) -> None:
    wide, narrow = analyze(_representation(None, clips)), analyze(_representation(2, clips))
    assert wide.numerical_rank == len(clips) - 1  # only the N <= D floor cuts the wide one
    assert narrow.numerical_rank == 2
    assert narrow.log_spectrum[2] == narrow.log_floor < narrow.log_spectrum[1] - 10  # a cliff, not a slope
    assert narrow.rankme <= 2 + 1e-6
    assert narrow.rankme <= wide.rankme / 2


def test_same_seed_gives_the_same_convolutions() -> None:
    """The contrast is the bottleneck alone: both networks share every other weight."""
    nets = [build_model("custom", builder=BUILDER, builder_options={"width": 64, "bottleneck": b}, seed=7,
                        frames=8, crop_size=32) for b in (None, 2)]
    states = [{k: v for k, v in n.state_dict().items() if "stage" in k or "stem" in k} for n in nets]
    assert states[0].keys() == states[1].keys() and states[0]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_bad_rank_is_refused() -> None:
    from dimcollapse.models.demo_nets import demo_video_net

    with pytest.raises(ValueError, match="bottleneck must be between 1 and width - 1 = 63, got 64"):
        demo_video_net(width=64, bottleneck=64)


def test_demo_config_pairs_the_bottleneck_with_the_same_network() -> None:
    models = model_instances(yaml.safe_load((REPO / "config.demo.yaml").read_text()))
    narrow = [m for m in models.values() if "bottleneck" in m.label]
    assert len(narrow) == 1
    (twin,) = [m for m in models.values() if m is not narrow[0] and m.options.get("builder") == narrow[0].options["builder"]]
    assert "bottleneck" not in twin.label and twin.seed == narrow[0].seed
    assert narrow[0].options["builder_options"] == {**twin.options["builder_options"], "bottleneck": 2}
