"""Dataset adapters on miniature fake trees in each dataset's exact layout.

Listing never opens videos, so the trees hold tiny dummy files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dimcollapse.data.datasets import (
    LAYOUTS,
    DatasetConfigError,
    dataset_sources,
    list_videos,
)


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _ids(listing) -> list[str]:
    return [r.id for r in listing.records]


# --------------------------------------------------------------------------- kinetics


@pytest.fixture()
def k400_tree(tmp_path: Path) -> Path:
    root = tmp_path / "k400"
    val = root / "val"
    _touch(val / "abseiling" / "aaa_000010_000020.mp4")
    _touch(val / "abseiling" / "bbb_000000_000010.mp4")
    _touch(val / "air drumming" / "ccc_000005_000015.mp4")
    _touch(val / "air drumming" / "nested" / "ddd_000001_000011.MP4")  # upper-case, nested
    _touch(val / "zumba" / "eee_000030_000040.webm")
    _touch(val / "zumba" / "notes.txt")  # not a video
    (val / "empty class").mkdir()  # no videos: not a class
    _touch(val / "stray_000000_000010.mp4")  # not in a class folder: ignored
    _touch(root / "train" / "abseiling" / "fff_000000_000010.mp4")  # other split
    return root


def test_kinetics_class_folders(k400_tree: Path) -> None:
    listing = list_videos({"layout": "kinetics", "root": str(k400_tree), "split": "val"})
    assert listing.classes == ("abseiling", "air drumming", "zumba")
    assert _ids(listing) == [
        "abseiling/aaa_000010_000020",
        "abseiling/bbb_000000_000010",
        "air drumming/ccc_000005_000015",
        "air drumming/nested/ddd_000001_000011",
        "zumba/eee_000030_000040",
    ]
    assert [r.label for r in listing.records] == [0, 0, 1, 1, 2]
    assert [r.label_name for r in listing.records] == ["abseiling", "abseiling", "air drumming", "air drumming", "zumba"]
    first = listing.records[0]
    assert first.path == str(k400_tree / "val" / "abseiling" / "aaa_000010_000020.mp4")
    assert Path(first.path).is_absolute()
    assert listing.problems == ()


def test_kinetics_extensions_option_restricts_files(k400_tree: Path) -> None:
    listing = list_videos({"layout": "kinetics", "root": str(k400_tree), "split": "val", "extensions": ["mp4"]})
    assert "zumba/eee_000030_000040" not in _ids(listing)
    assert "air drumming/nested/ddd_000001_000011" in _ids(listing)  # case-insensitive
    assert listing.classes == ("abseiling", "air drumming")


def test_kinetics_annotation_csv_reports_missing_rows(k400_tree: Path) -> None:
    csv_path = k400_tree / "annotations" / "validate.csv"
    _touch(csv_path, (
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,aaa,10,20,val,0\n"
        "abseiling,bbb,0.0,10.0,val,0\n"
        '"air drumming",ccc,5,15,val,0\n'
        "zumba,eee,30,40,val,0\n"
        "zumba,gone,3,13,val,0\n"
        "arm wrestling,lost,100,110,val,1\n"
    ).encode())
    listing = list_videos({
        "layout": "kinetics", "root": str(k400_tree), "split": "val", "annotations": "annotations/validate.csv",
    })
    # Class index = sorted label names of the CSV, including classes whose files are all missing.
    assert listing.classes == ("abseiling", "air drumming", "arm wrestling", "zumba")
    assert [(r.id, r.label, r.label_name) for r in listing.records] == [
        ("abseiling/aaa_000010_000020", 0, "abseiling"),
        ("abseiling/bbb_000000_000010", 0, "abseiling"),
        ("air drumming/ccc_000005_000015", 1, "air drumming"),
        ("zumba/eee_000030_000040", 3, "zumba"),
    ]
    # ddd is on disk but not annotated: not listed.
    assert [(p.id, p.stage) for p in listing.problems] == [
        ("gone_000003_000013", "missing"),
        ("lost_000100_000110", "missing"),
    ]
    assert "validate.csv:6" in listing.problems[0].error
    assert listing.problems[0].path == str(k400_tree / "val" / "gone_000003_000013")


def test_kinetics_annotation_csv_needs_its_columns(k400_tree: Path) -> None:
    _touch(k400_tree / "bad.csv", b"label,youtube_id,start,end\nabseiling,aaa,10,20\n")
    with pytest.raises(DatasetConfigError, match=r"bad\.csv.*time_start"):
        list_videos({"layout": "kinetics", "root": str(k400_tree), "split": "val", "annotations": "bad.csv"})


def test_kinetics_list_file_with_class_names(k400_tree: Path, tmp_path: Path) -> None:
    _touch(k400_tree / "val.csv", (
        "zumba/eee_000030_000040.webm 2\n"
        "abseiling/aaa_000010_000020.mp4 0\n"
        "\n"
        "abseiling/missing_000000_000010.mp4 0\n"
    ).encode())
    names_txt = _touch(tmp_path / "classes.txt", b"abseiling\nair drumming\nzumba\n")
    cfg = {"layout": "kinetics", "root": str(k400_tree), "split": "val", "list_file": "val.csv",
           "class_names": str(names_txt)}
    listing = list_videos(cfg)
    assert [(r.id, r.label, r.label_name) for r in listing.records] == [
        ("abseiling/aaa_000010_000020", 0, "abseiling"),
        ("zumba/eee_000030_000040", 2, "zumba"),
    ]
    assert [p.id for p in listing.problems] == ["abseiling/missing_000000_000010"]
    assert "val.csv:4" in listing.problems[0].error
    names_json = _touch(tmp_path / "classids.json", json.dumps({"zumba": 2, "abseiling": 0, "air drumming": 1}).encode())
    assert list_videos({**cfg, "class_names": str(names_json)}).classes == ("abseiling", "air drumming", "zumba")
    # Without names the label text is the integer; a prefix relocates the paths.
    bare = list_videos({"layout": "kinetics", "root": str(k400_tree), "list_file": "val.csv", "path_prefix": "val"})
    assert [r.label_name for r in bare.records] == ["0", "2"]


def test_kinetics_list_file_rejects_bad_lines(k400_tree: Path) -> None:
    _touch(k400_tree / "bad.txt", b"abseiling/aaa_000010_000020.mp4 abseiling\n")
    with pytest.raises(DatasetConfigError, match=r"bad\.txt:1.*not an integer"):
        list_videos({"layout": "kinetics", "root": str(k400_tree), "split": "val", "list_file": "bad.txt"})


# --------------------------------------------------------------------------- ucf101


UCF_CLASSES = ["ApplyEyeMakeup", "Hammering", "HammerThrow"]  # classInd order is not ASCII order


@pytest.fixture()
def ucf_tree(tmp_path: Path) -> Path:
    root = tmp_path / "UCF-101"
    for cls in UCF_CLASSES:
        for g, c in [(1, 1), (1, 2), (8, 1)]:
            _touch(root / cls / f"v_{cls}_g{g:02d}_c{c:02d}.avi")
    _touch(root / "HammerThrow" / "v_HammerThrow_g09_c01.avi")  # on disk, in no split list
    splits = root / "ucfTrainTestlist"  # inside the video root: must not become a class
    _touch(splits / "classInd.txt", b"1 ApplyEyeMakeup\r\n2 Hammering\r\n3 HammerThrow\r\n")
    train = [f"{cls}/v_{cls}_g08_c01.avi {i + 1}" for i, cls in enumerate(UCF_CLASSES)]
    test = [f"{cls}/v_{cls}_g01_c0{c}.avi" for cls in UCF_CLASSES for c in (1, 2)]
    _touch(splits / "trainlist01.txt", ("\r\n".join(train) + "\r\n").encode())
    _touch(splits / "testlist01.txt", ("\r\n".join(test + ["HammerThrow/v_HammerThrow_g02_c01.avi"]) + "\r\n").encode())
    return root


def test_ucf101_all_is_every_video_under_root(ucf_tree: Path) -> None:
    listing = list_videos({"layout": "ucf101", "root": str(ucf_tree), "split": "all"})
    assert listing.classes == tuple(UCF_CLASSES)
    assert len(listing.records) == 10
    by_id = {r.id: r for r in listing.records}
    assert by_id["HammerThrow/v_HammerThrow_g09_c01"].label == 2
    assert by_id["Hammering/v_Hammering_g01_c01"].label == 1
    assert _ids(listing) == sorted(_ids(listing), key=lambda i: (UCF_CLASSES.index(i.split("/")[0]), i))
    assert listing.problems == ()


def test_ucf101_all_matches_pytorchvideo_selection(ucf_tree: Path, tmp_path: Path) -> None:
    """The paper ran PyTorchVideo's Ucf101(data_path=<folder of class folders>)."""
    from pytorchvideo.data.labeled_video_paths import LabeledVideoPaths

    videos_only = tmp_path / "videos_only"
    videos_only.mkdir()
    for cls in UCF_CLASSES:
        (videos_only / cls).symlink_to(ucf_tree / cls)
    theirs = LabeledVideoPaths.from_directory(str(videos_only))
    their_paths = {Path(theirs[i][0]).resolve() for i in range(len(theirs))}
    ours = list_videos({"layout": "ucf101", "root": str(ucf_tree)})  # split defaults to all
    assert {Path(r.path).resolve() for r in ours.records} == their_paths


