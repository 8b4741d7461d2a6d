"""The labelling job's config: the one place its defaults live (CLI flags and YAML read it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.video import BACKENDS


@dataclass(frozen=True)
class LabelConfig:
    """What ``movinet label`` / ``jobs/label.py`` run.

    Inputs and model:
        input: a folder (all videos below it), a glob (``/data/**/*.mp4``) or a manifest
            (``.parquet``/``.csv`` with ``path`` and optional ``video_id``); local or a URI
            (``s3://``, ``gs://``).
        out: output folder (``videos/``, ``timeline/``, ``summary.json``); local or a URI.
        model: a checkpoint ``.pt`` (training job, ``movinet convert``), ``models:/name@alias``,
            ``models:/name/<version>`` or ``runs:/<run id>/<name>``. Empty when
            ``tf_checkpoint`` is given.
        tf_checkpoint, variant: an official Kinetics-600 TF checkpoint (folder, prefix or
            ``.npz``) and its variant, converted on the fly (stream mode).
        tracking_uri: MLflow store for ``models:/`` and ``runs:/`` (default: the environment's).

    Decoding and predictions:
        chunk_frames: frames decoded and fed per stream at a time; also the timeline step.
        fps: frame rate the model sees (None: the model's own, from its checkpoint).
        top_k: labels kept per video and per timeline row.
        min_score: a top-1 probability below this gives the label ``unknown``.
        backend: decoder. PyAV by default: it decodes sequentially, which at the model's
            rate (5 fps from 10-30 fps files) beats decord's indexed reads, and its memory
            stays flat over a 30-minute file where decord's grew 28%.

    Execution:
        batch_streams: videos run in lockstep per actor (slots of the stream engine).
        batch_videos: videos per ``map_batches`` call (work lost when an actor dies; one
            output part per call). At least ``batch_streams``.
        num_actors: labelling actors (the ``ActorPoolStrategy`` size); None: as many as the
            cluster's CPUs (or GPUs with ``use_gpu``) allow.
        cpus_per_actor: CPUs reserved per actor; also its torch threads. One by default:
            single-threaded actors keep every core busy with no intra-op synchronisation, and
            each actor's decoding overlaps the others' model steps.
        use_gpu: one GPU per actor.
        limit: label at most this many not-yet-labelled videos in this run.
        retry_errors: label again the videos an earlier run recorded as errors (their error
            rows are removed from ``out`` first).
        fuse_bn: fold BatchNorm into the convolutions before inference (same outputs, faster).
        ray_address: cluster to join (None: ``$RAY_ADDRESS``, else a fresh local instance).
    """

    input: str = ""
    out: str = ""
    model: str = ""
    tf_checkpoint: str | None = None
    variant: str = "a0"
    tracking_uri: str | None = None
    chunk_frames: int = 8
    fps: float | None = None
    top_k: int = 5
    min_score: float = 0.0
    backend: str = "pyav"
    batch_streams: int = 4
    batch_videos: int = 16
    num_actors: int | None = None
    cpus_per_actor: int = 1
    use_gpu: bool = False
    limit: int | None = None
    retry_errors: bool = False
    fuse_bn: bool = True
    ray_address: str | None = None

    def __post_init__(self):
        checks = {
            "chunk_frames": self.chunk_frames >= 1, "top_k": self.top_k >= 1,
            "batch_streams": self.batch_streams >= 1,
            "num_actors": self.num_actors is None or self.num_actors >= 1,
            "cpus_per_actor": self.cpus_per_actor >= 1,
            "batch_videos": self.batch_videos >= self.batch_streams,
            "min_score": 0.0 <= self.min_score <= 1.0,
            "fps": self.fps is None or self.fps > 0,
            "limit": self.limit is None or self.limit >= 0,
            "backend": self.backend in BACKENDS,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid label config value(s) for {bad}: chunk_frames, top_k, "
                             "batch_streams, num_actors, cpus_per_actor >= 1; batch_videos >= "
                             f"batch_streams; min_score in [0, 1]; fps > 0; limit >= 0; "
                             f"backend in {BACKENDS}")

    def check_runnable(self) -> None:
        """The fields a run needs (defaults leave them empty so YAML can fill them in)."""
        if not self.input or not self.out:
            raise ValueError("label: both `input` and `out` are required")
        if bool(self.model) == bool(self.tf_checkpoint):
            raise ValueError("label: give exactly one of `model` (a .pt, models:/ or runs:/ "
                             "URI) and `tf_checkpoint` (+ `variant`)")
