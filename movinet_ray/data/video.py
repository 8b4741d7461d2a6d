"""Video decoding: safe probe, chunked streaming at a target frame rate, resize + centre crop.

decord is the decoder; PyAV probes every file first (it raises clean exceptions where decord
may crash) and decodes the files decord refuses (e.g. AV1). Frames come out as uint8
``[3, T, H, W]`` tensors; :func:`to_float` is the last step before a model.

Frame-rate resampling picks source frames at the target timestamps: output frame ``k`` of a
stream at ``fps`` shows the source frame on screen at ``t = start_s + k / fps``, i.e. source
index ``floor(t * native_fps)``. With ``fps=None`` every source frame is kept.

Spatial preprocessing is one function, :func:`preprocess_frames`, used by the file decoders
and by serving (browser frames) alike: resize so the shorter side is ``short_side``
(bilinear, antialiased, torch's uint8 kernel; the longer side is ``round(long * short_side /
short)``), then crop ``size x size`` at the centre (offset ``(extent - size) // 2``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import storage

log = logging.getLogger(__name__)

# Threads per decoder. Parallelism comes from Ray workers (one video each), so the default
# keeps one decoder on one core; set MOVINET_DECODE_THREADS=0 to let FFmpeg pick.
DECODE_THREADS = int(os.environ.get("MOVINET_DECODE_THREADS", "1"))
# Frames decoded at full resolution at a time: bounds memory for large source frames.
DECODE_BATCH = 16
_EPS = 1e-6
BACKENDS = ("auto", "decord", "pyav")


class VideoDecodeError(Exception):
    """A video could not be read: missing, empty, not a video, no frames, corrupt, truncated.

    Attributes:
        path: the path or URI that failed.
        reason: what went wrong, in words.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path!r}: {reason}")

    def __reduce__(self):  # pickles across Ray workers with both fields
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class VideoInfo:
    """Container metadata of one video.

    ``num_frames`` is exact where the container stores a frame count (MP4/MOV) and estimated
    from the duration otherwise (e.g. WebM/MKV); ``duration_s = num_frames / fps`` when the
    container has no duration.
    """

    path: str
    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str


@dataclass
class VideoChunk:
    """Consecutive frames of a (resampled) video stream.

    Attributes:
        frames: uint8 ``[3, T, H, W]`` (RGB).
        start_index: index of the first frame in the resampled stream (0, N, 2N, ...).
        timestamps_s: per frame, the presentation time in the file of the source frame shown
            (``source_index / native_fps``), as a float64 array of length T.
        source_indices: per frame, the index of the decoded source frame (int64 array).
    """

    frames: torch.Tensor
    start_index: int
    timestamps_s: np.ndarray
    source_indices: np.ndarray


# --------------------------------------------------------------------------- preprocessing


def preprocess_frames(frames: np.ndarray | torch.Tensor, size: int | None,
                      short_side: int | None = None, crop: bool = True) -> torch.Tensor:
    """Resize + centre-crop RGB frames exactly as the file decoders do.

    Args:
        frames: uint8 ``[T, H, W, 3]`` (numpy or torch), e.g. frames from a browser.
        size: output side of the square centre crop; None keeps the resized frame whole.
        short_side: resize the shorter side to this first (default ``size``); None with
            ``size`` None keeps the native resolution.
        crop: False keeps the aspect ratio (no crop): only the shorter side is resized to
            ``short_side`` (or ``size``).

    Returns:
        uint8 ``[3, T, H', W']``.

    Raises:
        ValueError: bad shape/dtype, or a crop larger than the resized frame.
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2)  # [T, 3, H, W], channels-last in memory: torch's fast uint8 path
    target = short_side if short_side is not None else size
    if target is not None:
        x = _resize(x, _short_side_hw(*x.shape[-2:], target))
    if crop and size is not None:
        h, w = x.shape[-2:]
        if size > h or size > w:
            raise ValueError(f"crop {size} larger than the resized frame {h}x{w} "
                             f"(short_side={short_side})")
        top, left = (h - size) // 2, (w - size) // 2
        x = x[:, :, top:top + size, left:left + size]
    return x.permute(1, 0, 2, 3).contiguous()


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``[3, T, H, W]`` -> ``[3, T, height, width]`` with the decoders' filter
    (bilinear, antialiased); the aspect ratio is not kept."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[0] != 3:
        raise ValueError(f"expected uint8 [3, T, H, W] frames, got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    return _resize(frames.permute(1, 0, 2, 3), (height, width)).permute(1, 0, 2, 3).contiguous()


def _resize(x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """[T, 3, H, W] uint8 -> [T, 3, h, w] (no copy when the size already matches)."""
    if tuple(x.shape[-2:]) == tuple(out_hw):
        return x
    return F.interpolate(x.contiguous(memory_format=torch.channels_last), size=out_hw,
                         mode="bilinear", antialias=True, align_corners=False)


def _short_side_hw(h: int, w: int, short_side: int) -> tuple[int, int]:
    if h <= w:
        return short_side, max(1, round(w * short_side / h))
    return max(1, round(h * short_side / w)), short_side


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float32 in [0, 1] (the models' input range; no mean/std)."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    return frames.to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------- probing


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Container metadata without decoding the video (PyAV, safe on bad files).

    Object-storage files are probed through a pyarrow random-access file, so only the
    container header is read, not the whole video.

    Raises:
        VideoDecodeError: missing, empty, not a media file, no video stream, zero frames.
    """
    text = str(path)
    _check_file(text)
    if not storage.is_remote(text):
        return _probe_local(storage.to_local_path(text), text)
    fs, inner = storage.filesystem_for(text)
    try:
        with fs.open_input_file(inner) as f:
            return _probe_local(f, text)
    except OSError as e:
        raise VideoDecodeError(text, f"cannot read file: {e}") from e