def test_ucf101_without_classind_falls_back_to_sorted_folders(ucf_tree: Path) -> None:
    (ucf_tree / "ucfTrainTestlist" / "classInd.txt").unlink()
    listing = list_videos({"layout": "ucf101", "root": str(ucf_tree), "split": "all"})
    assert listing.classes == ("ApplyEyeMakeup", "HammerThrow", "Hammering")


def test_ucf101_split_subsets(ucf_tree: Path, tmp_path: Path) -> None:
    cfg = {"layout": "ucf101", "root": str(ucf_tree), "split": 1}
    train = list_videos({**cfg, "subset": "train"})
    assert [(r.id, r.label) for r in train.records] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 0),
        ("Hammering/v_Hammering_g08_c01", 1),
        ("HammerThrow/v_HammerThrow_g08_c01", 2),
    ]
    assert train.problems == ()
    test = list_videos({**cfg, "subset": "test"})
    assert len(test.records) == 6
    assert {r.label_name for r in test.records} == set(UCF_CLASSES)
    assert [(p.id, p.stage) for p in test.problems] == [("HammerThrow/v_HammerThrow_g02_c01", "missing")]
    # Split folder elsewhere, given as an absolute path.
    moved = tmp_path / "lists"
    (ucf_tree / "ucfTrainTestlist").rename(moved)
    assert len(list_videos({**cfg, "subset": "test", "splits_dir": str(moved)}).records) == 6


