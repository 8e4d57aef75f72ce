import hashlib
import json
import math

import pytest

from dimcollapse.data.protocols import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    DpcProtocol,
    Protocol,
    SlowProtocol,
    clip_starts,
    resolve_protocol,
)


def test_presets_match_the_original_protocols() -> None:
    paper = resolve_protocol("paper")
    assert (paper.frames, paper.rate, paper.target_fps) == (8, 8, 30.0)
    assert (paper.side_size, paper.crop_size, paper.crop_rounding) == (256, 224, "round")
    assert (paper.mean, paper.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert paper.views == 1 and paper.clip_shape == (3, 8, 224, 224)
    assert paper.window_seconds() == 64 / 30

    sf = resolve_protocol("slowfast_test")
    assert (sf.temporal_views, sf.spatial_views, sf.views) == (10, 3, 30)
    assert (sf.side_size, sf.crop_size, sf.crop_rounding) == (256, 256, "ceil")
    assert sf.mean == (0.45,) * 3 and sf.std == (0.225,) * 3
    assert sf.clip_shape == (3, 8, 256, 256)

    dpc = resolve_protocol("dpc")
    assert (dpc.num_seq, dpc.seq_len, dpc.downsample, dpc.crop_size) == (5, 5, 3, 224)
    assert dpc.clip_shape == (5, 3, 5, 224, 224) and dpc.views == 1
    assert dpc.window_seconds(fps=25.0) == 75 / 25.0
    assert isinstance(paper, SlowProtocol) and isinstance(dpc, DpcProtocol)
    assert not hasattr(dpc, "frames") and not hasattr(paper, "num_seq")  # one type per family
    # SlowFast's own decoding for slowfast_test (torchvision backend by default); DPC options off
    assert (sf.backend, paper.backend) == ("torchvision", None)
    assert (dpc.min_frames, dpc.jpeg_quality, dpc.output_size) == (None, None, None)
    r18 = resolve_protocol("dpc", side_size=240, crop_size=224, output_size=128)
    assert r18.input_size == 128 and r18.clip_shape == (5, 3, 5, 128, 128)


def test_overrides_apply_and_are_coerced() -> None:
    p = resolve_protocol("paper", frames=16, rate=4, clip_position="center", mean=[0.45, 0.45, 0.45], target_fps=25)
    assert (p.frames, p.rate, p.clip_position, p.mean, p.target_fps) == (16, 4, "centre", (0.45, 0.45, 0.45), 25.0)
    assert p.window_seconds() == 64 / 25
    assert resolve_protocol("dpc", downsample=1, crop_size=128, side_size=150).clip_shape == (5, 3, 5, 128, 128)
    assert resolve_protocol(p, seed=3).seed == 3 and resolve_protocol(p, seed=3).frames == 16


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("nope", {}, "unknown protocol 'nope'"),
        ("paper", {"framez": 8}, "unknown protocol setting 'framez'"),
        ("paper", {"num_seq": 4}, "'num_seq' does not apply"),
        ("dpc", {"frames": 8}, "'frames' does not apply"),
        ("paper", {"family": "dpc"}, "cannot be overridden"),
        ("paper", {"frames": 0}, "frames must be a positive integer"),
        ("paper", {"frames": 2.5}, "frames must be a positive integer"),
        ("paper", {"crop_size": 300}, "larger than side_size"),
        ("paper", {"mean": [0.5, 0.5]}, "mean must be three"),
        ("paper", {"std": [0.2, 0.0, 0.2]}, "std must be positive"),
        ("paper", {"clip_position": "middle"}, "clip_position must be one of"),
        ("paper", {"temporal_views": 4}, "use 'uniform'"),
        ("slowfast_test", {"spatial_views": 2}, "spatial_views must be 1"),
        ("paper", {"resize": "cubic"}, "resize must be one of"),
        ("paper", {"seed": -1}, "seed must be a non-negative"),
        ("dpc", {"clip_position": "uniform"}, "one window per video"),
        ("slowfast_test", {"backend": "decord"}, "backend must be one of"),
        ("paper", {"backend": "pyav"}, "clip_position must be 'uniform'"),
        ("slowfast_test", {"resize": "ffmpeg"}, "does not apply with backend"),
        ("dpc", {"backend": "pyav"}, "'backend' does not apply"),
        ("paper", {"jpeg_quality": 80}, "'jpeg_quality' does not apply"),
        ("paper", {"min_frames": 76}, "'min_frames' does not apply"),
        ("dpc", {"jpeg_quality": 0}, "jpeg_quality must be an integer from 1 to 100"),
        ("dpc", {"jpeg_quality": 101}, "jpeg_quality must be an integer from 1 to 100"),
        ("dpc", {"min_frames": 0}, "min_frames must be a positive integer"),
        ("dpc", {"output_size": 12.5}, "output_size must be a positive integer"),
    ],
)
def test_bad_settings_raise_clear_errors(name: str, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_protocol(name, **overrides)


def test_key_changes_with_anything_that_changes_pixels() -> None:
    base = resolve_protocol("paper")
    assert base.key == resolve_protocol("paper").key
    assert base.key.startswith("paper-") and all(c.isalnum() or c in "-_" for c in base.key)
    variants = [
        dict(frames=16), dict(rate=4), dict(target_fps=25.0), dict(side_size=320), dict(crop_size=256),
        dict(crop_rounding="ceil"), dict(mean=[0.45] * 3), dict(std=[0.225] * 3), dict(clip_position="random"),
        dict(resize="ffmpeg"),
    ]
    keys = {resolve_protocol("paper", **v).key for v in variants}
    assert len(keys) == len(variants) and base.key not in keys
    # the seed only matters for random clips
    assert resolve_protocol("paper", seed=5).key == base.key
    assert resolve_protocol("paper", clip_position="random", seed=5).key != resolve_protocol(
        "paper", clip_position="random", seed=6).key


def test_sampling_key_is_shared_by_protocols_that_decode_the_same_frames() -> None:
    paper = resolve_protocol("paper")
    assert resolve_protocol("paper", crop_size=256, mean=[0.45] * 3, std=[0.225] * 3).sampling_key == paper.sampling_key
    # slowfast_test's 10 windows are other frames; its 3 crops are not part of the sampling
    sf = resolve_protocol("slowfast_test")
    assert sf.sampling_key != paper.sampling_key
    assert resolve_protocol("slowfast_test", spatial_views=1).sampling_key == sf.sampling_key
    assert resolve_protocol("paper", frames=16, rate=4).sampling_key != paper.sampling_key
    # the cache stores frames at the scaled size: the scale is part of the sampling, the crop not
    ff = resolve_protocol("paper", resize="ffmpeg")
    assert ff.sampling_key != paper.sampling_key
    assert resolve_protocol("paper", resize="ffmpeg", side_size=320).sampling_key != ff.sampling_key
    assert resolve_protocol("paper", side_size=320).sampling_key != paper.sampling_key
    assert resolve_protocol("paper", crop_size=160).sampling_key == paper.sampling_key
    # the backend decides frames and scaling; DPC's frame rules and JPEG step change the frames
    assert resolve_protocol("slowfast_test", backend="pyav").sampling_key != sf.sampling_key
    dpc = resolve_protocol("dpc")
    for change in (dict(min_frames=76), dict(jpeg_quality=80), dict(side_size=240)):
        assert resolve_protocol("dpc", **change).sampling_key != dpc.sampling_key
    r18 = resolve_protocol("dpc", output_size=128)
    assert r18.sampling_key == dpc.sampling_key and r18.key != dpc.key


def test_to_dict_is_json_and_round_trips() -> None:
    for name in PRESETS:
        p = resolve_protocol(name)
        d = json.loads(json.dumps(p.to_dict()))
        assert d["key"] == p.key and d["sampling_key"] == p.sampling_key
        assert Protocol.from_dict(d) == p
    with pytest.raises(ValueError, match="unknown entries"):
        Protocol.from_dict({**resolve_protocol("paper").to_dict(), "bogus": 1})


#: Keys computed by the single protocol type this module had before each family got its own
#: (commit b8aa357): the same settings must give the same bytes, or every feature store
#: and clip cache would be invalidated. Last entry: SHA-256 of ``to_dict()`` (which the
#: store's instance identity and the extract rule's parameters hash). The protocols whose
#: frames our code scales to uint8 (``scales_to_uint8``) changed keys once, on purpose, when
#: that scaler became machine-independent (``UINT8_SCALER``): only their caches and features
#: are renewed; the others keep the bytes of before the split.
KEYS_BEFORE_THE_SPLIT = [
    ("paper", {}, "paper-f5703513b495", "slow-710c305686ee", "e29dfb84397afc2e"),
    ("slowfast_test", {}, "slowfast_test-e353a4a4a24a", "slow-e2896240c447", "a087e7076c0f1e03"),
    ("dpc", {}, "dpc-4a62f1f37e7f", "dpc-4269c2afbf57", "bac3bb1268c4104b"),
    ("paper", {"clip_position": "random", "seed": 3}, "paper-ff8eda5fb641", "slow-d7d03bb85c6d", "6c05b93921a33144"),
    ("slowfast_test", {"backend": "pyav"}, "slowfast_test-90a86be8d030", "slow-a92a86cfa889", "c7378528d67a6b3e"),
    ("dpc", {"downsample": 1, "min_frames": 26, "jpeg_quality": 80, "side_size": 240, "output_size": 128},
     "dpc-c76a48ebf8fb", "dpc-99ca7491d2bb", "c2aa254142edf722"),
    ("paper", {"frames": 16, "rate": 4, "crop_size": 112, "side_size": 128, "resize": "ffmpeg"},
     "paper-bf041c5018a8", "slow-994b0d2c22b9", "07c05a107dfc04df"),
]


@pytest.mark.parametrize(("name", "overrides", "key", "sampling_key", "dict_digest"), KEYS_BEFORE_THE_SPLIT)
def test_keys_are_the_bytes_of_before_the_family_types(
    name: str, overrides: dict, key: str, sampling_key: str, dict_digest: str
) -> None:
    p = resolve_protocol(name, **overrides)
    assert (p.key, p.sampling_key) == (key, sampling_key)
    assert hashlib.sha256(json.dumps(p.to_dict(), sort_keys=True).encode()).hexdigest()[:16] == dict_digest
    assert KEYS_BEFORE_THE_SPLIT[0][0] in PRESETS and {c[0] for c in KEYS_BEFORE_THE_SPLIT} == set(PRESETS)


def test_from_dict_refuses_settings_of_the_other_family() -> None:
    d = resolve_protocol("paper").to_dict()
    with pytest.raises(ValueError, match=r"settings \['num_seq'\] belong to another family"):
        Protocol.from_dict({**d, "num_seq": 5})
    with pytest.raises(ValueError, match="family must be one of"):
        Protocol.from_dict({**d, "family": "vit"})


def test_centre_and_uniform_starts() -> None:
    paper = resolve_protocol("paper")
    w = 64 / 30
    assert clip_starts(paper, 10.0) == [(10.0 - w) / 2]
    assert clip_starts(paper, 1.0) == [0.0]  # shorter than the window: start at 0
    sf = resolve_protocol("slowfast_test")
    starts = clip_starts(sf, 12.0)
    assert len(starts) == 10
    # SlowFast: start_i = delta * i / num_clips with delta = max(len - clip, 0)
    assert starts == [(12.0 - w) * i / 10 for i in range(10)]
    assert clip_starts(sf, 1.0) == [0.0] * 10
    dpc = resolve_protocol("dpc")
    assert clip_starts(dpc, 10.0, fps=30.0) == [(10.0 - 2.5) / 2]
    assert clip_starts(resolve_protocol("dpc", downsample=1), 10.0, fps=25.0) == [(10.0 - 1.0) / 2]
    with pytest.raises(ValueError, match="frame rate"):
        clip_starts(dpc, 10.0)


def test_random_starts_are_seeded_per_video() -> None:
    p = resolve_protocol("paper", clip_position="random", seed=7)
    a = [clip_starts(p, 20.0, video_id=f"v{i}")[0] for i in range(50)]
    assert a == [clip_starts(p, 20.0, video_id=f"v{i}")[0] for i in range(50)]  # reproducible
    assert len(set(a)) == 50 and all(0 <= s <= 20.0 - 64 / 30 for s in a)
    assert max(a) - min(a) > 10  # spread over the video, not clustered
    b = [clip_starts(resolve_protocol(p, seed=8), 20.0, video_id=f"v{i}")[0] for i in range(50)]
    assert a != b
    with pytest.raises(ValueError, match="video id"):
        clip_starts(p, 20.0)


@pytest.mark.parametrize("duration", [math.nan, -1.0, None, "10"])
def test_unusable_durations_raise(duration: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        clip_starts(resolve_protocol("paper"), duration)
