"""HTTP API: health, model description, whole-video classification, upload limits, bad files."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import torch

from .serve_helpers import CLASSES, FPS, SIZE, TOL, scores, video_probs, write_test_video

pytestmark = pytest.mark.slow


def test_health_and_model(serve_url, checkpoint):
    version = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    health = httpx.get(f"{serve_url}/v1/health").json()
    assert health == {"status": "ok", "model": "motion-a0", "version": version,
                      "sessions_active": 0}
    model = httpx.get(f"{serve_url}/v1/model").json()
    assert model["classes"] == list(CLASSES) and model["num_classes"] == len(CLASSES)
    assert model["input_size"] == [SIZE, SIZE] and model["fps"] == FPS
    assert (model["variant"], model["device"], model["max_sessions"]) == ("a0", "cpu", 32)
    limits = httpx.get(f"{serve_url}/limits/v1/model").json()
    assert limits["max_sessions"] == 2


def test_classify_matches_offline_model(serve_url, ref_model, checkpoint, tmp_path):
    """A 4.5 s upload at 12 fps -> 23 frames at 5 fps, run in 4-frame chunks by the server
    (fused BN), equals the unfused model on the whole decoded clip."""
    video = write_test_video(tmp_path / "clip.mp4", n=54, fps=12, seed=1)
    with open(video, "rb") as f:
        r = httpx.post(f"{serve_url}/v1/classify", params={"top_k": len(CLASSES)},
                       files={"video": ("clip.mp4", f, "video/mp4")}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    expected, frames = video_probs(ref_model, video)
    assert body["frames"] == frames == 23
    assert body["duration_s"] == pytest.approx(4.5, abs=1e-3)
    assert (body["fps"], body["input_size"]) == (FPS, SIZE)
    assert body["model"]["name"] == "motion-a0" and body["model"]["uri"] == str(checkpoint)
    got = scores(body["top_k"])
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    assert expected.max() - expected.min() > 0.05  # a non-trivial answer to compare
    # the default answer is the top 5, best first
    with open(video, "rb") as f:
        top5 = httpx.post(f"{serve_url}/v1/classify", files={"video": f}, timeout=120).json()
    assert [t["index"] for t in top5["top_k"]] == expected.argsort(descending=True)[:5].tolist()


def test_upload_limit_from_content_length(serve_url):
    r = httpx.post(f"{serve_url}/v1/classify", files={"video": ("big.mp4", b"\0" * 1_300_000)})
    assert r.status_code == 413
    assert "exceeds the 1.0 MB limit" in r.json()["detail"]


def test_upload_limit_enforced_while_receiving(serve_url):
    """A chunked body (no Content-Length) of 8 MB is refused once 1 MB has arrived."""
    boundary = "movinetboundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; "
               f"filename=\"big.mp4\"\r\n\r\n").encode()
        for _ in range(128):
            yield b"\1" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = httpx.post(f"{serve_url}/v1/classify", content=body(), timeout=60,
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    detail = r.json()["detail"]
    assert "refused after receiving" in detail
    received_mb = float(detail.split("receiving ")[1].split(" MB")[0])
    assert 1.0 <= received_mb < 2.0  # stopped near the limit, not after 8 MB


@pytest.mark.parametrize("case", ["text file", "random bytes", "truncated mp4", "empty"])
def test_bad_uploads_are_422(serve_url, tmp_path, case):
    video = write_test_video(tmp_path / "ok.mp4", n=20, fps=10).read_bytes()
    data = {"text file": b"this is not a video\n" * 50,
            "random bytes": torch.randint(0, 256, (30000,), dtype=torch.uint8).numpy().tobytes(),
            "truncated mp4": video[: len(video) // 3],
            "empty": b""}[case]
    r = httpx.post(f"{serve_url}/v1/classify", files={"video": ("upload.bin", data)})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("upload.bin is not a readable video: ")
    assert "/tmp/" not in detail  # no server paths in answers
    if case == "empty":
        assert detail.endswith("empty file (0 bytes)")


def test_malformed_requests(serve_url):
    no_field = httpx.post(f"{serve_url}/v1/classify", files={"file": ("a.mp4", b"x")})
    assert no_field.status_code == 400 and "no file field 'video'" in no_field.json()["detail"]
    raw = httpx.post(f"{serve_url}/v1/classify", content=b"x" * 100,
                     headers={"content-type": "video/mp4"})
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["detail"]
    bad_k = httpx.post(f"{serve_url}/v1/classify", params={"top_k": 0},
                       files={"video": ("a.mp4", b"x")})
    assert bad_k.status_code == 422 and bad_k.json()["detail"][0]["loc"] == ["query", "top_k"]