def test_ucf101_config_errors(ucf_tree: Path) -> None:
    cfg = {"layout": "ucf101", "root": str(ucf_tree)}
    with pytest.raises(DatasetConfigError, match="'subset'"):
        list_videos({**cfg, "split": 2})
    with pytest.raises(DatasetConfigError, match="'split'"):
        list_videos({**cfg, "split": 4, "subset": "test"})
    with pytest.raises(DatasetConfigError, match=r"trainlist02\.txt"):
        list_videos({**cfg, "split": 2, "subset": "train"})
    lists = ucf_tree / "ucfTrainTestlist"
    (lists / "trainlist01.txt").write_text("Hammering/v_Hammering_g08_c01.avi 3\n")
    with pytest.raises(DatasetConfigError, match=r"trainlist01\.txt:1.*disagrees"):
        list_videos({**cfg, "split": 1, "subset": "train"})


# --------------------------------------------------------------------------- hmdb51


HMDB = {
    "brush_hair": {"April_09_brush_hair_u_nm_np1_ba_goo_0.avi": (1, 2), "Aussie_brush_hair_f_nm_np1_le_goo_1.avi": (2, 1),
                   "Blonde_brush_hair_h_cm_np1_fr_med_2.avi": (0, 1)},
    "cartwheel": {"Acrobatic_cartwheel_f_cm_np1_le_bad_0.avi": (1, 1), "Bodenturnen_cartwheel_f_cm_np1_ri_med_3.avi": (2, 0)},
}


def _hmdb_tree(root: Path, splits: Path, videos: Path) -> None:
    for cls, files in HMDB.items():
        for name in files:
            _touch(videos / cls / name)
        for k in (1, 2):
            lines = "".join(f"{name} {flags[k - 1]} \n" for name, flags in files.items())  # trailing space as in HMDB
            _touch(splits / f"{cls}_test_split{k}.txt", lines.encode())
        _touch(splits / f"{cls}_test_split3.txt", b"")


@pytest.fixture()
def hmdb_tree(tmp_path: Path) -> Path:
    root = tmp_path / "HMDB51"
    _hmdb_tree(root, root / "split" / "testTrainMulti_7030_splits", root / "videos")
    return root