def _check_file(text: str) -> None:
    """The cheap checks before any decoder sees the file: it exists and is not empty."""
    try:
        size = storage.file_size(text)
    except (OSError, ValueError) as e:
        raise VideoDecodeError(text, f"cannot stat file: {e}") from e
    if size is None:
        raise VideoDecodeError(text, "file not found")
    if size == 0:
        raise VideoDecodeError(text, "empty file (0 bytes)")


@contextlib.contextmanager
def _localized(path: str | os.PathLike) -> Iterator[str]:
    """A local copy of ``path`` after the cheap checks (exists, non-empty)."""
    text = str(path)
    _check_file(text)
    with contextlib.ExitStack() as stack:
        try:
            local = stack.enter_context(storage.local_copy(text))
        except OSError as e:  # e.g. a failed download
            raise VideoDecodeError(text, f"cannot read file: {e}") from e
        yield local


def _probe_local(local, display: str) -> VideoInfo:
    """Probe a local path or a seekable binary file object."""
    import av

    try:
        container = av.open(local, metadata_errors="ignore")
    except Exception as e:  # av.FFmpegError and friends: not a container FFmpeg knows
        raise VideoDecodeError(display, f"not a readable media file ({e})") from e
    with container:
        streams = list(container.streams)
        video = [s for s in streams if s.type == "video"]
        if not video:
            kinds = ", ".join(s.type for s in streams) or "none"
            raise VideoDecodeError(display, f"no video stream (streams: {kinds})")
        stream = video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if width <= 0 or height <= 0 or fps <= 0:
            raise VideoDecodeError(display, f"video stream without size or rate "
                                            f"({width}x{height} @ {fps} fps)")
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1e6
        frames = int(stream.frames or 0)
        if frames <= 0 and duration:
            frames = int(round(duration * fps))
        if frames <= 0:  # no count and no duration: count the packets (no decoding)
            frames = _count_packets(container, stream)
        if frames <= 0:
            raise VideoDecodeError(display, "video stream has zero frames")
        codec = ctx.name or ""
    return VideoInfo(display, frames, fps, duration if duration else frames / fps,
                     width, height, codec)


def _count_packets(container, stream) -> int:
    """Video packets with data (one per frame for the usual codecs); reads, never decodes."""
    try:
        return sum(1 for packet in container.demux(stream) if packet.size)
    except Exception:
        return 0


# --------------------------------------------------------------------------- decoders


class _DecordSource:
    """Random access through decord (fast): frames by index, in batches."""

    backend = "decord"

    def __init__(self, local: str, display: str, threads: int):
        import decord

        self.display = display
        self._reader = decord.VideoReader(local, ctx=decord.cpu(0), num_threads=threads)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        if self.num_frames <= 0 or self.fps <= 0:
            raise VideoDecodeError(display, "decord found no frames")

    def get(self, indices: np.ndarray) -> np.ndarray:
        try:
            return self._reader.get_batch([int(i) for i in indices]).asnumpy()
        except Exception as e:  # decord.DECORDError: corrupt or truncated data
            raise VideoDecodeError(self.display, f"decoding frames {int(indices[0])}.."
                                                 f"{int(indices[-1])} failed: {_short(e)}") from e

    def close(self) -> None:
        self._reader = None


