"""End to end with models beyond the paper: one model of each family (random weights), two
layers on one of them, a three-checkpoint series of a user's own model, and a Hugging Face
transformers model with two layers read from an ``hf://`` id in an offline Hub cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hf_helpers import hub_snapshot, save_tiny
from workflow_helpers import make_videos, snakemake, tiny_config, write_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("any_model")]

#: A user's model module, written into the study's working directory (custom builders
#: import from there).
USER_MODULE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.stem = nn.Conv3d(3, width, 3, stride=(1, 2, 2), padding=1)
        self.body = nn.Conv3d(width, 2 * width, 3, stride=2, padding=1)
        self.fc = nn.Linear(2 * width, 3)

    def forward(self, x):
        x = torch.relu(self.body(torch.relu(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3, 4)))


def build(width: int = 4):
    return Net(width)
'''
EPOCHS = (5, 20, 100)
LAYERS = ["layer1", "layer3"]
HF_LAYERS = ["encoder.layer.0", "encoder.layer.1"]


@pytest.fixture
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("anymodel")
    (workdir / "usernet.py").write_text(USER_MODULE)
    runs = workdir / "runs"
    runs.mkdir()
    import importlib.util

    spec = importlib.util.spec_from_file_location("usernet_for_test", workdir / "usernet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for epoch in EPOCHS:  # the weights drift with training progress
        torch.manual_seed(epoch)
        torch.save(module.build().state_dict(), runs / f"epoch_{epoch:05d}.pth")
    hf_home = workdir / "hf_home"  # a Hub cache holding one tiny VideoMAE, read offline
    save_tiny("VideoMAEModel", workdir / "videomae", image_size=64, patch_size=16)
    snapshot = hub_snapshot(hf_home, "tiny/videomae", workdir / "videomae")

    config = tiny_config(workdir, make_videos(workdir / "videos", bad=False))
    del config["datasets"]["real"]
    config["models"] = {
        "sup": {"method": "supervised", "label": "Supervised", "seed": 0},
        "dpc": {"method": "DPC", "label": "DPC", "seed": 2, "options": {"arch": "resnet18"}},
        "tv": {"method": "torchvision", "label": "MC3-18", "seed": 3, "options": {"arch": "mc3_18"},
               "layers": list(reversed(LAYERS)), "protocol_options": {"side_size": 64, "crop_size": 64}},
        "pv": {"method": "pytorchvideo", "label": "X3D-XS", "seed": 4, "options": {"arch": "x3d_xs"},
               "protocol_options": {"side_size": 64, "crop_size": 64}},
        "mine": {"method": "custom", "label": "Mine", "options": {"builder": "usernet:build"},
                 "checkpoints": "runs/epoch_*.pth", "order": r"epoch_(\d+)",
                 "frames": 8, "rate": 4, "protocol_options": {"side_size": 64, "crop_size": 64}},
        "hf": {"method": "transformers", "label": "VideoMAE (tiny)", "checkpoint": "hf://tiny/videomae",
               "layers": list(reversed(HF_LAYERS))},
    }
    config["datasets"]["gen"]["demo"]["videos_per_class"] = 2
    config["extraction"]["shards"] = 1  # sharding is covered by test_workflow.py and test_extract_jobs.py
    config["extraction"]["clip_cache"] = False  # decode exactly as the direct check below
    config["probes"] = {"enabled": False}  # covered by the tiny study of test_workflow.py
    config["sample_size"] = {"enabled": False}
    cfg_file = write_config(workdir / "config.yaml", config)
    snakemake(workdir, "--configfile", str(cfg_file), "--cores", "2", "--resources", "gpu=1",
              env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"})
    return {"workdir": workdir, "config": config, "snapshot": snapshot}


def test_any_model_study(study: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """One test over one run (the run takes minutes; its checks below are separate functions)."""
    # the config is resolved here too, reading the hf:// instance from the study's Hub cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(study["workdir"] / "hf_home" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    check_layer_spaces_are_feature_matrices_with_metrics(study)
    check_layer_features_equal_the_model_on_the_same_clip(study, monkeypatch)
    check_series_members_and_figures(study)
    check_cka_across_layers_instances_and_checkpoints(study)
    check_transformers_instance_from_the_hub_cache(study)
    check_store_commands(study)


def check_store_commands(study: dict) -> None:
    """``store prune`` keeps every key of the config that made the results (series members,
    layers); with a smaller config it removes exactly the keys of the instances it dropped."""
    import copy

    from dimcollapse.cli import main
    from workflow_helpers import write_config

    results = study["workdir"] / "results"

    def store(*args: str) -> tuple[int, str]:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["store", *args, "--results", str(results)])
        return code, out.getvalue()

    code, out = store("prune", "--dry-run")
    assert code == 0 and "nothing to prune" in out, out
    keys = json.loads(store("list", "--json")[1])["store"]
    owner = {k["key"]: k["used_by"][0]["instance"] for k in keys}
    assert sorted(owner.values()) == sorted(["sup", "dpc", "tv", "pv", "hf"] + [f"mine@{e}" for e in EPOCHS])
    reduced = copy.deepcopy(study["config"])
    del reduced["models"]["pv"]
    reduced["models"]["mine"]["checkpoints"] = [f"runs/epoch_{e:05d}.pth" for e in EPOCHS[:2]]
    smaller = str(write_config(study["workdir"] / "smaller.yaml", reduced))
    gone = {k for k, name in owner.items() if name in ("pv", f"mine@{EPOCHS[-1]}")}
    code, out = store("prune", "--dry-run", "--configfile", smaller)
    assert code == 0 and {line.split()[2].rsplit("/", 1)[-1] for line in out.splitlines()
                          if line.startswith("would remove")} == gone, out
    assert store("prune", "--configfile", smaller)[0] == 0
    assert {d.name for d in (results / "store").iterdir()} == set(owner) - gone
    assert store("verify")[0] == 0


def check_layer_spaces_are_feature_matrices_with_metrics(study: dict) -> None:
    out = study["workdir"] / "results"
    index = pd.read_csv(out / "features/gen/index.csv")
    rows = pd.read_csv(out / "metrics.csv")
    for layer, dim in zip(LAYERS, (64, 256)):
        x = np.load(out / f"features/gen/tv/layer.{layer}.npy")
        assert x.shape == (len(index), dim) and np.isfinite(x).all() and x.std(axis=0).max() > 0
        assert ((rows.method == "tv") & (rows.space == f"layer.{layer}")).sum() == 1
    assert np.load(out / "features/gen/tv/representation.npy").shape == (len(index), 512)


def check_layer_features_equal_the_model_on_the_same_clip(study: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row 0 of a layer space is that module's pooled output for the manifest's first clip."""
    monkeypatch.chdir(study["workdir"])  # the series glob is relative to the study
    from dimcollapse.config.instances import model_instances
    from dimcollapse.config.jobs import build_options, job_protocol
    from dimcollapse.data.clips import ClipDataset
    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.models import build_model

    out = study["workdir"] / "results"
    inst = model_instances(study["config"])["tv"]
    proto = job_protocol(study["config"], "gen", inst)
    model = build_model("torchvision", **build_options(inst, proto))
    manifest = read_manifest(out / "manifests/gen.csv")
    manifest["path"] = [p if Path(p).is_absolute() else str(study["workdir"] / p) for p in manifest.path]
    index = pd.read_csv(out / "features/gen/index.csv")
    assert index.id[0] == manifest.id[0]
    clip = ClipDataset(manifest, proto)[0]["video"]
    with torch.inference_mode():
        direct = model(clip)
    for layer in LAYERS:
        stored = np.load(out / f"features/gen/tv/layer.{layer}.npy")[0]
        np.testing.assert_allclose(stored, direct[f"layer.{layer}"][0].numpy(), rtol=2e-4, atol=1e-5)


