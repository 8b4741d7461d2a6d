"""Test videos made on the fly (nothing checked in)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.data.data_helpers import index_frame, quadrant_frame

from movinet_ray.data.synthetic import write_video


@pytest.fixture
def index_video(tmp_path):
    """``(path, n, fps)``: n grey frames whose level encodes the index, lossless H.264."""
    def make(n: int = 50, fps: float = 25, w: int = 64, h: int = 48, name: str = "idx.mp4",
             codec: str = "libx264", options: dict | None = None) -> Path:
        path = tmp_path / name
        write_video(path, (index_frame(i, w, h) for i in range(n)), fps, codec=codec, crf=0,
                    options=options)
        return path
    return make


@pytest.fixture
def quadrant_video(tmp_path):
    def make(n: int = 8, fps: float = 10, w: int = 160, h: int = 120) -> tuple[Path, np.ndarray]:
        frame = quadrant_frame(w, h)
        path = tmp_path / f"quad_{w}x{h}.mp4"
        write_video(path, [frame] * n, fps, crf=0)
        return path, frame
    return make
