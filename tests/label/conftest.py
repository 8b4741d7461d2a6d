"""A small archive of generated videos (different lengths and rates, plus bad files) and a
tiny random stream model, shared by the labelling tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from movinet_ray.data.synthetic import render_frames, sample_spec, write_video
from movinet_ray.model import create_model, model_info, save_model
from tests.model.conftest import randomize_

SIZE, FPS = 48, 5.0  # the tiny model's input: what the job decodes to
CLASSES = tuple(f"class_{i}" for i in range(9))
# (name, source fps, seconds): at 5 fps these give 3..27 frames, none a multiple of the
# 5-frame chunks the tests use.
GOOD = (("walk", 10, 2.3), ("jump", 12, 0.6), ("run", 25, 5.4), ("sit", 10, 1.0),
        ("swim", 15, 3.7), ("ride", 10, 0.4), ("dance", 24, 2.9))


@dataclass(frozen=True)
class Archive:
    root: Path
    good: dict[str, Path]   # video_id -> path (the folder listing's ids)
    bad: dict[str, str]     # video_id -> the reason the job must report


@pytest.fixture(scope="session")
def label_model(tmp_path_factory):
    """``(path, model, info)``: an A0 stream model with non-trivial random weights."""
    torch.manual_seed(0)
    model = randomize_(create_model("a0", "stream", num_classes=len(CLASSES)), seed=5)
    info = model_info(model, CLASSES, resolution=SIZE, fps=FPS)
    path = save_model(tmp_path_factory.mktemp("model") / "tiny_a0_stream.pt", model, info)
    return path, model, info


def _noise_video(folder: Path, frames: int, faststart: bool) -> bytes:
    """Noisy frames (large, so a cut lands mid-stream), as MP4 bytes."""
    rng = np.random.default_rng(0)
    path = folder / f"noise_{faststart}.mp4"
    write_video(path, (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(frames)),
                30, container_options={"movflags": "faststart"} if faststart else None)
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Archive:
    root = tmp_path_factory.mktemp("archive")
    good = {}
    for i, (name, fps, seconds) in enumerate(GOOD):
        spec = sample_spec("move_right", np.random.default_rng(i), (96, 64), fps, seconds)
        path = root / "good" / f"{name}.mp4"
        path.parent.mkdir(exist_ok=True)
        write_video(path, render_frames(spec), fps)
        good[f"good/{name}"] = path
    bad_dir = root / "bad"
    bad_dir.mkdir()
    (bad_dir / "empty.mp4").write_bytes(b"")
    (bad_dir / "text.mp4").write_text("this is not a video\n" * 50)
    (bad_dir / "noise.avi").write_bytes(np.random.default_rng(1).integers(0, 256, 20000,
                                                                          np.uint8).tobytes())
    full = _noise_video(root, 300, faststart=False)
    (bad_dir / "cut.mp4").write_bytes(full[: len(full) // 2])  # index at the end: cut off
    full = _noise_video(root, 300, faststart=True)
    # index up front: the header probes fine, the data ends mid-stream (after some chunks)
    (bad_dir / "cut_midway.mp4").write_bytes(full[: int(len(full) * 0.6)])
    bad = {"bad/empty": "empty file", "bad/text": "not a readable media file",
           "bad/noise": "not a readable media file", "bad/cut": "not a readable media file",
           "bad/cut_midway": "stream ended at frame"}
    return Archive(root, good, bad)
