"""The labelling job on a local Ray: exact scores, timelines, bad files, resume, the CLI."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from movinet_ray.cli import main as cli_main
from movinet_ray.data import probe_video, read_video
from movinet_ray.label import (
    TIMELINE_SCHEMA,
    VIDEO_SCHEMA,
    LabelConfig,
    LabelStore,
    SettingsMismatch,
    run_label,
)
from movinet_ray.label.plot import timeline_series
from tests.label.conftest import FPS, SIZE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
CHUNK = 5
ROOT = Path(__file__).resolve().parents[2]


def _config(archive, out, model_path, **kw) -> LabelConfig:
    base = dict(input=str(archive.root), out=str(out), model=str(model_path),
                chunk_frames=CHUNK, batch_streams=3, batch_videos=6, num_actors=2,
                cpus_per_actor=1, top_k=3)
    return LabelConfig(**{**base, **kw})


def _probs(model, frames_u8) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(frames_u8[None].float() / 255.0)[0][0], -1)


def test_scores_equal_whole_clip_and_timeline_equals_prefixes(ray_local, archive, label_model,
                                                              tmp_path):
    """7 videos of 3-27 frames in 5-frame chunks, 3 in lockstep per actor, mixed with bad
    files in the same batches: every score is the whole-clip softmax of the same decoded
    frames, every timeline row the prediction of the prefix up to its end."""
    path, model, info = label_model
    summary = run_label(_config(archive, tmp_path / "out", path))
    store = LabelStore(str(tmp_path / "out"))
    videos = store.read_videos()
    assert videos.schema.equals(VIDEO_SCHEMA)
    rows = {r["video_id"]: r for r in videos.to_pylist()}
    assert len(rows) == videos.num_rows == len(archive.good) + len(archive.bad)
    assert summary["ok"] == len(archive.good) and summary["failed"] == len(archive.bad)

    timeline = store.read_timeline()
    assert timeline.schema.equals(TIMELINE_SCHEMA)
    for vid, video_path in archive.good.items():
        row = rows[vid]
        frames = read_video(video_path, fps=FPS, size=SIZE)
        n = frames.shape[1]
        probs = _probs(model, frames)
        assert row["status"] == "ok" and row["error"] is None
        assert row["frames"] == n and row["fps"] == FPS
        assert row["duration_s"] == pytest.approx(probe_video(video_path).duration_s)
        assert row["top_indices"] == probs.topk(3).indices.tolist()
        assert row["top_labels"] == [info.class_names[i] for i in row["top_indices"]]
        assert row["label"] == row["top_labels"][0]
        np.testing.assert_allclose(row["top_scores"], probs[row["top_indices"]], atol=1e-4)
        assert row["model_uri"] == str(path) and row["model_version"].startswith("sha256:")

        chunks = store.read_timeline(vid).to_pylist()
        assert [c["chunk"] for c in chunks] == list(range(math.ceil(n / CHUNK)))
        for c in chunks:
            assert c["start_frame"] == c["chunk"] * CHUNK
            assert c["end_frame"] == min(n, c["start_frame"] + CHUNK)
            assert (c["start_s"], c["end_s"]) == (c["start_frame"] / FPS, c["end_frame"] / FPS)
            prefix = _probs(model, frames[:, :c["end_frame"]])
            np.testing.assert_allclose(c["top_scores"], prefix[c["top_indices"]], atol=1e-4)
            assert c["top_indices"] == prefix.topk(3).indices.tolist()
        assert chunks[-1]["top_scores"] == row["top_scores"]  # the last prefix is the video

    for vid, reason in archive.bad.items():
        row = rows[vid]
        assert row["status"] == "error" and row["label"] is None, vid
        assert reason in row["error"] or (vid == "bad/cut_midway" and "failed" in row["error"])
    assert set(timeline["video_id"].to_pylist()) == set(archive.good)  # none for bad files
    assert summary["frames"] == sum(r["frames"] for r in rows.values() if r["status"] == "ok")
    assert summary["timeline_rows"] == timeline.num_rows
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary


def test_resume_skips_done_videos_and_clears_crash_leftovers(ray_local, archive, label_model,
                                                             tmp_path):
    path, _, _ = label_model
    out = tmp_path / "out"
    first = run_label(_config(archive, out, path, limit=4))
    assert first["labelled"] == 4
    store = LabelStore(str(out))
    parts = sorted((out / "timeline").glob("part-*.parquet"))
    # What a crash can leave: a hidden half-written temporary, and a timeline part whose
    # videos part never got written (its videos are not labelled; they would repeat).
    (out / "videos" / ".part-x.parquet.1234.tmp").write_bytes(b"PAR1 half")
    orphan = out / "timeline" / "part-crashed-00000.parquet"
    shutil.copy(parts[0], orphan)

    second = run_label(_config(archive, out, path))
    assert second["already_labelled"] == 4 and second["labelled"] == 12 - 4
    assert not orphan.exists() and not list(out.glob("*/.*"))
    videos = store.read_videos()
    ids = videos["video_id"].to_pylist()
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 12  # every video exactly once
    timeline = store.read_timeline()
    for row in videos.to_pylist():
        n_rows = timeline.filter(pc.equal(timeline["video_id"], row["video_id"])).num_rows
        assert n_rows == (math.ceil(row["frames"] / CHUNK) if row["status"] == "ok" else 0)

    third = _jobs_label().main(_config(archive, out, path))  # the `ray job submit` entry
    assert third["labelled"] == 0 and third["already_labelled"] == 12

    retried = run_label(_config(archive, out, path, retry_errors=True))
    assert retried["labelled"] == retried["failed"] == 5  # the bad files, once more
    ids = store.read_videos(["video_id"])["video_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 12

    with pytest.raises(SettingsMismatch, match="top_k"):
        run_label(_config(archive, out, path, top_k=2))


def _jobs_label():
    spec = importlib.util.spec_from_file_location("jobs_label", ROOT / "jobs" / "label.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_manifest_then_plot_timeline(ray_local, archive, label_model, tmp_path, capsys):
    """`movinet label` on a CSV manifest (relative paths, own ids, a missing file), then
    `movinet plot-timeline` draws what the timeline holds."""
    path, _, _ = label_model
    manifest = archive.root / "few.csv"
    manifest.write_text("path,video_id\ngood/run.mp4,run-1\ngood/walk.mp4,walk-1\n"
                        "good/gone.mp4,gone-1\n")
    out = tmp_path / "out"
    assert cli_main(["label", str(manifest), "--out", str(out), "--model", str(path),
                     "--chunk-frames", "4", "--batch-streams", "2", "--batch-videos", "3",
                     "--num-actors", "1", "--cpus-per-actor", "1", "--top-k", "4",
                     "--min-score", "0.99"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["ok"], summary["failed"]) == (2, 1)
    rows = {r["video_id"]: r for r in LabelStore(str(out)).read_videos().to_pylist()}
    assert rows["gone-1"]["error"] == "file not found"
    for vid in ("run-1", "walk-1"):
        row = rows[vid]
        assert len(row["top_labels"]) == 4
        assert row["label"] == ("unknown" if row["score"] < 0.99 else row["top_labels"][0])

    png = tmp_path / "run.png"
    assert cli_main(["plot-timeline", "--out", str(out), "--video-id", "run-1",
                     "--png", str(png), "--classes", "3"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    times, series = timeline_series(str(out), "run-1", max_classes=3)
    chunks = LabelStore(str(out)).read_timeline("run-1").to_pylist()
    assert times.tolist() == [c["end_s"] for c in chunks] and len(series) == 3
    for label, scores in series.items():
        for c, s in zip(chunks, scores):
            expect = dict(zip(c["top_labels"], c["top_scores"])).get(label, np.nan)
            assert s == pytest.approx(expect, nan_ok=True)
    with pytest.raises(KeyError, match="no timeline rows"):
        timeline_series(str(out), "gone-1")
