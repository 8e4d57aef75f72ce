"""DPC's input options: frame-dump size, short-video rule, JPEG step, 128-px resize."""

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg, encode_jpeg

from dimcollapse.data.clip_cache import ClipCache, build_clip_cache
from dimcollapse.data.clips import ClipDataset
from dimcollapse.data.protocols import resolve_protocol
from dimcollapse.data.pyav_source import jpeg_roundtrip
from dimcollapse.data.video import load_clip, read_frames

VTEST = Path("/work/shared/testdata/videos/vtest.avi")  # 768×576, 10 fps
pytestmark = pytest.mark.skipif(not VTEST.exists(), reason="sample videos not available")


def native(path: Path, pts: tuple[int, ...]) -> np.ndarray:
    frames: dict[int, np.ndarray] = {}
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.pts in pts:
                frames[f.pts] = f.to_ndarray(format="rgb24")
            if len(frames) == len(set(pts)):
                break
    return np.stack([frames[p] for p in pts])


def test_frames_are_dumped_at_the_side_size_in_uint8() -> None:
    p = resolve_protocol("dpc", side_size=240)
    d = read_frames(VTEST, [2.0], p)
    assert d.frames.shape == (25, 240, 320, 3) and d.frames.dtype == np.uint8
    # DPC's frame dump: bilinear to int(240·768/576) = 320 wide, rounded to uint8 — by the
    # machine-independent scaler, which is torch's bilinear rounded, except where torch's
    # float32 result sits on a .5 to within its last bits (those round either way)
    x = torch.from_numpy(native(VTEST, d.pts[0])).permute(0, 3, 1, 2).float()
    y = torch.nn.functional.interpolate(x, size=(240, 320), mode="bilinear", align_corners=False)
    y = y.permute(0, 2, 3, 1).numpy()
    differ = d.frames != np.clip(np.rint(y), 0, 255)
    assert np.all(np.abs(y[differ] - np.floor(y[differ]) - 0.5) < 2e-4)  # a few float32 ulps of 255
    assert differ.sum() < 1e-3 * differ.size
    # the 224 centre crop then sees 240-px frames, not 256-px ones (less zoom)
    assert not torch.equal(load_clip(VTEST, 2.0, "dpc", side_size=240), load_clip(VTEST, 2.0, "dpc"))


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_jpeg_quality_round_trips_every_frame_like_libjpeg() -> None:
    plain = read_frames(VTEST, [2.0], resolve_protocol("dpc", side_size=240)).frames
    jpeg = read_frames(VTEST, [2.0], resolve_protocol("dpc", side_size=240, jpeg_quality=80)).frames
    diff = np.abs(plain.astype(int) - jpeg).mean()
    assert 1.0 < diff < 8.0  # a few grey levels, as DPC's dumps against raw frames
    # the same bytes as torchvision's libjpeg encoder/decoder at quality 80
    for k in (0, 12, 24):
        data = encode_jpeg(torch.from_numpy(plain[k]).permute(2, 0, 1).contiguous(), quality=80)
        assert np.array_equal(jpeg[k], decode_jpeg(data).permute(1, 2, 0).numpy())
    better = read_frames(VTEST, [2.0], resolve_protocol("dpc", side_size=240, jpeg_quality=100)).frames
    assert np.abs(plain.astype(int) - better).mean() < diff
    assert not np.array_equal(jpeg_roundtrip(plain[0], 50), jpeg_roundtrip(plain[0], 80))


def test_output_size_resizes_the_crop_with_pil_nearest() -> None:
    p = resolve_protocol("dpc", side_size=240, crop_size=224, output_size=128)
    clip = load_clip(VTEST, 2.0, p)
    assert clip.shape == (5, 3, 5, 128, 128)
    frames = read_frames(VTEST, [2.0], p).frames
    y0, x0 = round((240 - 224) / 2), round((320 - 224) / 2)
    for n, s in ((0, 0), (2, 3), (4, 4)):
        crop = Image.fromarray(frames[n * 5 + s, y0:y0 + 224, x0:x0 + 224])
        small = torch.from_numpy(np.array(crop.resize((128, 128), Image.NEAREST))).permute(2, 0, 1).float()
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        assert torch.allclose(clip[n, :, s], (small / 255.0 - mean) / std, atol=1e-6)


def _rows(frames: int) -> pd.DataFrame:
    return pd.DataFrame([{"id": "vtest", "path": str(VTEST), "duration": 79.5, "fps": 10.0, "frames": frames,
                          "width": 768, "height": 576}])


def test_min_frames_drops_short_videos_with_the_reason(tmp_path: Path) -> None:
    p = resolve_protocol("dpc", min_frames=76)
    item = ClipDataset(_rows(75), p)[0]
    assert not item["ok"] and "excluded: 75 frames, fewer than min_frames=76" in item["error"]
    assert ClipDataset(_rows(76), p)[0]["ok"]
    # a rule, not an error: recorded as a failure even when broken videos stop the build
    failures = build_clip_cache(_rows(75), p, tmp_path / "c", workers=0, on_error="fail")
    assert [f.stage for f in failures] == ["decode"] and "excluded" in failures[0].error
    assert build_clip_cache(_rows(75), p, tmp_path / "c", workers=0, on_error="fail") == failures
    assert ClipCache(tmp_path / "c").entries[0].excluded
