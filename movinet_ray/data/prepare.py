"""Prepare a dataset for training: decode each video once at the frame rate and size the job
samples, and keep a lossless copy of just those frames with its own manifest.

Why: a training clip of 8 frames at 2.5 fps from a 30 fps, 640x360 video costs ~96 full-size
frames of decoding (every frame from the previous keyframe on), and again each time the clip is
drawn; on a CPU machine the decoders, not the model, then set the pace. The copy holds the
frames the sampler would pick at ``fps`` (the same :class:`~.video.StreamPlan` source frames),
resized once, encoded losslessly (H.264 RGB, crf 0): decoding the copy gives those frames
bit for bit, so a clip drawn at ``fps`` from the copy is the clip drawn from the original,
already resized. It is what video datasets are usually given as (e.g. Kinetics "resized to
256"), made here as a Ray Data job over the manifest.

Reliability: a video that fails to decode becomes a row of ``prepare_errors.parquet`` (path and
reason) and is left out of the new manifest; the rest completes. Copies are written under a
temporary name and renamed when complete, so a re-run into the same folder skips the videos
already done and never keeps a half-written file; ``prepare.json`` records the settings, and a
re-run with other settings into the same folder is refused rather than mixing two formats.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .manifest import Manifest, write_manifest
from .sampling import stable_hash
from .synthetic import write_video
from .video import VideoDecodeError, iter_video_chunks, probe_video, resize_frames

log = logging.getLogger(__name__)

CHUNK_FRAMES = 32  # frames decoded and encoded at a time: constant memory per video
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def copy_name(video_id: str) -> str:
    """The copy's file name: ``video_id`` made filesystem-safe, plus a short hash of it so
    two ids that sanitise alike still get two files."""
    return f"{_UNSAFE.sub('_', video_id)[:80]}-{stable_hash(video_id) % 16**6:06x}.mkv"


@dataclass(frozen=True)
class VideoPreparer:
    """Row (one video) -> row describing its copy; the Ray Data ``map`` function of
    :func:`prepare_dataset`, usable on its own.

    ``size`` ``(width, height)`` resizes every frame to exactly that (the aspect ratio is not
    kept: the whole picture stays in view); else ``short_side`` resizes the shorter side and
    keeps the aspect; neither keeps the native size. ``fps`` None keeps the native rate.
    """

    out_dir: str
    fps: float | None
    size: tuple[int, int] | None = None
    short_side: int | None = None
    backend: str = "auto"

    def __call__(self, row: dict) -> dict:
        rel = f"videos/{copy_name(row['video_id'])}"
        dest = os.path.join(self.out_dir, rel)
        out = {"video_id": row["video_id"], "source_path": row["path"], "path": rel,
               "status": "ok", "error": None, "resumed": False,
               "num_frames": 0, "fps": 0.0, "width": 0, "height": 0}
        try:
            if os.path.exists(dest):
                info = probe_video(dest)
                out["resumed"] = True
            else:
                info = self._write(row, dest)
            out.update(num_frames=info.num_frames, fps=info.fps, width=info.width,
                       height=info.height)
        except (VideoDecodeError, ValueError) as e:
            out.update(status="error", path=None, error=str(e))
        return out

    def _write(self, row: dict, dest: str):
        tmp = dest + ".part.mkv"
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        chunks = iter_video_chunks(row["path"], CHUNK_FRAMES, self.fps, None, crop=False,
                                   short_side=self.short_side if self.size is None else None,
                                   start_s=row.get("start_s"), end_s=row.get("end_s"),
                                   backend=self.backend)
        rate = self.fps
        if rate is None:
            rate = probe_video(row["path"]).fps
        try:
            write_video(tmp, self._frames(chunks), rate, codec="libx264rgb", crf=0)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        os.replace(tmp, dest)
        return probe_video(dest)

    def _frames(self, chunks):
        for chunk in chunks:
            frames = chunk.frames
            if self.size is not None:
                frames = resize_frames(frames, self.size[1], self.size[0])
            yield from frames.permute(1, 2, 3, 0).numpy()


@dataclass
class PrepareResult:
    """Where the copy's manifest is, and what happened to each video."""

    manifest_path: str
    written: int
    resumed: int
    errors: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        return (f"prepared {self.written + self.resumed} videos ({self.written} written, "
                f"{self.resumed} already there), {len(self.errors)} failed -> "
                f"{self.manifest_path}")


