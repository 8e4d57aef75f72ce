"""Frame-order interventions and time-resolved spaces through the real extraction, per model family.

Each family's intervened space, as ``extract_shard`` writes it, must equal the model applied
directly to the clips whose decoded frames were put in that order (REFERENCE §15), and each
time-resolved array must average over its time steps to the pooled space. Tiny models and
five demo videos keep this cheap; the extraction functions are called directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from extract_fixtures import CONFIG, make_dataset, run_extract, run_stage
from hf_helpers import save_tiny
from dimcollapse.config import instances, jobs
from dimcollapse.config import temporal as tcfg
from dimcollapse.analysis.similarity_measures import linear_cka
from dimcollapse.analysis.temporal import mean_cosine
from dimcollapse.data.interventions import frame_indices, views_intervention
from dimcollapse.data.manifest import read_manifest
from dimcollapse.data.protocols import Protocol
from dimcollapse.data.video import decode_row
from dimcollapse.data.views import frames_to_views
from dimcollapse.data.manifest import as_rows
from dimcollapse.extraction.shards import ShardResult
from dimcollapse.extraction.store import clip_keys
from dimcollapse.models import build_model
from dimcollapse.models.hub import fetch_snapshot

pytestmark = pytest.mark.xdist_group("temporal_extract")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("temporal"), videos_per_class=1)


@pytest.fixture(scope="module")
def hf_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Download-rule records of a tiny VideoMAE, TimeSformer and DINOv2 (what extraction jobs get)."""
    root = tmp_path_factory.mktemp("hf")
    records = {}
    for name in ("VideoMAEModel", "TimesformerModel", "Dinov2Model"):
        save_tiny(name, root / name)
        (root / "records" / name).mkdir(parents=True)
        records[name] = root / "records" / name / "hf_snapshot"
        fetch_snapshot(str(root / name), records[name], records[name].with_suffix(".json"))
    return records


def study(name: str, entry: dict[str, Any], frames: int | None = None) -> dict[str, Any]:
    protocols = {k: dict(v) for k, v in CONFIG["protocols"].items()}
    return {**CONFIG, "protocols": protocols, "models": {name: entry},
            "extraction": {"precision": "fp32", "keep_views": False}}


def extract(tmp: Path, manifest: Path, config: dict[str, Any], name: str, order: str,
            checkpoint: Path | None = None) -> tuple[ShardResult, dict[str, Any]]:
    model = instances.model_instance(name, config["models"][name])
    protocol = jobs.job_protocol(config, "tiny", model)
    job = tcfg.extraction_job(config, model, protocol, order)
    out = tmp / f"{name}-{order}.npz"
    run_extract(job=job, manifest=manifest, output=out, store_root=tmp / "store", checkpoint=checkpoint)
    return ShardResult.load(out), job


