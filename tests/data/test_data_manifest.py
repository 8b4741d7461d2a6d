"""Manifests round-trip with their class lists; folder and Kinetics CSV importers."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from movinet_ray.data import (
    ClassList,
    Manifest,
    import_folder,
    import_kinetics_csv,
    read_manifest,
    write_manifest,
)
from movinet_ray.data.manifest import classes_sidecar, default_video_id


def test_class_list():
    cl = ClassList.from_labels(["b", "a", None, "c", "a"])
    assert cl.names == ("a", "b", "c") and cl.index("c") == 2 and len(cl) == 3
    assert ClassList.from_json(cl.to_json()) == cl
    assert ClassList.from_json('["z", "y"]').names == ("z", "y")  # given order is kept
    with pytest.raises(KeyError, match="unknown class 'd'"):
        cl.index("d")
    with pytest.raises(ValueError, match="duplicate"):
        ClassList(("a", "a"))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_with_given_class_order(tmp_path, suffix):
    rows = [{"path": "v/a.mp4", "label": "walk", "split": "train", "start_s": 1.5, "end_s": 4.0},
            {"path": str(tmp_path / "b.mp4"), "label": "run", "split": "val"},
            {"path": "s3://bucket/c.mp4", "label": None, "video_id": "custom"}]
    m = Manifest.from_rows(rows, classes=["walk", "run", "jump"])
    out = write_manifest(m, tmp_path / f"m{suffix}")
    side = json.loads((tmp_path / "m.classes.json").read_text())
    assert side == {"classes": ["walk", "run", "jump"]} and classes_sidecar(out).endswith(
        "m.classes.json")
    back = read_manifest(out)
    assert back.classes.names == ("walk", "run", "jump")
    r = back.rows()
    assert r[0]["path"] == str(tmp_path / "v/a.mp4")  # relative -> against the manifest folder
    assert r[1]["path"] == str(tmp_path / "b.mp4") and r[2]["path"] == "s3://bucket/c.mp4"
    assert (r[0]["start_s"], r[0]["end_s"], r[1]["start_s"]) == (1.5, 4.0, None)
    assert [x["label"] for x in r] == ["walk", "run", None]
    assert back.label_indices() == [0, 1, None]
    assert r[0]["video_id"] == default_video_id("v/a.mp4") and r[2]["video_id"] == "custom"
    assert [x["split"] for x in r] == ["train", "val", None]
    assert len(back.split("train")) == 1 and back.splits == ["train", "val"]
    if suffix == ".parquet":  # also in the schema metadata, without the sidecar
        (tmp_path / "m.classes.json").unlink()
        assert read_manifest(out).classes.names == ("walk", "run", "jump")
        assert b"movinet_ray.classes" in pq.read_schema(out).metadata


def test_default_video_id_is_deterministic_and_unique():
    a, b = default_video_id("/x/run/0001.mp4"), default_video_id("/x/walk/0001.mp4")
    assert a.startswith("0001-") and a != b and a == default_video_id("/x/run/0001.mp4")


def test_unknown_label_rejected():
    with pytest.raises(ValueError, match="not in the class list"):
        Manifest.from_rows([{"path": "a.mp4", "label": "fly"}], classes=["walk"])


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")  # importers do not decode


def test_import_folder_with_and_without_split_level(tmp_path):
    flat = tmp_path / "flat"
    for rel in ["walk/1.mp4", "walk/2.avi", "run/1.mp4", "run/notes.txt"]:
        _touch(flat / rel)
    m = import_folder(flat)
    assert m.classes.names == ("run", "walk") and len(m) == 3
    assert "split" not in m.table.column_names
    assert sorted(r["video_id"] for r in m.rows()) == ["run/1", "walk/1", "walk/2"]
    assert {r["video_id"]: r["label"] for r in m.rows()}["walk/2"] == "walk"

    nested = tmp_path / "nested"
    for rel in ["train/walk/1.mp4", "train/run/1.mp4", "validation/walk/9.mp4",
                "test/jump/3.webm"]:
        _touch(nested / rel)
    m = import_folder(nested)
    assert m.classes.names == ("jump", "run", "walk")
    got = {r["video_id"]: (r["label"], r["split"]) for r in m.rows()}
    assert got == {"train/walk/1": ("walk", "train"), "train/run/1": ("run", "train"),
                   "validation/walk/9": ("walk", "val"), "test/jump/3": ("jump", "test")}
    assert all(r["path"].startswith(str(nested)) for r in m.rows())


def test_import_kinetics_csv(tmp_path):
    root = tmp_path / "k400"
    _touch(root / "air drumming" / "abc_000010_000020.mp4")
    _touch(root / "abseiling" / "-x_y_000003_000013.mp4")
    _touch(root / "zz_000000_000010.mkv")  # flat layout works too
    csv = tmp_path / "train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   "air drumming,abc,10,20,train\n"
                   "abseiling,-x_y,3,13,validate\n"
                   "abseiling,zz,0,10,train\n"
                   "abseiling,gone,5,15,train\n")
    m, missing = import_kinetics_csv(csv, root)
    assert missing == ["gone_000005_000015"]
    assert m.classes.names == ("abseiling", "air drumming")
    got = {r["video_id"]: (r["label"], r["split"], r["path"]) for r in m.rows()}
    assert got["abc_000010_000020"] == ("air drumming", "train",
                                        str(root / "air drumming" / "abc_000010_000020.mp4"))
    assert got["-x_y_000003_000013"][:2] == ("abseiling", "val")
    assert got["zz_000000_000010"][2].endswith(".mkv")
    # a test CSV without labels, split given on the command line
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("youtube_id,time_start,time_end\nabc,10,20\n")
    m, missing = import_kinetics_csv(test_csv, root, split="test")
    assert missing == [] and m.rows()[0]["label"] is None and m.rows()[0]["split"] == "test"


def test_cli_imports_and_probe(tmp_path, capsys):
    from movinet_ray.cli import main

    for rel in ["walk/1.mp4", "run/1.mp4"]:
        _touch(tmp_path / "d" / rel)
    assert main(["data", "import-folder", str(tmp_path / "d"), "--out",
                 str(tmp_path / "m.parquet")]) == 0
    assert "2 videos, 2 classes" in capsys.readouterr().out
    assert read_manifest(tmp_path / "m.parquet").classes.names == ("run", "walk")
    csv = tmp_path / "k.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\nwalk,q,0,10,train\n")
    _touch(tmp_path / "k" / "q_000000_000010.mp4")
    assert main(["data", "import-kinetics-csv", str(csv), "--root", str(tmp_path / "k"),
                 "--out", str(tmp_path / "k.csv.parquet")]) == 0
    assert "0 rows without a file" in capsys.readouterr().out
    assert main(["data", "probe", str(tmp_path / "d" / "walk" / "1.mp4")]) == 1
    assert "not a readable media file" in capsys.readouterr().out
