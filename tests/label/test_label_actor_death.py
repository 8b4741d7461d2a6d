"""An actor killed mid-batch costs a retry of its batch; every video is written once."""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from movinet_ray.data import read_video
from movinet_ray.label import LabelConfig, LabelStore, run_label
from movinet_ray.label import job as label_job
from tests.label.killable import marked_predictor
from tests.label.conftest import FPS, SIZE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_killed_actor_retries_its_batch_and_writes_each_video_once(
        ray_local, archive, label_model, tmp_path, monkeypatch):
    path, model, _ = label_model
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setattr(label_job, "LabelPredictor", marked_predictor(markers, "run"))
    cfg = LabelConfig(input=str(archive.root / "good"), out=str(tmp_path / "out"),
                      model=str(path), chunk_frames=4, batch_streams=2, batch_videos=3,
                      num_actors=1, cpus_per_actor=1, top_k=3)
    result = {}
    job = threading.Thread(target=lambda: result.update(run_label(cfg)), daemon=True)
    job.start()
    deadline = time.time() + 120
    while not (markers / "paused").exists():
        assert time.time() < deadline and job.is_alive(), "the marked batch never started"
        time.sleep(0.1)
    pid = int((markers / "paused").read_text())
    os.kill(pid, signal.SIGKILL)
    job.join(180)
    assert not job.is_alive() and result, "the job did not finish after the kill"

    # The paused batch ran twice, in two processes; the first never returned.
    key = next(p.name.split(".")[0] for p in markers.glob("*.*")
               if "run" in p.read_text().split(","))
    attempts = sorted(markers.glob(f"{key}.*"))
    assert len(attempts) == 2 and str(pid) in {a.suffix[1:] for a in attempts}

    store = LabelStore(cfg.out)
    videos = store.read_videos().to_pylist()
    good = {vid.removeprefix("good/"): p for vid, p in archive.good.items()}
    assert sorted(v["video_id"] for v in videos) == sorted(good)  # each exactly once
    assert result["labelled"] == result["ok"] == len(archive.good)
    timeline = store.read_timeline()
    for v in videos:
        frames = read_video(good[v["video_id"]], fps=FPS, size=SIZE)
        with torch.no_grad():
            probs = torch.softmax(model(frames[None].float() / 255)[0][0], -1)
        np.testing.assert_allclose(v["top_scores"], probs[v["top_indices"]], atol=1e-4)
        rows = [r for r in timeline.to_pylist() if r["video_id"] == v["video_id"]]
        assert [r["chunk"] for r in rows] == list(range(math.ceil(frames.shape[1] / 4)))
