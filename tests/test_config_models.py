"""Config side of any-model studies: library archs and their protocols, layers, checkpoint series."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dimcollapse.config.instances import model_instances, model_series, study_models
from dimcollapse.config.jobs import build_options, job_protocol
from workflow_helpers import REPO, snakemake, write_config


def demo() -> dict:
    return yaml.safe_load((REPO / "config.demo.yaml").read_text())


def with_models(models: dict, **extra: object) -> dict:
    cfg = demo()
    cfg["models"] = models
    cfg.pop("temporal")  # it names the demo's instances
    cfg.pop("protocols")
    cfg.update(extra)
    return cfg


def test_library_archs_default_to_their_model_card() -> None:
    cfg = with_models({
        "r3d": {"method": "torchvision", "options": {"arch": "r3d_18"}},
        "sf": {"method": "pytorchvideo", "options": {"arch": "slowfast_r50"}},
        "x3d": {"method": "pytorchvideo", "options": {"arch": "x3d_xs"}, "frames": 8, "protocol_options": {"crop_size": 160}},
        "mine": {"method": "custom", "options": {"builder": "model_fixtures:tiny_video_net"}},
    })
    models = model_instances(cfg)
    r3d = job_protocol(cfg, "demo", models["r3d"])
    assert (r3d.name, r3d.frames, r3d.rate, r3d.target_fps, r3d.side_size, r3d.crop_size) == ("paper", 16, 1, 15.0, 128, 112)
    assert r3d.mean == (0.43216, 0.394666, 0.37645) and r3d.std == (0.22803, 0.22145, 0.216989)
    assert build_options(models["r3d"], r3d) == {"arch": "r3d_18", "frames": 16, "crop_size": 112, "seed": 0}
    sf = job_protocol(cfg, "demo", models["sf"])
    assert (sf.frames, sf.rate, sf.target_fps, sf.side_size, sf.crop_size, sf.mean) == (32, 2, 30.0, 256, 256, (0.45,) * 3)
    x3d = job_protocol(cfg, "demo", models["x3d"])  # the instance's frames and protocol_options win
    assert (x3d.frames, x3d.rate, x3d.side_size, x3d.crop_size) == (8, 12, 182, 160)
    assert build_options(models["x3d"], x3d)["crop_size"] == 160
    mine = job_protocol(cfg, "demo", models["mine"])  # custom: the paper's protocol, 8 × 8
    assert (mine.frames, mine.rate, mine.crop_size) == (8, 8, 224)
    assert models["mine"].arch_info is None and models["r3d"].arch_info.classifier == "fc"


def test_study_wide_overrides_apply_and_fixed_inputs_are_checked() -> None:
    cfg = with_models({"mvit": {"method": "torchvision", "options": {"arch": "mvit_v2_s"}},
                       "swin": {"method": "torchvision", "options": {"arch": "swin3d_t"}}},
                      protocols={"paper": {"side_size": 146, "crop_size": 128}})
    models = model_instances(cfg)
    assert job_protocol(cfg, "demo", models["swin"]).crop_size == 128
    with pytest.raises(ValueError, match=r"model 'mvit' on dataset 'demo': torchvision mvit_v2_s only accepts 16-frame clips of 224×224, but the protocol gives frames=16, crop_size=128"):
        job_protocol(cfg, "demo", models["mvit"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"method": "torchvision", "options": {"arch": "r4d"}}, r"model 'm': method torchvision: arch 'r4d'; valid archs: r3d_18, mc3_18"),
        ({"method": "pytorchvideo"}, r"model 'm': method pytorchvideo: no arch option; valid archs: slow_r50, slowfast_r50"),
        ({"method": "custom", "options": {"builder": "tiny_video_net"}}, r"model 'm': method custom needs options.builder"),
        ({"method": "torchvision", "options": {"arch": "r3d_18"}, "layers": ["layer9"]},
         r"model 'm' \(torchvision\): no layer named 'layer9'; did you mean 'layer4', 'layer3'.* `python -m dimcollapse.models.layers torchvision --arch r3d_18`"),
        ({"method": "MoCo", "layers": ["backbone.s4.pathway0_res9"]},
         r"no layer named 'backbone.s4.pathway0_res9'; did you mean 'backbone.s4.pathway0_res5'.*`python -m dimcollapse.models.layers MoCo`"),
    ],
)
def test_model_errors_at_config_time(entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model_instances(with_models({"m": entry}))


def test_layers_are_spaces_and_build_options() -> None:
    cfg = with_models({"r3d": {"method": "torchvision", "options": {"arch": "r3d_18"}, "layers": ["layer2", "layer4"]},
                       "moco": {"method": "MoCo", "layers": ["backbone.s5.pathway0_res2"]}})
    models = model_instances(cfg)
    assert models["r3d"].spaces == ("representation", "layer.layer2", "layer.layer4")
    assert models["moco"].spaces == ("representation", "embedding", "layer.backbone.s5.pathway0_res2")
    assert build_options(models["r3d"], job_protocol(cfg, "demo", models["r3d"]))["layers"] == ["layer2", "layer4"]


def test_parsing_loads_torch_only_for_layers() -> None:
    """Library models cost the Snakefile nothing; naming layers builds the network on the meta device."""
    code = (
        "import sys, dimcollapse.config.instances as c\n"
        "cfg = {'models': {'a': {'method': 'torchvision', 'options': {'arch': 's3d'}},"
        " 'b': {'method': 'pytorchvideo', 'options': {'arch': 'x3d_m'}}}}\n"
        "print(c.model_instances(cfg)['a'].spaces, 'torch' in sys.modules)\n"
        "cfg['models']['a']['layers'] = ['features.3']\n"
        "print(c.model_instances(cfg)['a'].spaces, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.splitlines() == ["('representation',) False", "('representation', 'layer.features.3') True"]


def _series_files(root: Path) -> list[Path]:
    root.mkdir()
    files = [root / f"epoch_{e:05d}.pth" for e in (200, 10, 50)]
    for f in files:
        f.write_bytes(b"x")
    return files


def test_checkpoint_series_from_a_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _series_files(tmp_path / "runs")
    cfg = with_models({
        "mine": {"method": "torchvision", "label": "Mine", "options": {"arch": "r3d_18"},
                 "checkpoints": "runs/epoch_*.pth", "order": r"epoch_(\d+)"},
        "ref": {"method": "torchvision", "options": {"arch": "mc3_18"}},
    })
    models = model_instances(cfg)
    assert list(models) == ["mine@10", "mine@50", "mine@200", "ref"]
    m = models["mine@50"]
    assert (m.checkpoint, m.series, m.series_order, m.series_key, m.label) == (
        "runs/epoch_00050.pth", "mine", 50, "epoch", "Mine (epoch 50)")
    assert m.checkpoint_path == "resources/checkpoints/mine@50/epoch_00050.pth"
    assert models["ref"].series is None
    assert model_series(models) == {"mine": ["mine@10", "mine@50", "mine@200"]}
    assert study_models(cfg) == ["mine@10", "mine@50", "mine@200", "ref"]
    cfg["study"] = {"models": ["ref", "mine@200"]}
    assert study_models(cfg) == ["ref", "mine@200"]
    cfg["study"] = {"models": ["mine@300"]}
    with pytest.raises(ValueError, match=r"study.models: unknown names \['mine@300'\]"):
        study_models(cfg)


def test_checkpoint_series_from_a_list() -> None:
    urls = [f"https://example.org/run/step-{s}/model.pt" for s in (1000, 500)]
    cfg = with_models({"run": {"method": "custom", "options": {"builder": "m:f"}, "checkpoints": urls,
                               "order": r"step-(?P<step>\d+)"}})
    models = model_instances(cfg)
    assert [(n, m.series_order, m.series_key, m.filename) for n, m in models.items()] == [
        ("run@500", 500, "step", "model.pt"), ("run@1000", 1000, "step", "model.pt")]
    default = with_models({"run": {"method": "custom", "options": {"builder": "m:f"}, "checkpoints": ["a/ck_3.pt", "a/ck_12.pt"]}})
    assert [(m.series_order, m.series_key) for m in model_instances(default).values()] == [(3, "checkpoint"), (12, "checkpoint")]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"checkpoints": ["a_1.pt"], "checkpoint": "b.pt"}, "give `checkpoints` \\(a series\\) or `checkpoint`, not both"),
        ({"checkpoints": ["a_1.pt"], "sha256": "0" * 64}, "or `sha256`, not both"),
        ({"checkpoints": "nowhere/*.pt"}, r"checkpoints glob 'nowhere/\*.pt' matches no file \(relative to "),
        ({"checkpoints": ["final.pt"]}, r"cannot read the order of checkpoint 'final.pt' with order `\(\\d\+\)\(\?!\.\*\\d\)` \(found None"),
        ({"checkpoints": ["e_1.pt", "f_1.pt"]}, r"checkpoints 'e_1.pt' and 'f_1.pt' both have order 1"),
        ({"checkpoints": ["e1.pt"], "order": "e(x"}, r"order `e\(x` is not a regular expression"),
    ],
)
def test_series_errors(entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model_instances(with_models({"s": {"method": "custom", "options": {"builder": "m:f"}, **entry}}))


def test_workflow_accepts_library_models_and_series(tmp_path: Path) -> None:
    """Schema, wildcard constraints and the DAG: series members are jobs like any instance."""
    _series_files(tmp_path / "runs")
    cfg = with_models({
        "mine": {"method": "torchvision", "options": {"arch": "r2plus1d_18"}, "checkpoints": "runs/epoch_*.pth",
                 "order": r"epoch_(\d+)"},
        "x3d": {"method": "pytorchvideo", "options": {"arch": "x3d_xs"}, "layers": ["blocks.4", "blocks.2"]},
        "own": {"method": "custom", "options": {"builder": "model_fixtures:tiny_video_net"}},
    })
    path = write_config(tmp_path / "config.yaml", cfg)
    proc = snakemake(tmp_path, "--configfile", str(path), "--dry-run", "--cores", "1", "--quiet", "rules")
    text = proc.stdout + proc.stderr
    assert re.search(r"download_checkpoint\s+3", text), text[-3000:]
    assert re.search(r"extract\s+5", text), text[-3000:]  # 5 instances × 1 shard (the demo config's)
    # one spectrum per (instance, space): 4 single-space instances + x3d's representation and 2 layers
    assert re.search(r"spectrum\s+7", text), text[-3000:]
    assert re.search(r"layer_figure\s+1", text) and re.search(r"series_figure\s+1", text), text[-3000:]


def test_layers_follow_network_order() -> None:
    """Listed deep-first, layers come back shallow to deep: the depth axis."""
    from dimcollapse.config.display import depth_order

    cfg = with_models({"r3d": {"method": "torchvision", "options": {"arch": "r3d_18"},
                               "layers": ["layer4", "layer2"]}})
    inst = model_instances(cfg)["r3d"]
    assert inst.layers == ("layer2", "layer4")
    assert depth_order(inst) == ["layer.layer2", "layer.layer4", "representation"]


def test_only_untrained_instances_are_marked_where_weights_are_mixed() -> None:
    from dimcollapse.config.display import display_labels
    from dimcollapse.config.instances import model_instance
    from dimcollapse.models.registry import UNTRAINED
    from dimcollapse.stages.common import figure_view as _figure_view

    seeded = model_instance("a", {"method": "SimCLR", "label": "SimCLR", "seed": 1})
    trained = model_instance("b", {"method": "supervised", "label": "Sup", "checkpoint": "w/sup.pyth"})
    assert display_labels({"a": seeded, "b": trained}) == {"a": "SimCLR (untrained)", "b": "Sup"}
    assert display_labels({"a": seeded}) == {"a": "SimCLR"} and display_labels({"b": trained}) == {"b": "Sup"}

    def title(*instances) -> str:
        labels = display_labels({i.name: i for i in instances})
        view = {"title": "Study", "models": {i.name: {"label": labels[i.name], "untrained": i.untrained}
                                            for i in instances}}
        return _figure_view(view, "ds")[2]

    assert title(seeded) == f"Study: ds — {UNTRAINED}"
    assert title(seeded, trained) == title(trained) == "Study: ds"
