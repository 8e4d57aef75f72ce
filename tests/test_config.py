"""Configuration: schema validation messages, model instances, protocols, env pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from dimcollapse.config.instances import model_instances, study_models
from dimcollapse.config.jobs import build_options, job_protocol
from workflow_helpers import REPO, snakemake, write_config

ZOO = "https://dl.fbaipublicfiles.com/pyslowfast/videomoco_models/"


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def test_study_config_lists_every_checkpoint_of_the_paper() -> None:
    models = model_instances(load("config.yaml"))
    sources = {m.checkpoint for m in models.values()}
    assert "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOW_8x8_R50.pyth" in sources
    for f in ["MoCo_SlowR50_8x8_T2", "BYOL_SlowR50_8x8_T2", "SimCLR_SlowR50_8x8_T2", "SwAV_SlowR50_8x8_T2",
              "MoCo_SlowR50_8x8_T4", "BYOL_SlowR50_8x8_T4", "BYOL_SlowR50_16x4_T4"]:
        assert f"{ZOO}{f}_epoch_00200.pyth" in sources, f
    assert {m.options.get("arch") for m in models.values() if m.method == "DPC"} == {"resnet18", "resnet34"}
    assert models["byol_t4_16x4"].frames == 16 and models["byol_t4_16x4"].rate == 4
    assert models["moco"].checkpoint_path == "resources/checkpoints/moco/MoCo_SlowR50_8x8_T2_epoch_00200.pyth"


def test_demo_config_needs_no_checkpoint() -> None:
    models = model_instances(load("config.demo.yaml"))
    assert all(m.checkpoint is None and m.untrained for m in models.values())
    # Untrained backbones differ, except the bottleneck contrast, which shares its twin's weights.
    assert len({m.seed for m in models.values() if "bottleneck" not in m.label}) == len(models) - 1


def test_protocol_and_build_options_agree() -> None:
    cfg = load("config.yaml")
    cfg["protocols"] = {"paper": {"crop_size": 160, "side_size": 182}}
    models = model_instances(cfg)
    p = job_protocol(cfg, "kinetics400", models["byol_t4_16x4"])
    assert (p.frames, p.rate, p.crop_size) == (16, 4, 160)
    assert build_options(models["byol_t4_16x4"], p) == {"frames": 16, "crop_size": 160}
    dpc = job_protocol(cfg, "hmdb51", models["dpc_r18"])
    # HMDB51: downsample 1 and DPC's 240-px frames; R18-128: centre crop 224, then 128
    assert (dpc.crop_size, dpc.output_size, dpc.side_size, dpc.downsample) == (224, 128, 240, 1)
    assert build_options(models["dpc_r18"], dpc)["sample_size"] == 128 and dpc.clip_shape[-1] == 128
    ucf = job_protocol(cfg, "ucf101", models["dpc_r34"])
    assert (ucf.downsample, ucf.side_size, ucf.crop_size, ucf.output_size) == (3, 240, 224, None)
    assert job_protocol(cfg, "kinetics400", models["dpc_r34"]).side_size == 256


def test_bad_protocol_option_names_model_and_dataset() -> None:
    cfg = load("config.demo.yaml")
    cfg["models"]["moco"]["protocol_options"] = {"crop_sise": 100}
    with pytest.raises(ValueError, match=r"'moco'.*'demo'.*crop_sise"):
        job_protocol(cfg, "demo", model_instances(cfg)["moco"])


def test_unknown_study_model_is_named() -> None:
    cfg = load("config.demo.yaml")
    cfg["study"] = {"models": ["moco", "mocov3"]}
    with pytest.raises(ValueError, match="study.models.*mocov3"):
        study_models(cfg)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["models"]["moco"].update(method="MoCoV3"), r"'MoCoV3' is not one of(.|\n)*instance\['models'\]\['moco'\]\['method'\]"),
        (lambda c: c["extraction"].update(batch_size="sixteen"), r"'sixteen' is not of type 'integer'(.|\n)*\['extraction'\]\['batch_size'\]"),
    ],
)
def test_schema_errors_name_the_key(tmp_path: Path, change, message: str) -> None:
    cfg = load("config.demo.yaml")
    change(cfg)
    path = write_config(tmp_path / "bad.yaml", cfg)
    proc = snakemake(tmp_path, "--configfile", str(path), "--dry-run", "--cores", "1", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "Error validating config" in text or "ValidationError" in text
    assert re.search(message, text), text[-2000:]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (lambda c: c.update(extracton=c.pop("extraction")),
         "{file}: unknown config key 'extracton' (did you mean 'extraction'?)"),
        (lambda c: c["extraction"].update(shard=2),
         "{file}: unknown config key 'extraction.shard' (did you mean 'extraction.shards'?)"),
        (lambda c: c["models"]["supervised"].update(chekpoint="x.pyth"),
         "{file}: unknown config key 'models.supervised.chekpoint' (did you mean 'models.supervised.checkpoint'?)"),
        (lambda c: c.update(zzz=1), "{file}: unknown config key 'zzz' (allowed: title, datasets, models, study, "),
    ],
)
def test_a_misspelt_key_gets_one_line_naming_it_and_its_file(tmp_path: Path, change, line: str) -> None:
    cfg = load("config.demo.yaml")
    change(cfg)
    path = write_config(tmp_path / "study.yaml", cfg)
    proc = snakemake(tmp_path, "--configfile", str(path), "--dry-run", "--cores", "1", check=False)
    assert proc.returncode != 0
    lines = _own_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(line.format(file=path.resolve())), proc.stderr[-2000:]


def test_a_misspelt_command_line_key_is_named_as_such(tmp_path: Path) -> None:
    path = write_config(tmp_path / "study.yaml", load("config.demo.yaml"))
    proc = snakemake(tmp_path, "--configfile", str(path), "--config", "titel=x", "--dry-run", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert _own_lines(proc.stderr) == ["--config: unknown config key 'titel' (did you mean 'title'?)"]


def _own_lines(stderr: str) -> list[str]:
    """Snakemake's stderr without its note about the profiles it uses."""
    return [line for line in stderr.strip().splitlines()
            if not (line.startswith("Using ") and "profile" in line and line.endswith("command line arguments."))]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.fullmatch(r"\s*-?\s*([A-Za-z0-9_.-]+)==([^\s#]+)\s*", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_conda_envs_pin_the_same_versions_as_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = _pins(project["dependencies"])
    lock = _pins((REPO / "requirements.lock").read_text().splitlines())
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        pins = _pins(pip)
        assert pins, env
        for name, version in pins.items():
            assert declared.get(name) == version, f"{env.name}: {name}=={version}, pyproject pins {declared.get(name)}"
        assert "python=3.11" in spec["dependencies"]
    for name, version in declared.items():
        assert lock.get(name) == version, f"requirements.lock pins {name}=={lock.get(name)}, pyproject {version}"


def test_every_rule_has_an_env_log_and_benchmark() -> None:
    text = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    rules = re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, flags=re.S | re.M)
    assert len(rules) >= 12
    for name, body in rules:
        for directive in ("log:", "benchmark:", "threads:", "resources:", "conda:"):
            assert directive in body, f"rule {name} lacks {directive}"


def test_hidden_gpus_are_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    from dimcollapse.utils import nvidia_gpu_visible

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert nvidia_gpu_visible() is False
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvidia_gpu_visible() == Path("/proc/driver/nvidia/gpus").is_dir()