def prepare_dataset(manifest: Manifest, out_dir: str | os.PathLike, fps: float | None,
                    size: tuple[int, int] | str | None = None, short_side: int | None = None,
                    *, backend: str = "auto", videos_per_task: int = 8,
                    num_cpus: float = 1.0) -> PrepareResult:
    """Write a copy of every video of ``manifest`` under ``out_dir/videos/`` at ``fps`` and
    ``size`` (``(width, height)`` or ``"WxH"``, aspect not kept) or ``short_side`` (aspect
    kept), and ``out_dir/manifest.parquet`` for it: same ``video_id``, labels, splits and
    other columns, ``path`` the copy, ``source_path`` the original, ``fps``, ``num_frames``,
    ``width`` and ``height`` the copy's; segments (``start_s``/``end_s``) become whole files.

    Runs on the connected Ray (one Ray Data task per ``videos_per_task`` videos).
    Failed videos go to ``out_dir/prepare_errors.parquet`` and the log, not the manifest.

    Raises:
        ValueError: an ``out_dir`` URI (copies are written locally), a bad size, or no video
            could be prepared.
    """
    import ray.data

    if storage.is_uri(str(out_dir)):
        raise ValueError(f"prepare writes local files; got {out_dir} (sync it afterwards)")
    if isinstance(size, str):
        w, h = size.lower().split("x")
        size = (int(w), int(h))
    if size is not None and (size[0] < 1 or size[1] < 1):
        raise ValueError(f"size must be positive, got {size}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = {"fps": fps, "size": list(size) if size else None,
                "short_side": None if size else short_side}
    recorded = out / "prepare.json"
    if recorded.exists() and json.loads(recorded.read_text()) != settings:
        raise ValueError(f"{out} holds copies prepared with {recorded.read_text().strip()}, "
                         f"not {json.dumps(settings)}: use another folder")
    recorded.write_text(json.dumps(settings) + "\n")
    rows = manifest.rows()
    items = [{"path": r["path"], "video_id": r["video_id"], "start_s": r.get("start_s"),
              "end_s": r.get("end_s")} for r in rows]
    preparer = VideoPreparer(str(out), fps, size, short_side, backend)
    blocks = max(1, -(-len(items) // max(1, videos_per_task)))
    ds = ray.data.from_items(items, override_num_blocks=blocks).map(preparer, num_cpus=num_cpus)
    ds.context.op_resource_reservation_enabled = False  # one CPU operator: let it use them all
    done = {r["video_id"]: r for r in ds.take_all()}

    kept, errors = [], []
    for row in rows:
        result = done[row["video_id"]]
        if result["status"] != "ok":
            errors.append({"video_id": row["video_id"], "path": row["path"],
                           "error": result["error"]})
            log.warning("not prepared: %s (%s): %s", row["video_id"], row["path"],
                        result["error"])
            continue
        new = {k: v for k, v in row.items() if k not in ("start_s", "end_s")}
        new.update(path=result["path"], source_path=row["path"], fps=float(result["fps"]),
                   num_frames=int(result["num_frames"]), width=int(result["width"]),
                   height=int(result["height"]))
        kept.append(new)
    errors_path = out / "prepare_errors.parquet"
    if errors:
        pq.write_table(pa.Table.from_pylist(errors), errors_path)
    elif errors_path.exists():
        errors_path.unlink()  # a re-run that fixed them
    if not kept:
        raise ValueError(f"no video could be prepared ({len(errors)} failed; see {errors_path})")
    manifest_path = write_manifest(Manifest.from_rows(kept, manifest.classes),
                                   out / "manifest.parquet")
    resumed = sum(done[r["video_id"]]["resumed"] for r in kept)
    result = PrepareResult(manifest_path, len(kept) - resumed, resumed, errors)
    log.info(result.summary())
    return result
