"""`prepare_dataset` / `movinet data prepare`: the copy holds exactly the frames the sampler
would pick from the originals, resized; bad files become error rows; re-runs resume."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from movinet_ray.data import (
    ClipMaker,
    ClipSampling,
    Manifest,
    generate_synthetic_dataset,
    prepare_dataset,
    read_manifest,
    read_video,
    resize_frames,
)
from movinet_ray.data.dataset import manifest_items

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Videos of varied sizes (160x120 .. 640x360) and frame rates (10-30 fps), a segment of
    one of them, a corrupt file and a missing one."""
    out = tmp_path_factory.mktemp("varied")
    good = read_manifest(generate_synthetic_dataset(out, ["move_left", "grow"],
                                                    videos_per_class=3, seed=3, seconds=2.4,
                                                    val_fraction=0.34))
    (out / "broken.mp4").write_bytes(b"\0" * 4000)
    first = good.rows()[0]
    extra = [{**first, "video_id": "segment", "start_s": 0.5, "end_s": 1.7},
             {"path": str(out / "broken.mp4"), "label": "grow", "split": "train",
              "video_id": "broken"},
             {"path": str(out / "gone.mp4"), "label": "grow", "split": "val",
              "video_id": "missing"}]
    return Manifest.from_rows(good.rows() + extra, good.classes)


def test_copies_are_the_sampled_frames_resized_and_bad_files_are_error_rows(
        ray_local, varied, tmp_path):
    result = prepare_dataset(varied, tmp_path / "prep", fps=2.5, size="48x32")
    assert (result.written, result.resumed) == (7, 0)
    assert {e["video_id"]: e["path"] for e in result.errors} == {
        "broken": str(varied.table["path"][7]), "missing": str(varied.table["path"][8])}
    assert all("cannot decode video" in e["error"] for e in result.errors)
    errors = pq.read_table(tmp_path / "prep" / "prepare_errors.parquet").to_pylist()
    assert sorted(e["video_id"] for e in errors) == ["broken", "missing"]

    prepared = read_manifest(result.manifest_path)
    assert prepared.classes == varied.classes
    originals = {r["video_id"]: r for r in varied.rows()}
    rows = prepared.rows()
    assert [r["video_id"] for r in rows] == varied.table["video_id"].to_pylist()[:7]
    for row in rows:
        src = originals[row["video_id"]]
        assert (row["label"], row["split"], row["source_path"]) == (src["label"], src["split"],
                                                                    src["path"])
        assert (row["fps"], row["width"], row["height"]) == (2.5, 48, 32)
        assert row.get("start_s") is None and row.get("end_s") is None
        expected = resize_frames(read_video(src["path"], fps=2.5, start_s=src.get("start_s"),
                                            end_s=src.get("end_s")), 32, 48)
        copy = read_video(row["path"])
        assert row["num_frames"] == copy.shape[1] == expected.shape[1]
        assert torch.equal(copy, expected), row["video_id"]  # lossless: bit for bit
    # 2.4 s at 2.5 fps -> 6 frames; the 0.5-1.7 s segment -> 3
    assert {r["video_id"]: r["num_frames"] for r in rows}["segment"] == 3
    assert rows[0]["num_frames"] == 6


def test_eval_clips_from_the_copy_equal_clips_from_the_originals(ray_local, varied, tmp_path):
    good = varied.filter_video_ids(set(varied.table["video_id"].to_pylist()) -
                                   {"broken", "missing"})
    result = prepare_dataset(good, tmp_path / "prep", fps=5, short_side=40)
    prepared = read_manifest(result.manifest_path)
    sampling = ClipSampling(frames=4, frame_stride=1, fps=5, clips_per_video=2)
    maker = ClipMaker(sampling, 32, train=False, short_side=40, on_error="raise")
    copies = {r["video_id"]: r for r in manifest_items(prepared, None)}
    compared = 0
    for item in manifest_items(good, None):
        want, got = maker(item), maker(copies[item["video_id"]])
        assert len(want) == len(got) == 2
        for a, b in zip(want, got):
            assert a["label"] == b["label"] and a["clip_index"] == b["clip_index"]
            np.testing.assert_array_equal(a["clip"], b["clip"])
            compared += 1
    assert compared == 14


def test_rerun_resumes_through_the_cli_and_other_settings_are_refused(
        ray_local, varied, tmp_path, capsys):
    from movinet_ray.cli import main
    from movinet_ray.data import write_manifest

    path = write_manifest(varied, tmp_path / "in.parquet")
    out = tmp_path / "prep"
    assert main(["data", "prepare", path, "--out", str(out), "--fps", "2.5",
                 "--size", "48x32"]) == 0
    first = capsys.readouterr().out
    assert "prepared 7 videos (7 written, 0 already there), 2 failed" in first
    assert "failed: broken" in first and "failed: missing" in first
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()}
    assert len(stamps) == 7 and not any(".part" in n for n in stamps)

    assert main(["data", "prepare", path, "--out", str(out), "--fps", "2.5",
                 "--size", "48x32"]) == 0
    assert "prepared 7 videos (0 written, 7 already there), 2 failed" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()} == stamps

    with pytest.raises(ValueError, match="use another folder"):
        prepare_dataset(varied, out, fps=5, size="48x32")
    assert os.path.exists(out / "manifest.parquet")
