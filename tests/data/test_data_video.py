"""Decoding: exact frames, frame-rate resampling, chunking, resize/crop, memory, backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch
from tests.data.data_helpers import QUADRANTS, read_index

from movinet_ray.data import (
    VideoChunk,
    VideoDecodeError,
    iter_video_chunks,
    preprocess_frames,
    probe_video,
    read_video,
    to_float,
)
from movinet_ray.data import storage, video
from movinet_ray.data.synthetic import write_video

ROOT = str(Path(__file__).resolve().parents[2])


def test_probe_reports_container_metadata(index_video):
    path = index_video(n=50, fps=25, w=64, h=48)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.width, info.height, info.codec) == (50, 25.0, 64, 48,
                                                                                 "h264")
    assert info.duration_s == pytest.approx(2.0)
    assert info.path == str(path)


def test_native_rate_returns_every_frame_in_order(index_video):
    path = index_video(n=50, fps=25)
    frames = read_video(path)
    assert frames.dtype == torch.uint8 and frames.shape == (3, 50, 48, 64)
    assert read_index(frames).tolist() == list(range(50))
    # grey in, grey out: lossless H.264 reproduces the level within rounding
    assert (frames.float().mean(dim=(0, 2, 3)) - (20 + 4 * torch.arange(50))).abs().max() < 1.5


@pytest.mark.parametrize("src_fps, fps, expected", [
    (25, 5, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]),       # 25 -> 5: every 5th frame
    (30, 4, [0, 7, 15, 22, 30, 37, 45]),                   # floor(k * 7.5)
    (10, 25, [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]),              # upsampling repeats frames
])
def test_target_fps_picks_frames_at_target_timestamps(index_video, src_fps, fps, expected):
    n = 50 if src_fps != 10 else 4
    path = index_video(n=n, fps=src_fps)
    chunks = list(iter_video_chunks(path, chunk_frames=4, fps=fps))
    got = np.concatenate([read_index(c.frames) for c in chunks]).tolist()
    assert got == expected
    src = np.concatenate([c.source_indices for c in chunks])
    assert src.tolist() == expected
    ts = np.concatenate([c.timestamps_s for c in chunks])
    np.testing.assert_allclose(ts, np.array(expected) / src_fps)
    assert [c.start_index for c in chunks] == list(range(0, len(expected), 4))
    assert all(c.frames.shape[1] == 4 for c in chunks[:-1])


def test_segment_start_end(index_video):
    path = index_video(n=50, fps=25)
    frames = read_video(path, fps=5, start_s=0.4, end_s=1.2)  # frames 10..29 at 5 fps
    assert read_index(frames).tolist() == [10, 15, 20, 25]


def test_chunks_concatenate_to_read_video(index_video):
    path = index_video(n=47, fps=25, w=96, h=64)
    whole = read_video(path, fps=10, size=32)
    chunks = list(iter_video_chunks(path, chunk_frames=3, fps=10, size=32))
    assert all(isinstance(c, VideoChunk) for c in chunks)
    assert torch.equal(torch.cat([c.frames for c in chunks], 1), whole)
    again = read_video(path, fps=10, size=32)
    assert torch.equal(whole, again)  # deterministic


def test_colours_resize_and_centre_crop(quadrant_video):
    path, frame = quadrant_video(w=160, h=120)
    raw = read_video(path)
    assert raw.shape == (3, 8, 120, 160)
    # interior of each quadrant decodes to its colour (4:2:0 chroma: small tolerance)
    for (ys, xs), colour in zip([(slice(10, 50), slice(10, 70)), (slice(10, 50), slice(90, 150)),
                                 (slice(70, 110), slice(10, 70)),
                                 (slice(70, 110), slice(90, 150))], QUADRANTS):
        got = raw[:, 0, ys, xs].float().mean(dim=(1, 2)).numpy()
        assert np.abs(got - colour).max() < 6, (got, colour)
    out = read_video(path, size=64)
    assert out.shape == (3, 8, 64, 64)
    # shorter side 120 -> 64 makes the frame 85 wide; the centre crop keeps the 4 quadrants
    # symmetric around the centre, so each 64x64 quarter holds one colour
    for (ys, xs), colour in zip([(slice(4, 28), slice(4, 28)), (slice(4, 28), slice(36, 60)),
                                 (slice(36, 60), slice(4, 28)), (slice(36, 60), slice(36, 60))],
                                QUADRANTS):
        got = out[:, 3, ys, xs].float().mean(dim=(1, 2)).numpy()
        assert np.abs(got - colour).max() < 6
    # file decoding and browser-frame preprocessing are the same function: bit-identical
    ref = preprocess_frames(raw.permute(1, 2, 3, 0).numpy(), 64)
    assert torch.equal(ref, out)
    # and close to preprocessing the original (un-encoded) frames
    orig = preprocess_frames(np.stack([frame] * 8), 64)
    assert (orig.int() - out.int()).abs().float().mean() < 3


def test_short_side_and_no_crop(quadrant_video):
    path, _ = quadrant_video(w=160, h=120)
    assert read_video(path, size=64, short_side=80).shape == (3, 8, 64, 64)
    assert read_video(path, size=64, crop=False).shape == (3, 8, 64, 85)  # aspect kept
    portrait = preprocess_frames(np.zeros((2, 100, 50, 3), np.uint8), 32)
    assert portrait.shape == (3, 2, 32, 32)
    with pytest.raises(ValueError, match="larger"):
        preprocess_frames(np.zeros((1, 100, 50, 3), np.uint8), 64, short_side=32)


def test_to_float_range():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert torch.allclose(to_float(x), torch.tensor([0.0, 0.2, 1.0]))
    with pytest.raises(ValueError):
        to_float(x.float())


def test_pyav_backend_matches_decord(index_video):
    path = index_video(n=30, fps=25, w=64, h=48)
    a = read_video(path, fps=10, size=32, backend="decord")
    b = read_video(path, fps=10, size=32, backend="pyav")
    assert a.shape == b.shape
    assert read_index(a).tolist() == read_index(b).tolist() == [0, 2, 5, 7, 10, 12, 15, 17, 20,
                                                                 22, 25, 27]
    assert (a.int() - b.int()).abs().max() <= 3


@pytest.mark.parametrize("name", ["av1.mp4", "av1.mkv"])
def test_av1_falls_back_to_pyav(index_video, name):
    """decord cannot read AV1; PyAV decodes it, with the exact frame count also from
    Matroska, which stores none (packets are counted)."""
    path = index_video(n=23, fps=12, name=name, codec="libsvtav1",
                       options={"crf": "10", "preset": "12"})
    assert read_index(read_video(path)).tolist() == list(range(23))
    assert read_index(read_video(path, fps=6)).tolist() == list(range(0, 23, 2))
    with video.open_video(path) as src:
        assert (src.backend, src.num_frames) == ("pyav", 23)
    with pytest.raises(VideoDecodeError, match="decord cannot open"):
        read_video(path, backend="decord")


@pytest.mark.parametrize("w", [16, 48])
def test_narrow_video_falls_back_to_pyav_when_decord_fails_to_decode(index_video, w):
    """decord 0.6 opens some narrow videos and then fails on every frame; auto decodes them
    with PyAV, the same frames as PyAV alone."""
    path = index_video(n=20, fps=10, w=w, h=32)
    with pytest.raises(VideoDecodeError, match="decoding frames"):
        read_video(path, backend="decord")
    frames = read_video(path, fps=5)
    assert frames.shape == (3, 10, 32, w)
    assert read_index(frames).tolist() == list(range(0, 20, 2))
    assert torch.equal(frames, read_video(path, fps=5, backend="pyav"))
    with video.open_video(path) as src:
        src.get(np.array([3]))
        assert src.backend == "pyav"


@pytest.mark.slow  # measures memory in subprocesses
def test_long_video_streams_in_bounded_memory(tmp_path, monkeypatch):
    """2 minutes at 30 fps (3600 frames of 320x240): the decoder is asked for at most
    DECODE_BATCH frames at a time, and resident memory stays far below the decoded video."""
    path = tmp_path / "long.mp4"
    rng = np.random.default_rng(0)
    base = np.repeat(np.repeat(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), 8, 0), 8, 1)
    write_video(path, (np.roll(base, 2 * i, axis=1) for i in range(3600)), 30,
                options={"preset": "ultrafast"})
    requested = []
    real_get = video._DecordSource.get

    def spy(self, indices):
        requested.append(len(indices))
        return real_get(self, indices)

    monkeypatch.setattr(video._DecordSource, "get", spy)
    n = sum(chunk.frames.shape[1] for chunk in iter_video_chunks(path, 32, size=64))
    assert n == 3600
    assert max(requested) <= video.DECODE_BATCH and sum(requested) == 3600
    # Resident memory, in a fresh process per backend (no Ray threads or test leftovers).
    # Decoded and kept, the video would take 3600 * 230 kB = 830 MB, its second half 415 MB.
    # PyAV stays flat: the second half may not rise above the first half's peak. decord's
    # resident memory grows in steps (by 100-500 MB at this frame size, at moments that vary
    # with thread timing, seen in either half) and then stays flat, also over repeated passes;
    # for it the bound is that it never holds the decoded video.
    script = (
        "import sys, psutil\n"
        "from movinet_ray.data import iter_video_chunks\n"
        "rss = [psutil.Process().memory_info().rss\n"
        "       for c in iter_video_chunks(sys.argv[1], chunk_frames=32, backend=sys.argv[2])]\n"
        "half = len(rss) // 2\n"
        "print([r // 1000000 for r in rss[::8]])\n"
        "print(max(rss[half:]) - max(rss[:half]), max(rss) - rss[0])\n")
    for backend, limit in (("pyav", 60e6), ("decord", 3600 * 230e3)):
        out = subprocess.run([sys.executable, "-c", script, str(path), backend],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": ROOT})
        late_growth, growth = map(int, out.stdout.strip().splitlines()[-1].split())
        if backend == "pyav":
            assert late_growth < limit, (backend, late_growth / 1e6, out.stdout)
        else:
            assert growth < limit, (backend, growth / 1e6, out.stdout)


def test_object_storage_path_is_downloaded_and_cleaned(index_video, tmp_path):
    path = index_video(n=10, fps=10)
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    with storage.local_copy(path.name, filesystem=fs) as local:
        assert local != str(path) and open(local, "rb").read() == path.read_bytes()
    assert not os.path.exists(local)  # temp copy removed
    uri = path.as_uri()  # file:// URIs go through pyarrow's filesystem resolution
    assert storage.is_uri(uri) and not storage.is_remote(uri)
    assert read_index(read_video(uri)).tolist() == list(range(10))
    assert probe_video(uri).num_frames == 10
    assert storage.join("s3://bucket/videos", "a", "b.mp4") == "s3://bucket/videos/a/b.mp4"
    assert storage.resolve("a/b.mp4", "gs://bkt/root") == "gs://bkt/root/a/b.mp4"
    assert storage.resolve("s3://x/y.mp4", "/data") == "s3://x/y.mp4"


def test_object_storage_code_path_end_to_end(index_video, tmp_path, monkeypatch):
    """``s3://bucket/...`` resolved to a local sub-tree filesystem (no real S3 here): the probe
    reads through a pyarrow file object, decoding downloads to a temp file, and manifests
    read and write through pyarrow with their relative paths resolved under the URI."""
    from movinet_ray.data import Manifest, read_manifest, write_manifest

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    index_video(n=10, fps=10, name="bucket/clip.mp4")
    remote_fs = pafs.SubTreeFileSystem(str(bucket), pafs.LocalFileSystem())
    real_from_uri = storage.from_uri
    opened = []

    def fake_from_uri(uri):
        if uri.startswith("s3://bucket"):
            opened.append(uri)
            return remote_fs, uri[len("s3://bucket"):].lstrip("/")
        return real_from_uri(uri)

    monkeypatch.setattr(storage, "from_uri", fake_from_uri)
    uri = "s3://bucket/clip.mp4"
    assert storage.is_remote(uri)
    assert probe_video(uri).num_frames == 10
    assert read_index(read_video(uri, fps=5)).tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(Exception, match="file not found"):
        probe_video("s3://bucket/nothing.mp4")
    write_manifest(Manifest.from_rows([{"path": "clip.mp4", "label": "a"}]),
                   "s3://bucket/m.parquet")
    assert (bucket / "m.parquet").exists() and (bucket / "m.classes.json").exists()
    back = read_manifest("s3://bucket/m.parquet")
    assert back.rows()[0]["path"] == uri and back.classes.names == ("a",)
    assert storage.list_files("s3://bucket", (".mp4",)) == [uri]
    assert opened