def check_series_members_and_figures(study: dict) -> None:
    out = study["workdir"] / "results"
    rows = pd.read_csv(out / "metrics.csv")
    assert {m for m in rows.method.unique() if m.startswith("mine@")} == {f"mine@{e}" for e in EPOCHS}
    # different weights per checkpoint give different features
    a, b = (np.load(out / f"features/gen/mine@{e}/representation.npy") for e in EPOCHS[:2])
    assert not np.allclose(a, b)
    for kind in ("layers", "series"):
        png = out / f"figures/{kind}/gen.png"
        assert png.stat().st_size > 10_000 and (out / f"figures/{kind}/gen.pdf").is_file()
    sidecar = json.loads((out / "features/gen/mine@20/representation.json").read_text())
    assert sidecar["clips_computed"] + sidecar["clips_reused"] > 0


def check_cka_across_layers_instances_and_checkpoints(study: dict) -> None:
    from dimcollapse.analysis.similarity_measures import linear_cka

    out = study["workdir"] / "results"
    layers = pd.read_csv(out / "similarity/gen/layers.tv.csv", index_col=0)
    assert list(layers.index) == ["layer.layer1", "layer.layer3", "representation"]
    a, b = (np.load(out / f"features/gen/tv/{s}.npy") for s in ("layer.layer1", "representation"))
    assert layers.loc["layer.layer1", "representation"] == pytest.approx(linear_cka(a, b), abs=1e-6)
    instances = pd.read_csv(out / "similarity/gen/instances.representation.csv", index_col=0)
    assert {"sup", "dpc", "tv", "pv", "mine@5"} <= set(instances.index)
    steps = pd.read_csv(out / "similarity/gen/series.mine.csv")
    assert list(steps["to_order"]) == list(EPOCHS[1:]) and steps["cka"].between(0, 1).all()
    assert (out / "figures/similarity/gen.png").stat().st_size > 10_000


def check_transformers_instance_from_the_hub_cache(study: dict) -> None:
    out = study["workdir"] / "results"
    n = len(pd.read_csv(out / "features/gen/index.csv"))
    rows = pd.read_csv(out / "metrics.csv")
    for space in ["representation", *(f"layer.{name}" for name in HF_LAYERS)]:
        x = np.load(out / f"features/gen/hf/{space}.npy")
        assert x.shape == (n, 64) and np.isfinite(x).all() and x.std(axis=0).max() > 0
        assert ((rows.method == "hf") & (rows.space == space)).sum() == 1
    record = json.loads((study["workdir"] / "resources/checkpoints/hf/hf_snapshot.json").read_text())
    assert record["directory"] == str(study["snapshot"].resolve()) and record["commit"] == study["snapshot"].name
    assert set(record["files"]) == {"config.json", "model.safetensors"}
    sidecar = json.loads((out / "features/gen/hf/representation.json").read_text())
    assert sidecar["weights"] == "hf://tiny/videomae" and len(sidecar["checkpoint_sha256"]) == 64
    assert sidecar["build_options"] == {"frames": 4, "crop_size": 64, "layers": HF_LAYERS}
