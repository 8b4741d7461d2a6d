"""Helpers for the serving tests: a small test model, offline references, test videos,
WebSocket sessions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from movinet_ray.data import MOTION_CLASSES, preprocess_frames, read_video
from movinet_ray.data.synthetic import write_video
from movinet_ray.model import create_model, load_model, model_info, save_model
from tests.model.conftest import randomize_

SIZE = 64          # the test model's input side (fast on 2 cores)
FPS = 5
CLASSES = tuple(MOTION_CLASSES)
TOL = 1e-4


def make_checkpoint(path: Path) -> Path:
    """A randomized A0-stream with the motion classes, 64 px, 5 fps."""
    torch.manual_seed(0)
    model = randomize_(create_model("a0", "stream", num_classes=len(CLASSES)), seed=5)
    return save_model(path, model, model_info(model, CLASSES, resolution=SIZE, fps=FPS))


def reference_model(checkpoint: Path):
    """The checkpoint as a plain (unfused) model: what the served answers must match."""
    return load_model(checkpoint)[0]


def frames_rgb(n: int, height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    """Smooth moving colour patterns, uint8 ``[n, H, W, 3]`` (JPEG-friendly, not constant)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    speed = rng.uniform(0.2, 0.6, 3)
    out = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        for c in range(3):
            wave = np.sin(x / (6 + 3 * c) + y / (9 - 2 * c) + phase[c] + speed[c] * t)
            out[t, :, :, c] = np.clip(127.5 + 110 * wave + rng.normal(0, 8, wave.shape), 0, 255)
    return out


def write_test_video(path: Path, n: int, fps: float, seed: int = 0, codec: str = "libx264"
                     ) -> Path:
    write_video(path, list(frames_rgb(n, 96, 128, seed)), fps=fps, codec=codec)
    return path


@contextlib.contextmanager
def _one_thread():
    """Offline references run on one thread: on a loaded 2-core machine torch's second
    thread waits on preempted peers (10x slower here); the results are the same."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stream_probs(model, frames: np.ndarray) -> torch.Tensor:
    """Per-frame class probabilities ``[T, C]`` of the model run offline, frame by frame,
    on frames ``[T, H, W, 3]`` preprocessed as the server does."""
    clip = preprocess_frames(frames, SIZE).float() / 255.0
    state = model.init_state(1, SIZE, SIZE)
    out = []
    with torch.inference_mode(), _one_thread():
        for t in range(clip.shape[1]):
            logits, state = model(clip[None, :, t:t + 1], state)
            out.append(torch.softmax(logits[0], -1))
    return torch.stack(out)


def video_probs(model, path: Path) -> tuple[torch.Tensor, int]:
    """Whole-video probabilities of a file decoded at the model's fps and size."""
    clip = read_video(path, fps=FPS, size=SIZE)
    with torch.inference_mode(), _one_thread():
        logits, _ = model(clip[None].float() / 255.0)
    return torch.softmax(logits[0], -1), clip.shape[1]


def scores(top_k: list[dict]) -> torch.Tensor:
    """A full top-k answer (k = all classes) as a probability vector in class order."""
    out = torch.full((len(CLASSES),), float("nan"))
    for item in top_k:
        assert CLASSES[item["index"]] == item["label"]
        out[item["index"]] = item["score"]
    return out


def encode(frame: np.ndarray, fmt: str) -> bytes:
    if fmt == "rgb":
        return frame.tobytes()
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format={"png": "PNG", "jpeg": "JPEG"}[fmt])
    return buf.getvalue()


class Session:
    """An async WebSocket client speaking the session protocol."""

    def __init__(self, url: str):
        self.url = url
        self.ws = None

    async def __aenter__(self) -> "Session":
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, max_size=None)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def start(self, **fields) -> dict:
        await self.ws.send(json.dumps({"type": "start", **fields}))
        return await self.recv()

    async def send_frame(self, data: bytes) -> dict:
        await self.ws.send(data)
        return await self.recv()

    async def recv(self) -> dict:
        return json.loads(await asyncio.wait_for(self.ws.recv(), 60))

    async def closed(self) -> tuple[int, str]:
        """Wait for the server to close; returns (code, reason)."""
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), 60)
        except ConnectionClosed as e:
            return e.rcvd.code, e.rcvd.reason
