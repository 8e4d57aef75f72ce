"""The ``transformers`` family in the workflow: config resolution, the download record, the store key.

A local ``save_pretrained`` folder is covered here; the any-model end-to-end study reads its
``transformers`` instance from an ``hf://`` id in an offline Hub cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
from hf_helpers import FRAMES, SIZE, hub_snapshot, save_tiny  # noqa: E402

from dimcollapse.config.instances import model_instances  # noqa: E402
from dimcollapse.config.jobs import build_options, job_protocol  # noqa: E402
from dimcollapse.extraction.store import checkpoint_sha256  # noqa: E402
from dimcollapse.models import CheckpointError, build_model  # noqa: E402
from dimcollapse.models.hub import checkpoint_clip, fetch_snapshot, resolve_directory  # noqa: E402

#: A VideoMAE preprocessor config as the Hub's hold them (short side, crop, ImageNet mean/std).
PREPROCESSOR = {"size": {"shortest_edge": 40}, "crop_size": {"height": SIZE, "width": SIZE},
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def videomae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videomae")
    save_tiny("VideoMAEModel", folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return folder


def study(models: dict[str, Any]) -> dict[str, Any]:
    return {"models": models, "datasets": {"d": {}}, "protocols": {}}


def test_local_folder_instance_takes_its_clip_from_the_checkpoint(videomae: Path) -> None:
    config = study({"vm": {"method": "transformers", "checkpoint": str(videomae), "layers": "all"}})
    inst = model_instances(config)["vm"]
    assert inst.layers == ("encoder.layer.0", "encoder.layer.1")
    assert (inst.frames, inst.rate, inst.filename) == (FRAMES, 4, "hf_snapshot")
    proto = job_protocol(config, "d", inst)
    assert (proto.frames, proto.side_size, proto.crop_size) == (FRAMES, 40, SIZE)
    assert proto.mean == pytest.approx((0.485, 0.456, 0.406)) and proto.std == pytest.approx((0.229, 0.224, 0.225))
    assert build_options(inst, proto) == {"frames": FRAMES, "crop_size": SIZE, "layers": list(inst.layers)}
    override = study({"vm": {"method": "transformers", "checkpoint": str(videomae),
                             "protocol_options": {"side_size": 36, "std": 0.5}}})
    proto = job_protocol(override, "d", model_instances(override)["vm"])
    assert (proto.side_size, proto.std) == (36, (0.5, 0.5, 0.5))


def test_vivit_rescale_to_minus_one_one_becomes_mean_and_std(tmp_path: Path) -> None:
    """ViViT's preprocessor: x/127.5 − 1, then (· − 0.5)/0.5, i.e. (x/255 − 0.75)/0.25."""
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["VivitModel"], "num_frames": 32,
                                                      "image_size": 224}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "do_rescale": True, "rescale_factor": 1 / 127.5, "offset": True,
        "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"shortest_edge": 256}}))
    clip = checkpoint_clip(tmp_path)
    assert clip["frames"] == 32 and clip["crop_size"] == 224 and clip["side_size"] == 256
    assert clip["mean"] == pytest.approx([0.75] * 3) and clip["std"] == pytest.approx([0.25] * 3)


def test_a_clip_the_model_cannot_take_is_refused_naming_the_instance(videomae: Path) -> None:
    config = study({"vm": {"method": "transformers", "checkpoint": str(videomae),
                           "protocol_options": {"side_size": 48, "crop_size": 48}}})
    with pytest.raises(ValueError, match=r"model 'vm' on dataset 'd': VideoMAEModel has position embeddings "
                                         r"for 32×32 only \(got crop_size=48\)"):
        job_protocol(config, "d", model_instances(config)["vm"])
    config = study({"vm": {"method": "transformers", "checkpoint": str(videomae), "sha256": "0" * 64}})
    with pytest.raises(ValueError, match="`sha256` does not apply to method transformers"):
        model_instances(config)


def test_the_download_record_keys_the_store_on_content_not_path(videomae: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(videomae, tmp_path / "elsewhere")
    records = []
    for folder, out in ((videomae, tmp_path / "a"), (copy, tmp_path / "b")):
        out.mkdir()
        sidecar = fetch_snapshot(str(folder), out / "hf_snapshot", out / "hf_snapshot.json")
        assert sidecar["files"]["model.safetensors"]["size"] > 0 and sidecar["method"] == "local directory"
        assert resolve_directory(out / "hf_snapshot") == Path(folder).resolve()
        records.append(out / "hf_snapshot")
    assert checkpoint_sha256(records[0]) == checkpoint_sha256(records[1])
    save_tiny("VideoMAEModel", copy, seed=1)  # other weights, same path
    fetch_snapshot(str(copy), records[1], tmp_path / "b" / "hf_snapshot.json")
    assert checkpoint_sha256(records[0]) != checkpoint_sha256(records[1])
    assert build_model("transformers", checkpoint=records[1]).provenance["directory"] == str(Path(copy).resolve())


def test_hub_ids_resolve_through_an_offline_cache(videomae: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = hub_snapshot(tmp_path, "tiny/videomae", videomae)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert resolve_directory("hf://tiny/videomae") == snapshot
    record = fetch_snapshot("hf://tiny/videomae", tmp_path / "s.json", tmp_path / "s.json.json")
    assert (record["repo_id"], record["commit"], record["method"]) == ("tiny/videomae", snapshot.name, "huggingface_hub")
    with pytest.raises(CheckpointError, match=r"hf://tiny/absent: cannot get the snapshot .* HF_HOME="):
        resolve_directory("hf://tiny/absent")
    with pytest.raises(ValueError, match="expected hf://<org>/<name>"):
        resolve_directory("hf://no-slash")


def test_the_readme_configs_validate_against_the_schema() -> None:
    """The copy-paste VideoMAE-B / V-JEPA 2 block of the README passes the schema (``layers: all`` too)."""
    import re

    import yaml
    from snakemake.utils import validate

    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    section = readme[readme.index("### Hugging Face transformers models"):]
    block = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    assert {m["checkpoint"] for m in block["models"].values()} == {
        "hf://MCG-NJU/videomae-base", "hf://facebook/vjepa2-vitl-fpc64-256"}
    config = {**yaml.safe_load((repo / "config.demo.yaml").read_text()), "models": block["models"]}
    validate(config, str(repo / "schemas" / "config.schema.yaml"))
    assert config["models"]["videomae_b"]["layers"] == "all"
    config["models"]["videomae_b"]["layers"] = "some"
    with pytest.raises(Exception, match="layers"):
        validate(config, str(repo / "schemas" / "config.schema.yaml"))


def test_an_instance_without_checkpoint_or_with_layers_all_elsewhere_is_refused(videomae: Path) -> None:
    with pytest.raises(ValueError, match="model 'vm': method transformers needs checkpoint"):
        model_instances(study({"vm": {"method": "transformers", "layers": "all"}}))
    with pytest.raises(ValueError, match="layers: all is for method transformers"):
        model_instances(study({"tv": {"method": "torchvision", "options": {"arch": "r3d_18"}, "layers": "all"}}))


def test_a_folder_edited_in_place_changes_the_download_rule_param(tmp_path: Path) -> None:
    import os

    from dimcollapse.models.download import local_source_state

    save_tiny("ViTModel", tmp_path)
    before = local_source_state(str(tmp_path))
    assert set(before["files"]) == {"config.json", "model.safetensors"}
    weights = tmp_path / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert local_source_state(str(tmp_path)) != before
    assert local_source_state("hf://org/name") is None