def direct(job: dict[str, Any], manifest: Path, order: str, checkpoint: Path | None = None) -> dict[str, np.ndarray]:
    """The model on every clip whose decoded frames were put in ``order`` (each window alike)."""
    frame = read_manifest(manifest)
    rows = as_rows(frame)
    keys = clip_keys(frame["content"], frame["duration"], frame["fps"])
    protocol = Protocol.from_dict(job["protocol"])
    per = protocol.frames_per_window
    views = []
    for i, row in enumerate(rows):
        frames, _ = decode_row(row, protocol)
        index = frame_indices(order, per, keys[i])
        reordered = np.concatenate([frames[w * per:(w + 1) * per][index] for w in range(len(frames) // per)])
        views.append(frames_to_views(reordered, protocol))
    model = build_model(job["model"]["method"], checkpoint=checkpoint, **job["build_options"]).eval()
    video = torch.stack(views)
    with torch.inference_mode():
        out = model(video.reshape(-1, *video.shape[2:]))
    return {s: v.reshape(len(rows), video.shape[1], -1).mean(1).numpy() for s, v in out.items()}


def assert_close(got: np.ndarray, want: np.ndarray, rel: float = 1e-5) -> None:
    assert got.shape == want.shape
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert err <= rel, err


FAMILIES = {
    "slow_r50": ("sup", {"method": "supervised", "seed": 0}, "shuffled", None),
    "dpc": ("dpc", {"method": "DPC", "seed": 2, "options": {"arch": "resnet18"}}, "shuffled", None),
    "torchvision": ("tv", {"method": "torchvision", "seed": 3, "options": {"arch": "r3d_18"}, "frames": 8,
                           "protocol_options": {"side_size": 64, "crop_size": 64}}, "reversed", None),
    "transformers video": ("vm", {"method": "transformers", "protocol_options": {"side_size": 32, "crop_size": 32}},
                           "shuffled", "VideoMAEModel"),
    "image encoder": ("dino", {"method": "transformers", "frames": 4,
                               "protocol_options": {"side_size": 32, "crop_size": 32}}, "frozen", "Dinov2Model"),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_intervened_space_equals_the_model_on_the_reordered_clip(
    family: str, dataset: Path, hf_records: dict[str, Path], tmp_path: Path,
) -> None:
    name, entry, order, hf = FAMILIES[family]
    checkpoint = hf_records[hf] if hf else None
    if hf:
        entry = {**entry, "checkpoint": str(checkpoint.parents[2] / hf)}  # the folder the record names
    config = study(name, entry)
    result, job = extract(tmp_path, dataset, config, name, order, checkpoint)
    assert job["frame_order"] == order and set(result.features) == {f"representation@{order}"}
    assert result.ok.all()
    want = direct(job, dataset, order, checkpoint)["representation"]
    assert_close(result.features[f"representation@{order}"], want)
    original = direct(job, dataset, "original", checkpoint)["representation"]
    if family != "image encoder":  # a frame-by-frame mean is order-blind; frozen changes it still
        assert np.linalg.norm(want - original) > 1e-4 * np.linalg.norm(original)


def _static_video(path: Path, colour: tuple[int, int, int], frames: int = 90) -> None:
    """A lossless H.264 video whose decoded frames are all the same picture."""
    rng = np.random.default_rng(sum(colour))
    picture = np.clip(np.array(colour)[None, None] + rng.integers(-40, 40, size=(96, 128, 3)), 0, 255).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv444p"
        for _ in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())


def test_frozen_frames_of_a_still_video_give_the_original_features_exactly(tmp_path: Path) -> None:
    from dimcollapse.data.manifest import build_manifest, write_manifest

    root = tmp_path / "videos" / "val" / "still"
    root.mkdir(parents=True)
    for i, colour in enumerate([(200, 30, 30), (30, 120, 220)]):
        _static_video(root / f"still_{i}.mp4", colour)
    frame, failures = build_manifest({"layout": "kinetics", "root": str(tmp_path / "videos"), "split": "val"},
                                     progress=False)
    assert not failures
    manifest = tmp_path / "manifest.csv"
    write_manifest(manifest, frame)
    first, _ = decode_row(as_rows(frame)[0], jobs.job_protocol(CONFIG, "tiny", instances.model_instance("s", {"method": "supervised"})))
    assert (first == first[0]).all(), "the test video must have identical frames"
    config = study("sup", {"method": "supervised", "seed": 0})
    original, _ = extract(tmp_path, manifest, config, "sup", "original")
    frozen, _ = extract(tmp_path, manifest, config, "sup", "frozen")
    assert np.array_equal(frozen.features["representation@frozen"], original.features["representation"])


def test_the_order_blind_demo_net_ignores_frame_order_and_the_3d_cnn_does_not() -> None:
    torch.manual_seed(0)
    t = torch.linspace(0, 1, 8)
    base = torch.randn(16, 3, 1, 64, 64)
    video = (base + torch.randn(16, 3, 1, 1, 1) * t[None, None, :, None, None] * 3 + 0.3 * torch.randn(16, 3, 8, 64, 64))
    keys = clip_keys([f"c{i}" for i in range(16)], [1.0] * 16, [30.0] * 16)
    protocol = jobs.job_protocol({**CONFIG, "protocols": {"paper": {"side_size": 64, "crop_size": 64}}}, "tiny",
                                 instances.model_instance("c", {"method": "custom", "options": {"builder": "x:y"}}))
    nets = {name: build_model("custom", builder=f"dimcollapse.models.demo_nets:{name}", builder_options={"width": 64},
                              seed=7, frames=8, crop_size=64) for name in ("demo_frame_net", "demo_video_net")}
    rows = np.arange(16)
    for order in ("shuffled", "reversed"):
        moved = views_intervention(protocol, order, keys)(video[:, None], rows)[:, 0]
        for name, net in nets.items():
            with torch.inference_mode():
                a, b = net(video)["representation"].numpy(), net(moved)["representation"].numpy()
            cka, cos = linear_cka(a, b), mean_cosine(a, b)
            if name == "demo_frame_net":
                assert abs(cka - 1) <= 1e-6 and abs(cos - 1) <= 1e-6, (order, cka, cos)
            else:
                assert cka < 1 - 1e-3 and cos < 1 - 1e-4, (order, cka, cos)


# ------------------------------------------------------------------------ time-resolved spaces


def _time_resolved(model: torch.nn.Module, x: torch.Tensor, spaces: list[str]) -> None:
    with torch.inference_mode():
        out = model(x)
    for space in spaces:
        steps = out[f"{space}_time"]
        assert steps.ndim == 3 and steps.shape[0] == x.shape[0] and steps.shape[2] == out[space].shape[1]
        torch.testing.assert_close(steps.mean(1), out[space], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("method", "options", "spaces", "steps"), [
    ("supervised", {}, ["representation"], 8),
    ("SimCLR", {"layers": ["backbone.s4.pathway0_res5"]}, ["representation", "layer.backbone.s4.pathway0_res5"], 8),
    ("torchvision", {"arch": "r3d_18", "frames": 8, "layers": ["layer2"]}, ["layer.layer2"], 4),
    ("custom", {"builder": "dimcollapse.models.demo_nets:demo_frame_net", "layers": ["stage2"], "frames": 8},
     ["layer.stage2"], 8),
])
def test_time_resolved_spaces_average_to_the_pooled_ones(method: str, options: dict, spaces: list[str],
                                                         steps: int) -> None:
    model = build_model(method, crop_size=64, time_resolved=spaces, **options)
    x = torch.randn(2, 3, 8, 64, 64)
    _time_resolved(model, x, spaces)
    with torch.inference_mode():
        assert model(x)[f"{spaces[-1]}_time"].shape[1] == steps
    assert model.provenance["time_resolved"] == spaces


@pytest.mark.parametrize(("cls", "spaces", "steps"), [
    ("VideoMAEModel", ["representation", "layer.encoder.layer.1"], 2),
    ("TimesformerModel", ["layer.encoder.layer.0"], 4),
    ("Dinov2Model", ["representation", "layer.encoder.layer.1"], 4),
])
def test_transformers_time_resolved_spaces(cls: str, spaces: list[str], steps: int, hf_records: dict[str, Path]) -> None:
    layers = [s.removeprefix("layer.") for s in spaces if s.startswith("layer.")]
    model = build_model("transformers", checkpoint=hf_records[cls], frames=4, layers=layers, time_resolved=spaces)
    x = torch.randn(2, 3, 4, 32, 32)
    _time_resolved(model, x, spaces)
    with torch.inference_mode():
        assert model(x)[f"{spaces[0]}_time"].shape[1] == steps


@pytest.mark.parametrize(("cls", "tubelet"), [("VideoMAEModel", 2), ("TimesformerModel", 1)])
def test_token_groups_are_the_tokens_of_their_frames(cls: str, tubelet: int, hf_records: dict[str, Path]) -> None:
    """Changing the frames of one time step changes exactly the tokens of that step's group in the
    sequence the blocks see (VideoMAE: time-major; TimeSformer: space-major after its time embedding)."""
    from dimcollapse.models.time_resolved import SPACE_MAJOR_TOKENS, tokens_by_time

    model = build_model("transformers", checkpoint=hf_records[cls], frames=4)
    embeddings = next(m for n, m in model.encoder.named_modules() if n.rsplit(".", 1)[-1] == "embeddings")
    seen: list[torch.Tensor] = []
    embeddings.register_forward_hook(lambda m, a, out: seen.append(out[:, 1:] if cls.startswith("Times") else out))
    x = torch.randn(1, 3, 4, 32, 32)
    y = x.clone()
    y[:, :, 2:3] += 1.0  # frame 2: time step 2 // tubelet
    with torch.inference_mode():
        model(x), model(y)
    changed = (seen[0] - seen[1]).abs().amax(dim=2) > 0  # 1 × N tokens
    marker = changed.float()[..., None]
    by_step = tokens_by_time(marker, 4 // tubelet, cls in SPACE_MAJOR_TOKENS, "test")[0, :, 0]
    expect = torch.zeros(4 // tubelet)
    expect[2 // tubelet] = 1.0
    torch.testing.assert_close(by_step, expect)


@pytest.mark.parametrize(("entry", "message"), [
    ({"method": "DPC", "time_resolved": True}, "GRU run over its blocks"),
    ({"method": "torchvision", "options": {"arch": "r3d_18"}, "time_resolved": ["representation"]},
     "already averaged over time"),
    ({"method": "SimCLR", "time_resolved": ["embedding"]}, "projection of the pooled representation"),
    ({"method": "supervised", "time_resolved": ["layer.x"]}, "not one of its spaces"),
])
def test_a_space_without_a_time_axis_is_refused_naming_the_instance(entry: dict, message: str) -> None:
    config = {**CONFIG, "models": {"m": entry}}
    model = instances.model_instance("m", entry)
    with pytest.raises(ValueError, match=f"model 'm': time_resolved.*{message}"):
        tcfg.time_resolved(config, model)


def test_time_resolved_extraction_and_merge(dataset: Path, tmp_path: Path) -> None:
    """The shard holds ``representation_time`` (T′·D per clip); the merge stage writes N × T′ × D
    whose mean over time is the representation."""
    from dimcollapse.stages import temporal
    from dimcollapse.extraction.features import aligned_index

    config = study("sup", {"method": "supervised", "seed": 0, "time_resolved": True})
    result, job = extract(tmp_path, dataset, config, "sup", "original")
    assert job["model"]["time_resolved"] == ["representation"] and set(result.features) == {
        "representation", "representation_time"}
    index = tmp_path / "index.csv"
    aligned_index(read_manifest(dataset), []).to_csv(index, index=False)
    out = {"features": str(tmp_path / "representation_time.npy"), "sidecar": str(tmp_path / "representation_time.json")}
    run_stage(temporal.merge_time_resolved, tmp_path / "merge.log",
              input={"shards": [str(tmp_path / "sup-original.npz")], "index": str(index), "manifest": str(dataset)},
              output=out, params={"job": job}, wildcards={"dataset": "tiny", "method": "sup", "space": "representation"})
    steps = np.load(out["features"])
    assert steps.shape == (5, 8, 2048)
    assert_close(steps.mean(axis=1), result.features["representation"], rel=1e-6)
    sidecar = json.loads(Path(out["sidecar"]).read_text())
    assert sidecar["shape"] == [5, 8, 2048] and sidecar["space"] == "representation_time"
    # the original key of the store is the one without time_resolved: the pooled clips are reused
    again, _ = extract(tmp_path, dataset, study("sup", {"method": "supervised", "seed": 0}), "sup", "original")
    np.testing.assert_array_equal(again.features["representation"], result.features["representation"])
    assert again.meta["clips_reused"] == 5
