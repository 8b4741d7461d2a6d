"""Every kind of bad input raises VideoDecodeError naming the path and the reason, without a
hang or a crash; each file is made for real."""

from __future__ import annotations

import pickle

import av
import numpy as np
import pytest
import torch
from tests.data.data_helpers import index_frame

from movinet_ray.data import VideoDecodeError, iter_video_chunks, probe_video, read_video
from movinet_ray.data.synthetic import write_video

pytestmark = pytest.mark.timeout(60)


def _long_video(path, faststart: bool):
    """600 noisy frames (large enough that truncation lands mid-stream)."""
    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(600))
    write_video(path, frames, 30,
                container_options={"movflags": "faststart"} if faststart else None)
    return path


def _audio_only(path):
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _zero_frames(path, template):
    """A video stream with no frames (fragmented MP4: the header is written up front)."""
    with av.open(str(template)) as src, \
            av.open(str(path), "w", options={"movflags": "frag_keyframe+empty_moov"}) as out:
        out.add_stream_from_template(src.streams.video[0])
        out.start_encoding()
    return path


def _make(kind: str, tmp_path):
    p = tmp_path / f"{kind}.mp4"
    if kind == "missing":
        return p
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "random_bytes":
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, np.uint8).tobytes())
    elif kind == "text":
        p.write_text("this is not a video\n" * 50)
    elif kind == "truncated":  # moov atom at the end: cut off
        full = _long_video(tmp_path / "full.mp4", faststart=False).read_bytes()
        p.write_bytes(full[: len(full) // 2])
    elif kind == "audio_only":
        _audio_only(p)
    elif kind == "zero_frames":
        write_video(tmp_path / "t.mp4", [index_frame(0, 64, 48)], 10)
        _zero_frames(p, tmp_path / "t.mp4")
    return p


@pytest.mark.parametrize("kind, reason", [
    ("missing", "file not found"),
    ("empty", "empty file (0 bytes)"),
    ("random_bytes", "not a readable media file"),
    ("text", "not a readable media file"),
    ("truncated", "not a readable media file"),
    ("audio_only", "no video stream (streams: audio)"),
    ("zero_frames", "zero frames"),
])
def test_bad_file_raises_with_reason(tmp_path, kind, reason):
    path = _make(kind, tmp_path)
    for call in (lambda: probe_video(path), lambda: read_video(path),
                 lambda: next(iter_video_chunks(path, 8, backend="pyav"))):
        with pytest.raises(VideoDecodeError) as exc:
            call()
        assert exc.value.path == str(path)
        assert reason in exc.value.reason
        assert str(path) in str(exc.value) and reason in str(exc.value)
    # survives pickling (errors travel between Ray workers)
    back = pickle.loads(pickle.dumps(exc.value))
    assert (back.path, back.reason) == (exc.value.path, exc.value.reason)


def test_truncated_with_index_up_front_fails_when_reached(tmp_path):
    """faststart puts the frame index first, so the header probes fine. decord scans the
    packets when it opens the file and refuses it; the PyAV fallback then decodes the frames
    that are there and raises where the data ends, instead of yielding garbage."""
    full = _long_video(tmp_path / "fs.mp4", faststart=True).read_bytes()
    path = tmp_path / "trunc_fs.mp4"
    path.write_bytes(full[: int(len(full) * 0.6)])
    assert probe_video(path).num_frames == 600
    with pytest.raises(VideoDecodeError, match="decord cannot open"):
        read_video(path, backend="decord")
    good = read_video(tmp_path / "fs.mp4", backend="pyav")
    for backend in ("auto", "pyav"):
        chunks = iter_video_chunks(path, 16, backend=backend)
        first = next(chunks)
        assert torch.equal(first.frames, good[:, :16])  # what is there is real
        with pytest.raises(VideoDecodeError) as exc:
            for _ in chunks:
                pass
        assert "stream ended at frame" in exc.value.reason or "failed" in exc.value.reason


def test_corrupt_middle_raises(tmp_path):
    full = bytearray(_long_video(tmp_path / "ok.mp4", faststart=False).read_bytes())
    start = len(full) // 3
    full[start:start + 20000] = np.random.default_rng(2).integers(0, 256, 20000,
                                                                   np.uint8).tobytes()
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(full))
    with pytest.raises(VideoDecodeError, match="failed"):
        read_video(path, backend="decord")