def test_hmdb51_default_dirs_and_all_subset(hmdb_tree: Path) -> None:
    listing = list_videos({"layout": "hmdb51", "root": str(hmdb_tree)})  # split 1, subset all
    assert listing.classes == ("brush_hair", "cartwheel")
    assert _ids(listing) == [
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0",
        "brush_hair/Aussie_brush_hair_f_nm_np1_le_goo_1",
        "brush_hair/Blonde_brush_hair_h_cm_np1_fr_med_2",
        "cartwheel/Acrobatic_cartwheel_f_cm_np1_le_bad_0",
        "cartwheel/Bodenturnen_cartwheel_f_cm_np1_ri_med_3",
    ]
    assert [r.label for r in listing.records] == [0, 0, 0, 1, 1]
    assert listing.records[0].path == str(hmdb_tree / "videos" / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_0.avi")


@pytest.mark.parametrize(("split", "subset", "expected"), [
    (1, "train", {"April_09_brush_hair_u_nm_np1_ba_goo_0", "Acrobatic_cartwheel_f_cm_np1_le_bad_0"}),
    (1, "test", {"Aussie_brush_hair_f_nm_np1_le_goo_1", "Bodenturnen_cartwheel_f_cm_np1_ri_med_3"}),
    (1, "unused", {"Blonde_brush_hair_h_cm_np1_fr_med_2"}),
    (2, "train", {"Aussie_brush_hair_f_nm_np1_le_goo_1", "Blonde_brush_hair_h_cm_np1_fr_med_2",
                  "Acrobatic_cartwheel_f_cm_np1_le_bad_0"}),
    (2, "unused", {"Bodenturnen_cartwheel_f_cm_np1_ri_med_3"}),
])
def test_hmdb51_subsets(hmdb_tree: Path, split: int, subset: str, expected: set[str]) -> None:
    listing = list_videos({"layout": "hmdb51", "root": str(hmdb_tree), "split": split, "subset": subset})
    assert {r.id.split("/")[1] for r in listing.records} == expected


def test_hmdb51_all_matches_pytorchvideo_chain(hmdb_tree: Path) -> None:
    """The paper chained PyTorchVideo's Hmdb51 train, test and unused of split 1."""
    from pytorchvideo.data.hmdb51 import Hmdb51LabeledVideoPaths

    splits = hmdb_tree / "split" / "testTrainMulti_7030_splits"
    theirs = set()
    for kind in ("train", "test", "unused"):
        paths = Hmdb51LabeledVideoPaths.from_dir(str(splits), split_id=1, split_type=kind)
        paths.path_prefix = str(hmdb_tree / "videos")
        theirs |= {paths[i][0] for i in range(len(paths))}
    ours = list_videos({"layout": "hmdb51", "root": str(hmdb_tree), "split": 1, "subset": "all"})
    assert {r.path for r in ours.records} == theirs


def test_hmdb51_configurable_dirs_and_missing_files(tmp_path: Path) -> None:
    root = tmp_path / "hmdb"
    _hmdb_tree(root, tmp_path / "lists", root / "clips")
    (root / "clips" / "cartwheel" / "Acrobatic_cartwheel_f_cm_np1_le_bad_0.avi").unlink()
    listing = list_videos({"layout": "hmdb51", "root": str(root), "splits_dir": str(tmp_path / "lists"),
                           "videos_dir": "clips", "subset": "train"})
    assert _ids(listing) == ["brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0"]
    assert [(p.id, p.stage) for p in listing.problems] == [("cartwheel/Acrobatic_cartwheel_f_cm_np1_le_bad_0", "missing")]
    assert "cartwheel_test_split1.txt:1" in listing.problems[0].error


def test_hmdb51_rejects_bad_flags_and_subsets(hmdb_tree: Path) -> None:
    with pytest.raises(DatasetConfigError, match="'subset'"):
        list_videos({"layout": "hmdb51", "root": str(hmdb_tree), "subset": "val"})
    split_file = hmdb_tree / "split" / "testTrainMulti_7030_splits" / "cartwheel_test_split1.txt"
    split_file.write_text("Acrobatic_cartwheel_f_cm_np1_le_bad_0.avi 7\n")
    with pytest.raises(DatasetConfigError, match=r"cartwheel_test_split1\.txt:1"):
        list_videos({"layout": "hmdb51", "root": str(hmdb_tree)})


# --------------------------------------------------------------------------- generic


def test_folder_layout(tmp_path: Path) -> None:
    _touch(tmp_path / "b" / "x.mkv")
    _touch(tmp_path / "a" / "y.avi")
    _touch(tmp_path / "a" / "sub" / "z.mov")
    listing = list_videos({"layout": "folder", "root": str(tmp_path)})
    assert [(r.id, r.label, r.label_name) for r in listing.records] == [
        ("a/sub/z", 0, "a"), ("a/y", 0, "a"), ("b/x", 1, "b"),
    ]


def test_folder_layout_refuses_ambiguous_ids(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "clip.mp4")
    _touch(tmp_path / "a" / "clip.avi")
    with pytest.raises(DatasetConfigError, match="share the id 'a/clip'"):
        list_videos({"layout": "folder", "root": str(tmp_path)})


def test_folder_listing_follows_a_symlink_loop_once(tmp_path: Path) -> None:
    _touch(tmp_path / "jump" / "a.mp4")
    _touch(tmp_path / "run" / "b.mp4")
    (tmp_path / "jump" / "again").symlink_to(tmp_path / "jump")  # a loop
    listing = list_videos({"layout": "folder", "root": str(tmp_path)})
    assert [r.id for r in listing.records] == ["jump/a", "run/b"]


def test_csv_layout_with_names(tmp_path: Path) -> None:
    _touch(tmp_path / "v" / "one.mp4")
    _touch(tmp_path / "v" / "two.mp4")
    outside = _touch(tmp_path.parent / f"{tmp_path.name}_elsewhere" / "three.mp4")
    _touch(tmp_path / "list.csv", f"path,label\nv/two.mp4,run\nv/one.mp4,jump\n{outside},run\nv/gone.mp4,jump\n".encode())
    listing = list_videos({"layout": "csv", "root": str(tmp_path), "csv": "list.csv"})
    assert listing.classes == ("jump", "run")
    assert [(r.id, r.label, r.label_name) for r in listing.records] == [
        ("v/one", 0, "jump"), (str(outside.with_suffix("")), 1, "run"), ("v/two", 1, "run"),
    ]
    assert [(p.id, p.stage) for p in listing.problems] == [("v/gone", "missing")]


def test_csv_layout_with_integer_labels(tmp_path: Path) -> None:
    _touch(tmp_path / "a.mp4")
    _touch(tmp_path / "b.mp4")
    _touch(tmp_path / "list.csv", b"path,label\nb.mp4,0\na.mp4,2\n")
    listing = list_videos({"layout": "csv", "root": str(tmp_path), "csv": "list.csv"})
    assert [(r.id, r.label, r.label_name) for r in listing.records] == [("b", 0, "0"), ("a", 2, "2")]
    assert listing.classes == ("0", "1", "2")
    _touch(tmp_path / "names.txt", b"walk\nsit\nstand\n")
    named = list_videos({"layout": "csv", "root": str(tmp_path), "csv": "list.csv", "class_names": "names.txt"})
    assert [r.label_name for r in named.records] == ["walk", "stand"]


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(("cfg", "key"), [
    ({"root": "/x"}, "'layout'"),
    ({"layout": "youtube8m", "root": "/x"}, "'layout'"),
    ({"layout": "folder"}, "'root'"),
    ({"layout": "csv", "root": "/x"}, "'csv'"),
])
def test_config_errors_name_the_key(cfg: dict, key: str) -> None:
    with pytest.raises(DatasetConfigError, match=key):
        list_videos(cfg)


def test_missing_root_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetConfigError, match=f"{tmp_path / 'nope'}.*not a directory"):
        list_videos({"layout": "folder", "root": str(tmp_path / "nope")})


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "y.avi")
    listing = list_videos({"layout": "folder", "root": str(tmp_path), "protocols": {"dpc": {"downsample": 1}}})
    assert _ids(listing) == ["a/y"]


def test_every_layout_has_sources(tmp_path: Path) -> None:
    """Sources resolve without touching the disk, so they work before a dataset exists."""
    extra = {"csv": {"csv": "list.csv"}}
    for layout in LAYOUTS:
        sources = dataset_sources({"layout": layout, "root": str(tmp_path / "absent"), **extra.get(layout, {})})
        assert sources.video_dirs or layout == "csv"  # csv: only the files its table names
        assert all(p.is_absolute() for p in sources.video_dirs + sources.meta_paths)
    hmdb = dataset_sources({"layout": "hmdb51", "root": str(tmp_path)})
    assert hmdb.video_dirs == (tmp_path / "videos",)
    assert hmdb.meta_paths == (tmp_path / "split" / "testTrainMulti_7030_splits",)
