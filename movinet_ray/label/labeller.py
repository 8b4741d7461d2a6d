"""Label videos with a stream model: chunked decoding, lockstep streams, anytime predictions.

:class:`StreamLabeller` is the Ray-free core of the labelling job. Each video is decoded in
chunks of ``chunk_frames`` frames at the model's rate and size and fed to a
:class:`~movinet_ray.streaming.StreamEngine` slot; the stream state carries everything the
model saw, so a video costs the memory of a chunk whatever its length. Up to ``capacity``
videos run in lockstep (one batched model call per step), and a slot is refilled as soon as
its video ends. Decoding runs in a background thread, one chunk ahead of the model.

Every video's logits after its last frame equal the whole-clip logits (the engine's
guarantee), and each completed chunk reports the prediction over the prefix up to its end:
the anytime prediction of the timeline.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import VideoChunk, VideoDecodeError, iter_video_chunks, probe_video
from ..streaming import StreamEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeSpec:
    """How frames reach the model: ``chunk_frames`` at ``fps`` (None: native rate), centre
    crop ``size``."""

    chunk_frames: int
    fps: float | None
    size: int
    backend: str = "auto"


@dataclass(frozen=True)
class ChunkPrediction:
    """The prediction over a video's prefix ``[0, end_frame)``, made when the chunk
    ``[start_frame, end_frame)`` completed: ``summarize(logits)`` (see StreamLabeller).

    Frame indices count the resampled stream; ``start_s``/``end_s`` are their times in the
    stream (``index / fps``).
    """

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    prediction: Any


@dataclass
class VideoPrediction:
    """One video's outcome: ``logits`` over all ``frames`` (None on error) and its chunks."""

    video_id: str
    path: str
    status: str = "ok"
    error: str | None = None
    frames: int = 0
    fps: float | None = None
    duration_s: float | None = None
    logits: torch.Tensor | None = None
    chunks: list[ChunkPrediction] = field(default_factory=list)


_END = object()  # a decoder's "no more chunks"
@dataclass
class _Open:
    """A video in a slot: its decoder, the chunk being decoded, what it produced so far."""

    result: VideoPrediction
    chunks: Iterator[VideoChunk] | None = None
    next_chunk: Future | None = None
    closed: bool = False


