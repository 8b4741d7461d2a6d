"""Helpers for the data tests: frames whose content encodes what the decoder must return."""

from __future__ import annotations

import numpy as np

QUADRANTS = np.array([[230, 30, 30], [30, 200, 40], [40, 50, 220], [240, 240, 240]], np.uint8)


def index_frame(i: int, w: int, h: int) -> np.ndarray:
    """A grey frame whose level encodes the frame index: 20 + 4 * i (i < 55)."""
    return np.full((h, w, 3), 20 + 4 * i, np.uint8)


def read_index(frames_3thw) -> np.ndarray:
    """Frame indices back from decoded grey-level frames ``[3, T, H, W]``."""
    mean = np.asarray(frames_3thw, dtype=np.float64).mean(axis=(0, 2, 3))
    return np.round((mean - 20) / 4).astype(int)


def quadrant_frame(w: int, h: int) -> np.ndarray:
    """Four flat colour quadrants (TL red, TR green, BL blue, BR white)."""
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = QUADRANTS[0]
    img[: h // 2, w // 2:] = QUADRANTS[1]
    img[h // 2:, : w // 2] = QUADRANTS[2]
    img[h // 2:, w // 2:] = QUADRANTS[3]
    return img


