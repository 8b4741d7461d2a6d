"""Clip sampling: which frames of a (resampled) video stream make a clip, looping, discards.

Positions are indices of the stream that :class:`~movinet_ray.data.video.StreamPlan` builds
(the video resampled to ``fps``, or native). A clip is ``frames`` positions ``frame_stride``
apart; a video shorter than the clip span is looped (positions wrap around modulo its length,
like the official TF sampler) when at least ``discard_threshold`` of the clip is real frames,
and discarded otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ClipSampling:
    """How clips are cut from videos (the temporal hyperparameters).

    Attributes:
        frames: frames per clip.
        frame_stride: take every k-th frame of the resampled stream (of the source when
            ``fps`` is None); the clip spans ``(frames - 1) * frame_stride + 1`` stream frames.
        fps: resample every video to this rate first; None keeps each video's native rate.
        discard_threshold: in [0, 1], the least fraction of a clip that must be distinct real
            frames (``ceil(length / frame_stride) / frames``); shorter videos are looped up to
            the clip length when they meet it and discarded (counted) when not. 0 keeps
            every video that has at least one frame.
        clips_per_video: evaluation only: 1 = the centred clip, n > 1 = n clips with start
            positions spread uniformly over the video. Training takes one random clip.
        random_stride_range: training only: draw the stride uniformly from
            ``[max(1, frame_stride - r), frame_stride + r]`` per clip (0 = fixed stride).
    """

    frames: int = 16
    frame_stride: int = 1
    fps: float | None = None
    discard_threshold: float = 0.5
    clips_per_video: int = 1
    random_stride_range: int = 0

    def __post_init__(self):
        if self.frames < 1 or self.frame_stride < 1 or self.clips_per_video < 1:
            raise ValueError(f"frames, frame_stride and clips_per_video must be >= 1: {self}")
        if not 0.0 <= self.discard_threshold <= 1.0:
            raise ValueError(f"discard_threshold must be in [0, 1], got {self.discard_threshold}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.random_stride_range < 0:
            raise ValueError("random_stride_range must be >= 0")

    @property
    def span(self) -> int:
        """Stream frames covered by one clip at the nominal stride."""
        return (self.frames - 1) * self.frame_stride + 1

    def real_fraction(self, length: int) -> float:
        """Fraction of a clip that is distinct real frames for a stream of ``length``."""
        if length <= 0:
            return 0.0
        return min(1.0, math.ceil(length / self.frame_stride) / self.frames)

    def keeps(self, length: int) -> bool:
        """Whether a stream of ``length`` frames is kept (>= 1 frame and the threshold met)."""
        return length > 0 and self.real_fraction(length) >= self.discard_threshold - 1e-9


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "little")


def rng_for(seed: int, video_id: str, epoch: int | None,
            purpose: str) -> np.random.Generator:
    """The generator for one (seed, video, epoch) and purpose ("clip", "augment", ...).

    ``epoch=None`` draws fresh OS entropy instead: new draws on every call, not reproducible.
    """
    if epoch is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed) & (2**63 - 1), int(epoch), stable_hash(video_id),
                                  stable_hash(purpose)])


def clip_positions(length: int, sampling: ClipSampling, train: bool,
                   rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Stream positions of the clips of one video (wrapped modulo ``length``).

    Training: one clip at a uniformly random start in ``[0, length - span]`` (0 when the
    video is shorter), with an optional random stride. Evaluation: the centred clip, or
    ``clips_per_video`` clips with starts spread uniformly (``linspace``, rounded).

    Returns:
        a list of int64 arrays of ``sampling.frames`` positions each.
    """
    if length <= 0:
        raise ValueError("empty stream")
    if train:
        if rng is None:
            raise ValueError("training sampling needs an rng")
        stride = sampling.frame_stride
        if sampling.random_stride_range:
            lo = max(1, stride - sampling.random_stride_range)
            stride = int(rng.integers(lo, stride + sampling.random_stride_range + 1))
        span = (sampling.frames - 1) * stride + 1
        start = int(rng.integers(0, max(0, length - span) + 1))
        starts, stride_used = [start], stride
    else:
        stride_used = sampling.frame_stride
        room = max(0, length - sampling.span)
        if sampling.clips_per_video == 1:
            starts = [room // 2]
        else:
            starts = [int(round(s)) for s in np.linspace(0, room, sampling.clips_per_video)]
    steps = np.arange(sampling.frames, dtype=np.int64) * stride_used
    return [(start + steps) % length for start in starts]


@dataclass
class DiscardReport:
    """What a screening pass kept and dropped, for the training job to log.

    Attributes:
        total: videos screened.
        kept: videos kept.
        too_short: ``{"video_id", "path", "length", "real_fraction"}`` per video under the
            threshold (``length`` in frames of the resampled stream).
        undecodable: ``{"video_id", "path", "reason"}`` per video that failed to probe.
        threshold: the discard threshold used.
    """

    total: int = 0
    kept: int = 0
    too_short: list[dict] = field(default_factory=list)
    undecodable: list[dict] = field(default_factory=list)
    threshold: float = 0.0

    @property
    def discarded(self) -> int:
        return len(self.too_short) + len(self.undecodable)

    def counts(self) -> dict[str, int]:
        """Flat counts, e.g. for ``mlflow.log_metrics``."""
        return {"videos_total": self.total, "videos_kept": self.kept,
                "videos_too_short": len(self.too_short),
                "videos_undecodable": len(self.undecodable)}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self, max_items: int = 5) -> str:
        """One paragraph for a log: counts plus the first few discarded videos."""
        lines = [f"screened {self.total} videos: kept {self.kept}, discarded {self.discarded} "
                 f"({len(self.too_short)} shorter than threshold {self.threshold:g}, "
                 f"{len(self.undecodable)} undecodable)"]
        for item in self.too_short[:max_items]:
            lines.append(f"  too short: {item['video_id']} ({item['length']} frames, "
                         f"{item['real_fraction']:.2f} of a clip)")
        for item in self.undecodable[:max_items]:
            lines.append(f"  undecodable: {item['video_id']}: {item['reason']}")
        return "\n".join(lines)
