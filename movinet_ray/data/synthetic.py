"""A synthetic video dataset whose classes are motions, so a single frame cannot tell them apart.

Each video shows one main object (a random shape with a "clock hand" stripe, random colour)
over a textured, noisy background, with 0-2 smaller distractor objects that wander at random
(an Ornstein-Uhlenbeck velocity), the same way in every class. The class is how the main
object changes over time: ``move_left/right/up/down`` (its position), ``grow/shrink`` (its
size, log scale), ``rotate_cw/ccw`` (its angle, clockwise on screen) or ``static``.

Why one frame carries no class information: every trajectory parameter is a phase on a
circle. Position (in the box that keeps the largest object inside), log-size and angle all
start uniformly at random and the class moves one of them at a constant random speed
*modulo its range* (an object leaving the right edge re-enters on the left, a growing object
snaps back to the smallest size). A uniform phase shifted by any amount is still uniform,
so at every frame of every class the object's (x, y, size, angle) are independent and
uniform over the same ranges; shape, colours, background and distractors are drawn the same
way for all classes.

Videos are H.264 (PyAV ``libx264``); sizes, frame rates and durations vary per video unless
pinned. ``trajectories.jsonl`` beside the manifest records each video's per-frame ground truth.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .manifest import Manifest, write_manifest

log = logging.getLogger(__name__)

MOTION_CLASSES = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink",
                  "rotate_cw", "rotate_ccw", "static")
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = ((160, 120), (176, 144), (240, 180), (256, 144), (320, 180), (320, 240), (424, 240),
         (480, 270), (480, 360), (640, 360))
FRAME_RATES = (10, 12, 15, 20, 24, 25, 30)
DURATION_S = (2.0, 8.0)
# Speeds in phase units per second (a full traverse of the range = 1) / radians per second.
LINEAR_SPEED = (0.15, 0.35)
ANGULAR_SPEED = (0.5 * math.pi, 1.0 * math.pi)
RADIUS = (0.10, 0.22)  # main object's radius range, fraction of the shorter side
# What each class moves: (parameter, direction). Screen y points down; angles grow clockwise.
_MOTION = {"move_left": ("x", -1), "move_right": ("x", 1), "move_up": ("y", -1),
           "move_down": ("y", 1), "grow": ("scale", 1), "shrink": ("scale", -1),
           "rotate_cw": ("angle", 1), "rotate_ccw": ("angle", -1), "static": (None, 0)}
# The class pairs a horizontal mirror / playing the video backwards turns into each other
# (for AugmentConfig.hflip_swap / reverse_swap). Backwards is exact here: every motion is a
# constant speed on a circle, and the distractors' random walks look alike either way.
MIRROR_PAIRS = (("move_left", "move_right"), ("rotate_cw", "rotate_ccw"))
REVERSAL_PAIRS = (("move_left", "move_right"), ("move_up", "move_down"), ("grow", "shrink"),
                  ("rotate_cw", "rotate_ccw"))


@dataclass(frozen=True)
class VideoSpec:
    """Every random draw of one video (rendering is a pure function of it)."""

    label: str
    width: int
    height: int
    fps: int
    num_frames: int
    shape: str
    color: tuple[int, int, int]
    x0: float       # phases in [0, 1)
    y0: float
    scale0: float
    angle0: float   # radians
    speed: float    # phase/s (x, y, scale) or rad/s (angle)
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    texture_seed: int
    noise: float    # std of per-frame pixel noise
    distractors: int
    seed: int


def sample_spec(label: str, rng: np.random.Generator, size: tuple[int, int] | None = None,
                fps: int | None = None, seconds: float | None = None,
                distractors: int | None = None, noise: float | None = None) -> VideoSpec:
    """Draw one video's parameters (``size``/``fps``/``seconds`` pin the format)."""
    if label not in _MOTION:
        raise ValueError(f"unknown motion class {label!r}; known: {MOTION_CLASSES}")
    w, h = size if size is not None else SIZES[rng.integers(len(SIZES))]
    rate = fps if fps is not None else int(FRAME_RATES[rng.integers(len(FRAME_RATES))])
    secs = seconds if seconds is not None else float(rng.uniform(*DURATION_S))
    param = _MOTION[label][0]
    speed = float(rng.uniform(*(ANGULAR_SPEED if param == "angle" else LINEAR_SPEED)))
    bg = tuple(tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
    color = _contrasting_color(rng, np.mean(bg, axis=0))
    return VideoSpec(
        label=label, width=int(w), height=int(h), fps=int(rate),
        num_frames=max(2, int(round(secs * rate))),
        shape=SHAPES[rng.integers(len(SHAPES))], color=color,
        x0=float(rng.random()), y0=float(rng.random()), scale0=float(rng.random()),
        angle0=float(rng.uniform(0, 2 * math.pi)), speed=speed, background=bg,
        texture_seed=int(rng.integers(2**31)),
        noise=float(rng.uniform(2, 8)) if noise is None else float(noise),
        distractors=int(rng.integers(0, 3)) if distractors is None else int(distractors),
        seed=int(rng.integers(2**31)))


def _contrasting_color(rng: np.random.Generator, against: np.ndarray) -> tuple[int, int, int]:
    for _ in range(100):
        c = rng.integers(0, 256, 3)
        if np.abs(c - against).sum() > 150:
            break
    return tuple(int(v) for v in c)


def trajectory(spec: VideoSpec) -> dict[str, np.ndarray]:
    """Per-frame ground truth of the main object: centre ``cx, cy`` and ``radius`` in
    pixels, ``angle`` in radians (clockwise on screen), and the phases ``x, y, scale``."""
    t = np.arange(spec.num_frames) / spec.fps
    param, sign = _MOTION[spec.label]
    phase = {"x": np.full_like(t, spec.x0), "y": np.full_like(t, spec.y0),
             "scale": np.full_like(t, spec.scale0), "angle": np.full_like(t, spec.angle0)}
    if param == "angle":
        phase["angle"] = np.mod(spec.angle0 + sign * spec.speed * t, 2 * math.pi)
    elif param is not None:
        phase[param] = np.mod(phase[param] + sign * spec.speed * t, 1.0)
    short = min(spec.width, spec.height)
    r_min, r_max = RADIUS[0] * short, RADIUS[1] * short
    radius = r_min * (r_max / r_min) ** phase["scale"]
    cx = r_max + phase["x"] * (spec.width - 2 * r_max)
    cy = r_max + phase["y"] * (spec.height - 2 * r_max)
    return {"cx": cx, "cy": cy, "radius": radius, "angle": phase["angle"],
            "x": phase["x"], "y": phase["y"], "scale": phase["scale"]}


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    au, av_ = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= r * r
    if shape == "square":
        return np.maximum(au, av_) <= 0.8 * r
    if shape == "diamond":
        return au + av_ <= r
    if shape == "triangle":  # equilateral, circumradius r, a vertex along +u
        return (u >= -r / 2) & (av_ <= (r - u) / math.sqrt(3))
    if shape == "cross":
        arm = 0.32 * r
        return ((au <= arm) & (av_ <= r)) | ((av_ <= arm) & (au <= r))
    raise ValueError(shape)


def _draw(img: np.ndarray, shape: str, cx: float, cy: float, r: float, angle: float,
          color: Sequence[int], hand: Sequence[int] | None) -> None:
    """Draw a rotated shape (and its clock-hand stripe along the object's +u axis) in place."""
    h, w = img.shape[:2]
    x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    c, s = math.cos(angle), math.sin(angle)
    u, v = dx * c + dy * s, -dx * s + dy * c
    mask = _shape_mask(shape, u, v, r)
    region = img[y0:y1, x0:x1]
    region[mask] = color
    if hand is not None:
        stripe = mask & (u >= 0) & (u <= 0.95 * r) & (np.abs(v) <= max(1.0, 0.12 * r))
        region[stripe] = hand


def _background(spec: VideoSpec) -> np.ndarray:
    """A smooth two-colour texture (bilinear-upsampled random grid) as float32 HWC."""
    rng = np.random.default_rng(spec.texture_seed)
    gh, gw = 6, 8
    grid = rng.random((gh, gw)).astype(np.float32)
    yi = np.linspace(0, gh - 1, spec.height, dtype=np.float32)
    xi = np.linspace(0, gw - 1, spec.width, dtype=np.float32)
    y0, x0 = np.floor(yi).astype(int), np.floor(xi).astype(int)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    fy, fx = (yi - y0)[:, None], (xi - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bot = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    mix = (top * (1 - fy) + bot * fy)[..., None]
    a, b = (np.array(c, np.float32) for c in spec.background)
    return a * (1 - mix) + b * mix


def _distractor_tracks(spec: VideoSpec) -> list[dict]:
    """Small objects on wrapped Ornstein-Uhlenbeck walks (class-independent)."""
    rng = np.random.default_rng(spec.seed)
    short = min(spec.width, spec.height)
    dt = 1.0 / spec.fps
    tracks = []
    for _ in range(spec.distractors):
        pos = rng.random(2)
        vel = rng.normal(0, 0.2, 2)
        xs = np.empty((spec.num_frames, 2))
        for i in range(spec.num_frames):
            xs[i] = pos
            vel += -1.5 * vel * dt + 0.6 * math.sqrt(dt) * rng.normal(size=2)
            pos = np.mod(pos + vel * dt, 1.0)
        r = float(rng.uniform(0.04, 0.07)) * short
        tracks.append({"xy": xs, "r": r, "shape": SHAPES[rng.integers(len(SHAPES))],
                       "angle": float(rng.uniform(0, 2 * math.pi)),
                       "color": tuple(int(c) for c in rng.integers(0, 256, 3))})
    return tracks


def render_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """The frames of ``spec`` as uint8 ``[H, W, 3]`` arrays, one at a time."""
    bg = _background(spec)
    traj = trajectory(spec)
    tracks = _distractor_tracks(spec)
    noise_rng = np.random.default_rng(spec.seed + 1)
    hand = tuple(255 - c for c in spec.color)
    for i in range(spec.num_frames):
        img = bg.copy()
        if spec.noise > 0:
            img += noise_rng.normal(0, spec.noise, img.shape).astype(np.float32)
        img = np.clip(img, 0, 255).astype(np.uint8)
        for tr in tracks:
            x, y = tr["xy"][i]
            m = tr["r"]
            _draw(img, tr["shape"], m + x * (spec.width - 2 * m), m + y * (spec.height - 2 * m),
                  m, tr["angle"], tr["color"], None)
        _draw(img, spec.shape, traj["cx"][i], traj["cy"][i], traj["radius"][i],
              traj["angle"][i], spec.color, hand)
        yield img


# x264's instruction sets up to AVX2, which every CPU with AVX-512 also has (see below).
_X264_UP_TO_AVX2 = ("MMX2", "SSE", "SSE2", "SSE3", "SSSE3", "SSE4.1", "SSE4.2", "AVX", "FMA3",
                    "BMI1", "BMI2", "AVX2", "LZCNT")


@functools.cache
def _x264_repeatable_options() -> dict[str, str]:
    """Keep x264 off its AVX-512 code where the CPU has it.

    On an AMD EPYC with AVX-512, x264 (the build in PyAV 17 and 18 wheels) encoded the same
    frames to 2-4 different files in 12 runs, even with one thread; with AVX2 and below (or
    no assembly at all) every run gave the same bytes. The speed is the same (0.74 s vs
    0.84 s for 240 frames of 640x360).
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: nothing to go on, and no such report there
        return {}
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags")
             for f in line.split(":", 1)[1].split()}
    if "avx512f" not in flags:
        return {}
    return {"x264-params": "asm=" + ",".join(_X264_UP_TO_AVX2)}


def write_video(path: str | os.PathLike, frames: Iterator[np.ndarray] | Sequence[np.ndarray],
                fps: float, codec: str = "libx264", crf: int = 20,
                options: dict[str, str] | None = None,
                container_options: dict[str, str] | None = None) -> None:
    """Encode RGB uint8 ``[H, W, 3]`` frames with PyAV (even width/height for yuv420p).

    ``codec``: ``libx264`` (``crf`` 0 = lossless), ``mpeg4``, ``libx264rgb`` (RGB, lossless
    with crf 0), or any encoder PyAV ships. ``options`` go to the encoder,
    ``container_options`` to the muxer (e.g. ``{"movflags": "faststart"}``).
    The same frames give the same bytes on one machine (one encoder thread, and x264 kept
    off AVX-512, see :func:`_x264_repeatable_options`); an ``x264-params`` option replaces
    that choice.
    """
    import av
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = None
        for img in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=rate)
                stream.height, stream.width = img.shape[:2]
                stream.pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv420p"
                opts = ({"crf": str(crf), "preset": "veryfast", **_x264_repeatable_options()}
                        if "264" in codec else {})
                if codec == "mpeg4":
                    opts = {"qscale": "2"}
                    stream.codec_context.qmin, stream.codec_context.qmax = 1, 3
                stream.options = {**opts, **(options or {})}
                stream.codec_context.thread_count = 1  # deterministic output bytes
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError("no frames to write")
        for packet in stream.encode():
            container.mux(packet)


def _write_spec(job: tuple[Path, VideoSpec]) -> None:
    path, spec = job
    write_video(path, render_frames(spec), spec.fps)


def _parse_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, str):
        w, h = size.lower().split("x")
        size = (int(w), int(h))
    w, h = int(size[0]), int(size[1])
    if w % 2 or h % 2 or w < 32 or h < 32:
        raise ValueError(f"size must be even and at least 32x32, got {w}x{h}")
    return w, h


def generate_synthetic_dataset(out_dir: str | os.PathLike,
                               classes: Sequence[str] | None = None,
                               videos_per_class: int = 20, seed: int = 0,
                               size: tuple[int, int] | str | None = None,
                               fps: int | None = None, seconds: float | None = None,
                               val_fraction: float = 0.2, distractors: int | None = None,
                               noise: float | None = None, workers: int = 1) -> Path:
    """Write ``videos_per_class`` videos per motion class and a manifest; deterministic in
    ``seed`` (and the other arguments).

    Args:
        out_dir: folder for ``<class>/<class>_<i:04d>.mp4``, ``manifest.parquet`` (+ its
            ``manifest.classes.json``) and ``trajectories.jsonl``.
        classes: subset of :data:`MOTION_CLASSES` (default all nine, in that order).
        videos_per_class: videos per class.
        size: ``(width, height)`` or ``"WxH"`` for every video (default: varied 160x120 to
            640x360). fps / seconds: pin frame rate / duration (default: 10-30 fps, 2-8 s).
        val_fraction: per class, ``round(val_fraction * n)`` videos (chosen at random,
            seeded) get split ``val``, the rest ``train``.
        distractors, noise: pin the distractor count / pixel-noise std (default random).
        workers: processes rendering and encoding videos (each video is a pure function of
            its spec, so the files are the same for any count; ~1.2 s per full-size video).

    Returns:
        path of the manifest (Parquet; paths relative to ``out_dir``).
    """
    classes = tuple(classes) if classes else MOTION_CLASSES
    unknown = [c for c in classes if c not in _MOTION]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; known: {MOTION_CLASSES}")
    if videos_per_class < 1 or not 0 <= val_fraction < 1:
        raise ValueError("videos_per_class must be >= 1 and val_fraction in [0, 1)")
    pinned = _parse_size(size)
    out = Path(out_dir)
    rows, tracks, jobs = [], [], []
    for ci, label in enumerate(classes):
        (out / label).mkdir(parents=True, exist_ok=True)
        split_rng = np.random.default_rng([seed, ci, 2**20])
        n_val = int(round(val_fraction * videos_per_class))
        val = set(split_rng.permutation(videos_per_class)[:n_val].tolist())
        for i in range(videos_per_class):
            rng = np.random.default_rng([seed, MOTION_CLASSES.index(label), i])
            spec = sample_spec(label, rng, pinned, fps, seconds, distractors, noise)
            rel = f"{label}/{label}_{i:04d}.mp4"
            jobs.append((out / rel, spec))
            rows.append({"path": rel, "label": label, "split": "val" if i in val else "train",
                         "video_id": f"{label}_{i:04d}", "width": spec.width,
                         "height": spec.height, "fps": float(spec.fps),
                         "num_frames": spec.num_frames, "shape": spec.shape})
            traj = trajectory(spec)
            tracks.append({"video_id": f"{label}_{i:04d}", "spec": asdict(spec),
                           **{k: np.round(v, 4).tolist() for k, v in traj.items()}})
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_spec, jobs, chunksize=4))
    else:
        for job in jobs:
            _write_spec(job)
    manifest = Manifest.from_rows(rows, classes=classes)
    path = out / "manifest.parquet"
    # Paths stay relative in the file so the folder can move; read_manifest resolves them.
    write_manifest(manifest, path)
    with open(out / "trajectories.jsonl", "w") as f:
        for t in tracks:
            f.write(json.dumps(t) + "\n")
    log.info("wrote %d videos of %d classes to %s", len(rows), len(classes), out)
    return path

