"""What a replica computes, apart from HTTP: whole-video classification and live sessions.

One inference thread owns the model and the :class:`~movinet_ray.streaming.StreamEngine`:
every model call and every engine change (open a session's slot, step, free it) runs there,
in submission order. The event loop keeps serving sockets while the model runs, and the
engine's slots are never touched by two threads at once.

Live sessions are engine streams: a session holds one slot (a row of the batched state) from
connect to close; a step feeds the frames that several sessions sent and runs them as one
batched model call (:meth:`Predictor.step`, which the deployment wraps in ``@serve.batch``).
Uploads run chunk by chunk through the same thread with a state of their own.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor

from ..data import VideoDecodeError, iter_video_chunks, preprocess_frames, probe_video
from ..streaming import StreamEngine
from .config import ServeConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ModelCard:
    """Which weights a replica serves: ``name``/``version`` are the registry's for
    ``models:/`` URIs, else the file stem and the first 12 hex of the file's SHA-256."""

    name: str
    version: str
    uri: str


@dataclass(frozen=True)
class Classification:
    """A whole video's answer: ``logits`` over all ``frames`` (decoded at the model's fps)."""

    logits: Tensor
    frames: int
    duration_s: float


def model_card(source: str, tracking_uri: str | None = None) -> ModelCard:
    """Name and version of ``source`` (a checkpoint path or an MLflow model URI)."""
    if source.startswith("models:/"):
        from ..tracking import setup_mlflow

        ref = source[len("models:/"):].strip("/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            client = setup_mlflow(tracking_uri).MlflowClient()
            return ModelCard(name, str(client.get_model_version_by_alias(name, alias).version),
                             source)
        name, _, version = ref.partition("/")
        return ModelCard(name, version, source)
    if source.startswith("runs:/"):
        run_id = source[len("runs:/"):].split("/", 1)[0]
        return ModelCard(source, run_id, source)
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return ModelCard(Path(source).stem, digest.hexdigest()[:12], source)


class Predictor:
    """A stream MoViNet behind one inference thread, with sessions in engine slots.

    Args:
        model: a stream (causal) MoViNet in eval mode.
        info: its :class:`~movinet_ray.model.ModelInfo` (classes, resolution, fps).
        card: name/version to report.
        cfg: the serving config (slots, chunk size).
    """

    def __init__(self, model, info, card: ModelCard, cfg: ServeConfig):
        if not info.stateful:
            raise ValueError(f"{card.uri}: serving streams frames, which needs a stream "
                             "(causal) model; this is a base model")
        self.model, self.info, self.card, self.cfg = model, info, card, cfg
        self.size = info.resolution
        self.engine = StreamEngine(model, cfg.max_sessions, self.size, self.size)
        self.device = self.engine.device  # the model's (CPU for ONNX Runtime variants)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="movinet-infer")
        self._calls: collections.Counter[int] = collections.Counter()  # streams/call -> calls
        self._counts = collections.Counter()

    @classmethod
    def load(cls, cfg: ServeConfig) -> Predictor:
        """Load ``cfg.model`` (path or MLflow URI) onto the configured device."""
        from ..tracking import resolve_model

        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, info = resolve_model(cfg.model, device=device, tracking_uri=cfg.tracking_uri)
        if cfg.fuse_bn and hasattr(model, "fuse_bn_"):
            model.fuse_bn_()
        card = model_card(cfg.model, cfg.tracking_uri)
        log.info("loaded %s version %s (%s, %d classes, %dpx at %s fps) on %s, %d threads",
                 card.name, card.version, info.config.get("variant"), info.num_classes,
                 info.resolution, info.fps, device, torch.get_num_threads())
        return cls(model, info, card, cfg)

    def describe(self) -> dict[str, Any]:
        """What clients need to send frames: classes, input size, frame rate."""
        return {
            "name": self.card.name, "version": self.card.version, "uri": self.card.uri,
            "architecture": self.info.architecture, "variant": self.info.config.get("variant"),
            "num_classes": self.info.num_classes, "classes": list(self.info.class_names),
            "input_size": [self.size, self.size], "fps": self.info.fps,
            "device": str(self.device), "max_sessions": self.cfg.max_sessions,
        }

    # ------------------------------------------------------------------ answers

    def top_k(self, logits: Tensor, k: int) -> list[dict[str, Any]]:
        """The ``k`` best classes as ``{"label", "index", "score"}``, score = softmax."""
        probs = torch.softmax(logits.float(), dim=-1)
        scores, index = probs.topk(min(k, probs.numel()))
        return [{"label": self.info.class_names[i], "index": i, "score": s}
                for s, i in zip(scores.tolist(), index.tolist())]

    def prepare(self, rgb: np.ndarray) -> Tensor:
        """One RGB frame ``[H, W, 3]`` uint8 -> the model's input ``[3, 1, S, S]`` uint8,
        resized and cropped exactly as the file decoders do."""
        return preprocess_frames(rgb[None], self.size)

    # ------------------------------------------------------------------ live sessions

    async def open_session(self, key: Hashable) -> None:
        """Take a slot for a new session (zero state). Raises EngineFull when none is free."""
        try:
            await self._run(self.engine.open, key)
        except Exception:
            self._counts["sessions_refused"] += 1
            raise
        self._counts["sessions_opened"] += 1

    async def close_session(self, key: Hashable) -> None:
        """Free the session's slot (its state is dropped)."""
        await self._run(self.engine.discard, key)

    async def step(self, items: Sequence[tuple[Hashable, list[Tensor]]]
                   ) -> list[list[Tensor] | None]:
        """Feed each session's chunks (``[3, T, S, S]`` uint8 each) and run them batched.

        Returns per item the session's logits at the end of each of its chunks, or None for
        a session that was closed meanwhile.
        """
        return await self._run(self._step, items)

    def _step(self, items: Sequence[tuple[Hashable, list[Tensor]]]
              ) -> list[list[Tensor] | None]:
        out: list[list[Tensor] | None] = [None] * len(items)
        for n, (key, chunks) in enumerate(items):
            if key not in self.engine:
                continue
            out[n] = [None] * len(chunks)
            for j, chunk in enumerate(chunks):
                self.engine.feed(key, chunk, tag=(n, j))
                self._counts["frames_streamed"] += chunk.shape[1]
        while self.engine.has_pending:
            results = self.engine.step()
            self._calls[len(results)] += 1
            for result in results:
                if result.chunk is not None:
                    n, j = result.chunk
                    out[n][j] = result.logits
        return out

    # ------------------------------------------------------------------ whole videos

    async def classify_file(self, path: str | Path) -> Classification:
        """Stream a video file through the model chunk by chunk at the model's fps/size.

        Decoding the next chunk (a worker thread) overlaps the model call on this one, and
        only one or two chunks are in memory at a time.

        Raises:
            VideoDecodeError: not a readable video, or no frames at the model's rate.
        """
        info = await asyncio.to_thread(probe_video, path)
        chunks = iter_video_chunks(path, self.cfg.classify_chunk_frames, fps=self.info.fps,
                                   size=self.size)
        state = self.model.init_state(1, self.size, self.size, device=self.device)
        logits, frames = None, 0
        pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        try:
            while (chunk := await pending) is not None:
                pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
                logits, state = await self._run(self._forward, chunk.frames, state)
                frames += chunk.frames.shape[1]
        finally:
            if not pending.done():
                await asyncio.wait([pending])
            await asyncio.to_thread(chunks.close)
        if logits is None:
            raise VideoDecodeError(path, f"no frames at the model's {self.info.fps} fps")
        self._counts["videos_classified"] += 1
        self._counts["frames_classified"] += frames
        return Classification(logits[0].float().cpu(), frames, info.duration_s)

    @torch.inference_mode()
    def _forward(self, frames: Tensor, state: dict[str, Tensor]):
        clip = frames[None].to(self.device, self.engine.dtype) / 255.0
        return self.model(clip, state)

    # ------------------------------------------------------------------ bookkeeping

    def stats(self) -> dict[str, Any]:
        """Counters since start; ``batch_sizes`` maps streams per model call -> calls."""
        return {**{k: self._counts[k] for k in (
                    "sessions_opened", "sessions_refused", "frames_streamed",
                    "videos_classified", "frames_classified")},
                "sessions_active": self.engine.active, "slots": self.engine.capacity,
                "batch_sizes": {str(k): v for k, v in sorted(self._calls.items())}}

    async def _run(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
