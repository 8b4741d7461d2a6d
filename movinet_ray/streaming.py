"""The batched multi-stream engine used by bulk labelling and by serving.

Many independent videos (files being labelled, live sessions) run through one stream model
together. Each stream owns a *slot*: a row of the batched state. Frames are fed per stream as
chunks; :meth:`StreamEngine.step` runs one model call over every stream that has frames, with a
step length chosen so no stream crosses the end of a chunk, and reports each stream's logits
after that step (the prediction over all its frames so far). When a stream ends its slot is
reset and can be refilled at once, so short and long videos mix without idle rows.

Exactness: a stream's logits equal the whole-clip logits of its frames, whatever else shares
the batch and however its frames were chunked (the model's batched state carries per-stream
frame counts).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Hashable, Protocol

import torch
from torch import Tensor


class StreamModel(Protocol):
    """What the engine needs: MoViNet's stream interface (eager, exported or quantized)."""

    def init_state(self, batch_size: int, height: int, width: int, device=None
                   ) -> dict[str, Tensor]: ...

    def __call__(self, video: Tensor, state: dict[str, Tensor]
                 ) -> tuple[Tensor, dict[str, Tensor]]: ...


class EngineFull(RuntimeError):
    """Every slot is taken."""


@dataclass
class StreamResult:
    """One stream's output after a step.

    ``logits`` cover all ``frames_seen`` frames of the stream (None if it ended with no frames);
    ``chunk`` is the tag of a chunk this step completed (or None mid-chunk); ``finished`` means
    the stream was closed and all its frames are processed - its slot is free again.
    """

    key: Hashable
    logits: Tensor | None
    frames_seen: int
    chunk: Any = None
    finished: bool = False


@dataclass
class _Stream:
    key: Hashable
    row: int
    pending: collections.deque = field(default_factory=collections.deque)  # [frames, tag, offset]
    frames_seen: int = 0
    closed: bool = False
    last_logits: Tensor | None = None

    def head_remaining(self) -> int:
        frames, _, offset = self.pending[0]
        return frames.shape[1] - offset


class StreamEngine:
    """Slots of per-stream state over one batched stream model.

    Args:
        model: a stream model (``model(video, state) -> (logits, state)``, ``init_state``).
        capacity: number of slots (streams in flight).
        height, width: frame size every stream must use.
        device: where the model runs; frames and state move there.
        max_step_frames: cap on frames per stream per model call (bounds activation memory).
    """

    def __init__(self, model: StreamModel, capacity: int, height: int, width: int,
                 device: torch.device | str | None = None, max_step_frames: int | None = None):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.model = model
        self.capacity, self.height, self.width = capacity, height, width
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.dtype = _model_dtype(model)
        self.max_step_frames = max_step_frames
        self.state = model.init_state(capacity, height, width, device=self.device)
        self._streams: dict[Hashable, _Stream] = {}
        self._free = list(range(capacity - 1, -1, -1))
        self._finished: list[StreamResult] = []

    # ------------------------------------------------------------------ stream lifecycle

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def active(self) -> int:
        return len(self._streams)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._streams

    def open(self, key: Hashable) -> None:
        """Start a new stream in a free slot, from the zero state."""
        if key in self._streams:
            raise KeyError(f"stream {key!r} is already open")
        if not self._free:
            raise EngineFull(f"all {self.capacity} stream slots are in use")
        row = self._free.pop()
        with torch.inference_mode():  # the state is an inference tensor after the first step
            for value in self.state.values():
                value[row].zero_()
        self._streams[key] = _Stream(key, row)

    def feed(self, key: Hashable, frames: Tensor, tag: Any = None) -> None:
        """Queue frames ``[3, T, H, W]`` (uint8 0-255 or float 0-1) for stream ``key``.

        ``tag`` is returned in the result of the step that consumes the chunk's last frame.
        """
        stream = self._get(key)
        if stream.closed:
            raise ValueError(f"stream {key!r} is closed")
        if frames.dim() != 4 or frames.shape[0] != 3:
            raise ValueError(f"frames must be [3, T, H, W], got {tuple(frames.shape)}")
        if tuple(frames.shape[2:]) != (self.height, self.width):
            raise ValueError(f"frames are {frames.shape[2]}x{frames.shape[3]}, this engine runs "
                             f"{self.height}x{self.width}")
        if frames.shape[1] == 0:
            return
        stream.pending.append([frames, tag, 0])

    def close(self, key: Hashable) -> None:
        """No more frames for ``key``: it finishes when its queued frames are processed."""
        stream = self._get(key)
        stream.closed = True
        if not stream.pending:
            self._finish(stream)

    def discard(self, key: Hashable) -> None:
        """Drop a stream now (e.g. a client went away); its queued frames are not run."""
        stream = self._streams.pop(key, None)
        if stream is not None:
            self._free.append(stream.row)

    def pending_frames(self, key: Hashable) -> int:
        stream = self._get(key)
        return sum(f.shape[1] - off for f, _, off in stream.pending)

    @property
    def has_pending(self) -> bool:
        return bool(self._finished) or any(s.pending for s in self._streams.values())

    # ------------------------------------------------------------------ stepping

    @torch.inference_mode()
    def step(self) -> list[StreamResult]:
        """Run one batched model call over every stream with queued frames."""
        results, self._finished = self._finished, []
        active = [s for s in self._streams.values() if s.pending]
        if not active:
            return results
        t = min(s.head_remaining() for s in active)
        if self.max_step_frames:
            t = min(t, self.max_step_frames)
        clips = torch.stack([self._take(s, t) for s in active]).to(self.device)
        rows = [s.row for s in active]
        full = len(active) == self.capacity and rows == list(range(self.capacity))
        if full:
            logits, self.state = self.model(clips, self.state)
        else:
            index = torch.tensor(rows, device=self.device)
            state = {k: v.index_select(0, index) for k, v in self.state.items()}
            logits, state = self.model(clips, state)
            for k, v in state.items():
                self.state[k].index_copy_(0, index, v)
        logits = logits.float().cpu()
        for i, stream in enumerate(active):
            stream.frames_seen += t
            stream.last_logits = logits[i]
            tag = None
            if stream.pending[0][2] == stream.pending[0][0].shape[1]:
                tag = stream.pending.popleft()[1]
            done = stream.closed and not stream.pending
            results.append(StreamResult(stream.key, logits[i], stream.frames_seen, tag, done))
            if done:
                self._release(stream)
        return results

    def run_until_idle(self) -> list[StreamResult]:
        """Step until no stream has queued frames."""
        results = []
        while self.has_pending:
            results.extend(self.step())
        return results

    # ------------------------------------------------------------------ internals

    def _take(self, stream: _Stream, t: int) -> Tensor:
        entry = stream.pending[0]
        frames, _, offset = entry
        entry[2] = offset + t
        clip = frames[:, offset:offset + t]
        if clip.dtype == torch.uint8:
            return clip.to(self.dtype) / 255.0
        return clip.to(self.dtype)

    def _get(self, key: Hashable) -> _Stream:
        try:
            return self._streams[key]
        except KeyError:
            raise KeyError(f"no open stream {key!r}") from None

    def _finish(self, stream: _Stream) -> None:
        self._finished.append(StreamResult(stream.key, stream.last_logits, stream.frames_seen,
                                           None, True))
        self._release(stream)

    def _release(self, stream: _Stream) -> None:
        self._streams.pop(stream.key, None)
        self._free.append(stream.row)


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _model_dtype(model) -> torch.dtype:
    try:
        for p in model.parameters():
            if p.is_floating_point():
                return p.dtype
    except AttributeError:
        pass
    return torch.float32