class _PyAVSource:
    """Sequential decoding through PyAV: the fallback for files decord refuses (e.g. AV1).

    Indices must be requested in non-decreasing order to stay linear; an earlier index
    restarts decoding from the beginning.
    """

    backend = "pyav"

    def __init__(self, local: str, info: VideoInfo, threads: int):
        self.display = info.path
        self._local = local
        self._threads = threads
        self.fps = info.fps
        self._container = None
        self.num_frames = self._exact_count(info.num_frames)
        self._frames: Iterator | None = None
        self._pos = 0  # index of the next frame self._frames yields

    def _exact_count(self, probed: int) -> int:
        """The container's frame count, or the packets counted where it has none (the probe
        estimated it from the duration, e.g. Matroska/WebM)."""
        import av

        with av.open(self._local, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return _count_packets(container, stream) or probed

    def _restart(self) -> None:
        import av

        self.close()
        self._container = av.open(self._local, metadata_errors="ignore")
        stream = self._container.streams.video[0]
        stream.codec_context.thread_count = self._threads
        self._frames = self._container.decode(stream)
        self._pos = 0

    def get(self, indices: np.ndarray) -> np.ndarray:
        if self._frames is None or int(indices[0]) < self._pos:
            self._restart()
        out, last = [], None
        for want in indices:
            want = int(want)
            if last is not None and want == last[0]:
                out.append(last[1])
                continue
            while self._pos <= want:
                try:
                    frame = next(self._frames)
                except StopIteration:
                    raise VideoDecodeError(self.display, f"stream ended at frame {self._pos} "
                                                         f"of {self.num_frames} (truncated?)")
                except Exception as e:
                    raise VideoDecodeError(self.display, f"decoding frame {self._pos} failed: "
                                                         f"{_short(e)}") from e
                if self._pos == want:
                    last = (want, frame.to_ndarray(format="rgb24"))
                self._pos += 1
            out.append(last[1])
        return np.stack(out)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames = None, None


class _FallbackSource:
    """decord, switching to PyAV for good when decord fails on frames PyAV can decode
    (decord 0.6 fails on some narrow videos, e.g. 16, 24 or 48 px wide, in any codec)."""

    def __init__(self, primary: _DecordSource, make_fallback):
        self._source = primary
        self._make_fallback = make_fallback
        self.display, self.num_frames, self.fps = primary.display, primary.num_frames, primary.fps

    @property
    def backend(self) -> str:
        return self._source.backend

    def get(self, indices: np.ndarray) -> np.ndarray:
        try:
            return self._source.get(indices)
        except VideoDecodeError as e:
            if self._make_fallback is None:
                raise
            fallback, self._make_fallback = self._make_fallback(), None
            try:
                frames = fallback.get(indices)
            except VideoDecodeError:
                fallback.close()
                raise  # PyAV's reason: the file is bad for both decoders
            log.debug("decord failed on %s (%s); decoding with PyAV", self.display, e.reason)
            self._source.close()
            self._source = fallback
            return frames

    def close(self) -> None:
        self._source.close()


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:300]