class StreamLabeller:
    """Runs videos through a stream model in lockstep, refilling slots as videos end.

    Args:
        model: a stream (causal) model, e.g. a MoViNet in stream mode.
        decode: chunking, frame rate and crop size (the model's).
        capacity: videos in lockstep.
        device: where the model runs.
        summarize: turns each chunk's logits ``[C]`` into what the timeline keeps, as the
            chunk completes (default: a copy of the logits). Keep it small and out of torch
            for long videos: thousands of retained small tensors, allocated between the
            model's activations, pin glibc heap pages - resident memory grew ~200 MB over
            600 steps in a test - where top-k Python values cost nothing.
    """

    def __init__(self, model, decode: DecodeSpec, capacity: int,
                 device: torch.device | str | None = None,
                 summarize: Callable[[torch.Tensor], Any] = torch.clone):
        if not getattr(model, "stateful", False):
            raise ValueError(
                "this is a base (non-causal) MoViNet: each of its outputs depends on future "
                "frames, so it cannot label chunk by chunk with a carried state. Use a stream "
                "checkpoint (e.g. `movinet convert --mode stream`, or a model trained in "
                "stream mode).")
        self.decode = decode
        self.summarize = summarize
        self.engine = StreamEngine(model, capacity, decode.size, decode.size, device=device,
                                   max_step_frames=decode.chunk_frames)
        # Where the time goes: waiting for the decode thread vs. model steps.
        self.decode_wait_seconds = 0.0
        self.model_seconds = 0.0

    def run(self, videos: Iterable[tuple[str, str]]) -> Iterator[VideoPrediction]:
        """Label ``(video_id, path)`` pairs; yields each video's prediction as it finishes
        (not in input order). Bad files yield ``status="error"`` with the reason.

        The next video's first chunk is decoded ahead, so a freed slot starts at once.
        """
        queue = deque(videos)
        slots: dict[str, _Open] = {}
        ahead: deque[_Open] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            try:
                while queue or ahead or slots:
                    while (queue or ahead) and self.engine.free_slots:
                        item = ahead.popleft() if ahead else self._start(*queue.popleft(), pool)
                        self.engine.open(item.result.video_id)
                        slots[item.result.video_id] = item
                    yield from self._feed(slots, pool)
                    if queue and not ahead:
                        ahead.append(self._start(*queue.popleft(), pool))
                    yield from self._step(slots)
            finally:
                for item in [*slots.values(), *ahead]:  # an exception: stop every decoder
                    item.next_chunk.cancel()
                    self.engine.discard(item.result.video_id)

    def _start(self, video_id: str, path: str, pool: ThreadPoolExecutor) -> _Open:
        item = _Open(VideoPrediction(video_id, path))
        item.next_chunk = pool.submit(self._first_chunk, item)
        return item

    # ------------------------------------------------------------------ internals

    def _feed(self, slots: dict[str, _Open], pool: ThreadPoolExecutor
              ) -> Iterator[VideoPrediction]:
        """Give every open stream that ran dry its next decoded chunk (or close it)."""
        for vid, item in list(slots.items()):
            if item.closed or self.engine.pending_frames(vid):
                continue
            start = time.perf_counter()
            try:
                chunk = item.next_chunk.result()
            except Exception as e:  # the file is bad: an error row, the others go on
                reason = e.reason if isinstance(e, VideoDecodeError) else f"{type(e).__name__}: {e}"
                log.warning("video %s failed: %s", vid, reason)
                self.engine.discard(vid)
                del slots[vid]
                item.result.status, item.result.error = "error", reason
                item.result.chunks = []
                yield item.result
                continue
            finally:
                self.decode_wait_seconds += time.perf_counter() - start
            if chunk is _END:
                item.closed = True
                self.engine.close(vid)
                continue
            self.engine.feed(vid, chunk.frames, tag=self._chunk_tag(item, chunk))
            if chunk.frames.shape[1] < self.decode.chunk_frames:  # a short chunk is the last
                item.closed = True
                self.engine.close(vid)
            else:
                item.next_chunk = pool.submit(_next_chunk, item.chunks)

    def _step(self, slots: dict[str, _Open]) -> Iterator[VideoPrediction]:
        start = time.perf_counter()
        results = self.engine.step()
        self.model_seconds += time.perf_counter() - start
        for res in results:
            item = slots[res.key]
            if res.chunk is not None:
                index, lo, hi, fps = res.chunk
                item.result.chunks.append(ChunkPrediction(index, lo, hi, lo / fps, hi / fps,
                                                          self.summarize(res.logits)))
            if res.finished:
                del slots[res.key]
                item.result.frames, item.result.logits = res.frames_seen, res.logits
                if res.frames_seen == 0:
                    item.result.status, item.result.error = "error", "no frames decoded"
                yield item.result

    def _first_chunk(self, item: _Open):
        """Probe (duration, rate) and open the decoder; runs on the decode thread."""
        info = probe_video(item.result.path)
        item.result.duration_s = info.duration_s
        item.result.fps = self.decode.fps or info.fps
        d = self.decode
        item.chunks = iter_video_chunks(item.result.path, d.chunk_frames, d.fps, d.size,
                                        backend=d.backend)
        return _next_chunk(item.chunks)

    def _chunk_tag(self, item: _Open, chunk: VideoChunk) -> tuple[int, int, int, float]:
        lo = chunk.start_index
        return lo // self.decode.chunk_frames, lo, lo + chunk.frames.shape[1], item.result.fps


def _next_chunk(chunks: Iterator[VideoChunk]):
    return next(chunks, _END)
