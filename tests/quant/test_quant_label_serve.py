"""The int8 model at work: the labelling job and the Serve app load ``models:/...@int8`` from
MLflow and answer what the int8 model answers alone on the same decoded frames."""

from __future__ import annotations

import csv

import httpx
import numpy as np
import pytest
import torch

from movinet_ray import tracking
from movinet_ray.data import read_manifest, read_video
from movinet_ray.label import LabelConfig, LabelStore, run_label
from movinet_ray.serve import ReplicaConfig, ServeConfig

from .conftest import REGISTERED
from .quant_helpers import CLASSES, SIZE

pytestmark = pytest.mark.slow

INT8 = f"models:/{REGISTERED}@int8"
FPS = 10
# ONNX Runtime's int8 kernels are exact integer arithmetic, but the stream step runs a chunk
# at a time here and the whole video at once in the reference: float accumulation order
# differs, and a requantized activation can land one step apart.
ATOL = 2e-3


@pytest.fixture(scope="module")
def int8(job):
    model, info = tracking.resolve_model(INT8, tracking_uri=job.uri)
    version = tracking.setup_mlflow(job.uri).MlflowClient().get_model_version_by_alias(
        REGISTERED, "int8").version
    return model, info, str(version)


@pytest.fixture(scope="module")
def val_videos(squares):
    """Three validation videos per class: ``{video_id: (path, true label)}``."""
    manifest = read_manifest(squares.manifest_path)
    rows = [r for r in manifest.rows() if r["split"] == "val"]
    picked = {}
    for name in CLASSES:
        for r in [r for r in rows if r["label"] == name][:3]:
            picked[r["video_id"]] = (str(squares.root / r["path"]), name)
    return picked


def _probs(model, path) -> torch.Tensor:
    frames = read_video(path, fps=FPS, size=SIZE)
    with torch.inference_mode():
        logits, _ = model(frames[None].float() / 255, model.init_state(1, SIZE, SIZE))
    return torch.softmax(logits[0].float(), -1)


def test_label_job_with_the_int8_model(ray_local, job, int8, val_videos, tmp_path):
    model, info, version = int8
    listing = tmp_path / "videos.csv"
    with open(listing, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "video_id"])
        writer.writerows((path, vid) for vid, (path, _) in val_videos.items())
    summary = run_label(LabelConfig(
        input=str(listing), out=str(tmp_path / "out"), model=INT8, tracking_uri=job.uri,
        chunk_frames=5, batch_streams=2, batch_videos=5, num_actors=1, top_k=2))
    assert summary["ok"] == len(val_videos) and summary["failed"] == 0

    rows = {r["video_id"]: r for r in LabelStore(str(tmp_path / "out")).read_videos().to_pylist()}
    assert set(rows) == set(val_videos)
    correct = 0
    for vid, (path, truth) in val_videos.items():
        row = rows[vid]
        probs = _probs(model, path)
        assert row["status"] == "ok" and row["frames"] == 12
        assert row["model_uri"] == INT8 and row["model_version"] == version
        # chunks of 5 over 12 frames and 2 streams in lockstep: the int8 model's own answer
        assert row["top_indices"][0] == int(probs.argmax())
        np.testing.assert_allclose(row["top_scores"], probs[row["top_indices"]], atol=ATOL)
        correct += row["label"] == truth
    # the int8 model keeps the trained model's accuracy (test_quant_accuracy: within 2 clips)
    assert correct >= len(val_videos) - 1


def test_serve_classifies_with_the_int8_model(ray_local, job, int8, val_videos):
    from ray import serve

    from movinet_ray.serve.app import make_app
    from tests.serve.conftest import HTTP_PORT

    model, info, version = int8
    # the serving tests' proxy settings, so their session fixture finds the same Serve
    serve.start(http_options={"host": "127.0.0.1", "port": HTTP_PORT})
    cfg = ServeConfig(model=INT8, tracking_uri=job.uri, classify_chunk_frames=5,
                      replicas=ReplicaConfig(num_cpus=0.5))
    serve.run(make_app(cfg), name="int8", route_prefix="/int8")
    try:
        base = f"http://127.0.0.1:{HTTP_PORT}/int8"
        described = httpx.get(f"{base}/v1/model", timeout=60).json()
        assert described["version"] == version and described["classes"] == list(CLASSES)
        for vid, (path, truth) in list(val_videos.items())[::3]:
            with open(path, "rb") as f:
                response = httpx.post(f"{base}/v1/classify", params={"top_k": 3},
                                      files={"video": ("clip.mp4", f)}, timeout=120)
            assert response.status_code == 200, response.text
            answer = response.json()
            probs = _probs(model, path)
            assert answer["frames"] == 12
            assert [t["index"] for t in answer["top_k"]][0] == int(probs.argmax())
            for t in answer["top_k"]:
                assert t["label"] == CLASSES[t["index"]]
                assert t["score"] == pytest.approx(float(probs[t["index"]]), abs=ATOL)
            assert answer["top_k"][0]["label"] == truth
    finally:
        serve.delete("int8")