@contextlib.contextmanager
def open_video(path: str | os.PathLike, backend: str = "auto",
               threads: int | None = None) -> Iterator[_DecordSource | _PyAVSource]:
    """Open a video for random access by frame index (probe first, then the decoder).

    Yields an object with ``num_frames``, ``fps``, ``backend`` and ``get(indices) -> uint8
    [n, H, W, 3]`` (indices sorted; repeated indices allowed). ``backend="auto"`` uses decord
    and falls back to PyAV when decord cannot open the file or fails to decode it.

    Raises:
        VideoDecodeError: the file is missing or not a decodable video.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    threads = DECODE_THREADS if threads is None else threads
    with _localized(path) as local:
        info = _probe_local(local, str(path))
        source = None
        if backend in ("auto", "decord"):
            try:
                source = _DecordSource(local, info.path, threads)
            except Exception as e:
                if backend == "decord":
                    raise VideoDecodeError(info.path, f"decord cannot open: {_short(e)}") from e
                log.debug("decord cannot open %s (%s); decoding with PyAV", info.path, _short(e))
        if source is None:
            source = _PyAVSource(local, info, threads)
        elif backend == "auto":
            source = _FallbackSource(source, lambda: _PyAVSource(local, info, threads))
        try:
            yield source
        finally:
            source.close()


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class StreamPlan:
    """Maps indices of the resampled stream to source frame indices.

    ``length`` frames; frame ``k`` shows source frame ``floor((t0 + k / fps) * src_fps)``
    (``t0`` = segment start), or ``first + k`` at the native rate.
    """

    num_source: int
    src_fps: float
    fps: float | None
    first: int
    end: int  # exclusive source index
    t0: float

    @classmethod
    def make(cls, num_source: int, src_fps: float, fps: float | None = None,
             start_s: float | None = None, end_s: float | None = None) -> StreamPlan:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        t0 = max(0.0, float(start_s or 0.0))
        first = min(num_source, int(math.floor(t0 * src_fps + _EPS)))
        end = num_source
        if end_s is not None:
            end = max(first, min(num_source, int(math.ceil(end_s * src_fps - _EPS))))
        return cls(num_source, src_fps, fps, first, end, t0)

    @property
    def length(self) -> int:
        if self.end <= self.first:
            return 0
        if self.fps is None:
            return self.end - self.first
        # the first k whose source index reaches `end` (source_index is non-decreasing)
        n = max(0, int(math.ceil((self.end / self.src_fps - self.t0) * self.fps)))
        while n > 0 and self._index(n - 1) >= self.end:
            n -= 1
        while self._index(n) < self.end:
            n += 1
        return n

    def _index(self, k: int) -> int:
        return int(self.source_index(np.array([k]))[0])

    def source_index(self, k: np.ndarray) -> np.ndarray:
        k = np.asarray(k, dtype=np.int64)
        if self.fps is None:
            return self.first + k
        return np.floor((self.t0 + k / self.fps) * self.src_fps + _EPS).astype(np.int64)


def decode_frames(source, indices: np.ndarray, size: int | None, short_side: int | None,
                  crop: bool) -> torch.Tensor:
    """Decode source frames ``indices`` (any order, repeats allowed) and preprocess them,
    DECODE_BATCH frames at a time. Returns uint8 ``[3, len(indices), H, W]``."""
    indices = np.asarray(indices, dtype=np.int64)
    uniq, inverse = np.unique(indices, return_inverse=True)
    parts = []
    for i in range(0, len(uniq), DECODE_BATCH):
        raw = source.get(uniq[i:i + DECODE_BATCH])
        parts.append(preprocess_frames(raw, size, short_side, crop))
    frames = torch.cat(parts, dim=1)
    if len(uniq) != len(indices) or not np.array_equal(uniq, indices):
        frames = frames[:, torch.from_numpy(inverse.reshape(-1))]
    return frames


def iter_video_chunks(path: str | os.PathLike, chunk_frames: int, fps: float | None = None,
                      size: int | None = None, crop: bool = True,
                      short_side: int | None = None, *, start_s: float | None = None,
                      end_s: float | None = None, backend: str = "auto",
                      threads: int | None = None) -> Iterator[VideoChunk]:
    """Stream a video as chunks of ``chunk_frames`` frames in constant memory.

    Args:
        path: local path or URI.
        chunk_frames: frames per chunk (the last chunk may be shorter).
        fps: target frame rate (source frames picked at the target timestamps); None keeps
            the native rate.
        size, short_side, crop: spatial preprocessing, see :func:`preprocess_frames`.
        start_s, end_s: read only this segment of the file.
        backend: "auto" (decord, PyAV fallback), "decord" or "pyav".

    Yields:
        :class:`VideoChunk` with uint8 ``[3, T, H, W]`` frames; deterministic for a given
        file and arguments.

    Raises:
        VideoDecodeError: bad file, or decoding failed mid-stream (raised when reached).
    """
    if chunk_frames <= 0:
        raise ValueError(f"chunk_frames must be positive, got {chunk_frames}")
    with open_video(path, backend=backend, threads=threads) as source:
        plan = StreamPlan.make(source.num_frames, source.fps, fps, start_s, end_s)
        for start in range(0, plan.length, chunk_frames):
            k = np.arange(start, min(start + chunk_frames, plan.length))
            src = plan.source_index(k)
            frames = decode_frames(source, src, size, short_side, crop)
            yield VideoChunk(frames, start, src / source.fps, src)


def read_video(path: str | os.PathLike, fps: float | None = None, size: int | None = None,
               crop: bool = True, short_side: int | None = None, **kwargs) -> torch.Tensor:
    """A whole (short) video as uint8 ``[3, T, H, W]``: the concatenation of
    :func:`iter_video_chunks` (same arguments). Raises VideoDecodeError, or when the
    stream has no frames in the requested segment."""
    chunks = [c.frames for c in iter_video_chunks(path, 64, fps, size, crop, short_side, **kwargs)]
    if not chunks:
        raise VideoDecodeError(path, "no frames in the requested segment")
    return torch.cat(chunks, dim=1)

