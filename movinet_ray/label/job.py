"""Bulk labelling on Ray Data: one row per video, stream models on an actor pool.

``run_label(cfg)``: list the videos, skip those already in ``out``, then
``from_arrow(batches of video rows) -> map_batches(LabelPredictor, compute=ActorPoolStrategy)``.
The driver consumes the actors' result blocks as they complete and writes each as one
Parquet part (:class:`~movinet_ray.label.output.LabelStore`), so the job holds one batch of
results at a time and a crash loses only unwritten batches.

Failures: a bad file becomes an error row inside the actor; an actor that dies is restarted
by Ray Data and its batch retried (map actors run with ``max_restarts=-1`` and
``max_task_retries=-1``); its results reach the driver only when the retried batch
completes, so nothing of the killed attempt is ever written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..ray_init import init_ray
from .config import LabelConfig
from .labeller import DecodeSpec
from .output import LabelStore
from .predictor import LabelPredictor, TopK
from .sources import list_videos

log = logging.getLogger(__name__)


def load_label_model(cfg: LabelConfig):
    """``(model, ModelInfo, model_uri, model_version)`` for ``cfg.model`` / ``cfg.tf_checkpoint``.

    ``model_version`` is the registry version for ``models:/`` URIs and a fingerprint of the
    weights (``sha256:<12 hex>``) otherwise, so labels always name the exact weights.
    """
    from ..tracking import resolve_model

    if cfg.tf_checkpoint:
        from ..model import load_kinetics600

        model, info = load_kinetics600(cfg.tf_checkpoint, cfg.variant, "stream")
        uri = f"{os.path.abspath(cfg.tf_checkpoint)}#{cfg.variant}"
    else:
        model, info = resolve_model(cfg.model, tracking_uri=cfg.tracking_uri)
        uri = cfg.model if ":/" in cfg.model else os.path.abspath(cfg.model)
    version = _registry_version(uri, cfg.tracking_uri) or _fingerprint(model)
    return model.eval(), info, uri, version


def _registry_version(uri: str, tracking_uri: str | None) -> str | None:
    if not uri.startswith("models:/"):
        return None
    from ..tracking import setup_mlflow

    client = setup_mlflow(tracking_uri).MlflowClient()
    name, _, ref = uri[len("models:/"):].partition("@")
    if ref:
        return str(client.get_model_version_by_alias(name, ref).version)
    name, _, version = uri[len("models:/"):].rpartition("/")
    if version.isdigit():
        return version
    return None


def _fingerprint(model) -> str:
    if hasattr(model, "fingerprint"):  # an ONNX graph: its file
        return f"sha256:{model.fingerprint()[:12]}"
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return f"sha256:{digest.hexdigest()[:12]}"


def run_label(cfg: LabelConfig) -> dict:
    """Label every not-yet-labelled video of ``cfg.input`` into ``cfg.out``.

    Needs a Ray instance (``ray.init`` is the caller's; Ray Data starts a local one if none).
    Returns the summary (also logged and written to ``out/summary.json``).

    Raises:
        ValueError: a base (non-causal) model, no videos, bad config.
        SettingsMismatch: ``out`` holds labels made with another model or settings.
    """
    cfg.check_runnable()
    start = time.perf_counter()
    model, info, model_uri, version = load_label_model(cfg)
    if not info.stateful:
        raise ValueError(f"{model_uri} is a base (non-causal) model: it cannot label chunk by "
                         "chunk with a carried state; use a stream checkpoint "
                         "(`movinet convert --mode stream`)")
    fps = cfg.fps or info.fps
    decode = DecodeSpec(cfg.chunk_frames, fps, info.resolution, cfg.backend)
    store = LabelStore(cfg.out)
    settings = {"model_uri": model_uri, "model_version": version, "fps": fps,
                "size": info.resolution, "chunk_frames": cfg.chunk_frames, "top_k": cfg.top_k,
                "min_score": cfg.min_score}
    done = store.prepare(settings, cfg.retry_errors)
    videos = list_videos(cfg.input)
    todo = videos.filter(pc.invert(pc.is_in(videos["video_id"], pa.array(sorted(done),
                                                                          pa.string()))))
    skipped = len(videos) - len(todo)
    if cfg.limit is not None:
        todo = todo.slice(0, cfg.limit)
    log.info("%d videos at %s: %d already labelled in %s, %d to label now with %s (%s; "
             "%s fps, %dx%d crop, chunks of %d frames)", len(videos), cfg.input, skipped,
             cfg.out, len(todo), model_uri, version, fps or "native", info.resolution,
             info.resolution, cfg.chunk_frames)
    counts = {"ok": 0, "error": 0, "frames": 0, "timeline_rows": 0}
    if len(todo):
        if cfg.fuse_bn and hasattr(model, "fuse_bn_"):  # variants other than fp32 come fused
            model.fuse_bn_()
        topk = TopK(tuple(info.class_names), cfg.top_k, cfg.min_score)
        ds = _label_dataset(cfg, todo, model, decode, topk)
        _write_results(ds, store, model_uri, version, counts, len(todo))
    wall = time.perf_counter() - start
    labelled = counts["ok"] + counts["error"]
    summary = {
        "videos_found": len(videos), "already_labelled": skipped, "labelled": labelled,
        "ok": counts["ok"], "failed": counts["error"], "frames": counts["frames"],
        "timeline_rows": counts["timeline_rows"], "wall_s": round(wall, 3),
        "frames_per_s": round(counts["frames"] / wall, 2) if wall else 0.0,
        "videos_per_min": round(60 * labelled / wall, 2) if wall else 0.0,
        "model_uri": model_uri, "model_version": version,
        "videos_dir": store.videos_dir, "timeline_dir": store.timeline_dir}
    store.write_summary(summary)
    log.info("labelled %d videos (%d ok, %d failed; %d already done) - %d frames in %.1f s "
             "(%.1f frames/s, %.1f videos/min) -> %s", labelled, counts["ok"], counts["error"],
             skipped, counts["frames"], wall, summary["frames_per_s"],
             summary["videos_per_min"], cfg.out)
    return summary


def _label_dataset(cfg: LabelConfig, todo: pa.Table, model, decode: DecodeSpec, topk: TopK):
    """Video rows in blocks of ``batch_videos`` -> ``LabelPredictor`` on an actor pool."""
    import ray
    import ray.data

    batches = [todo.slice(i, cfg.batch_videos) for i in range(0, len(todo), cfg.batch_videos)]
    actors = min(cfg.num_actors or _actors_that_fit(cfg), len(batches))
    log.info("%d actor(s) x %d CPU%s, %d videos in lockstep each, %d videos per batch",
             actors, cfg.cpus_per_actor, " + 1 GPU" if cfg.use_gpu else "",
             cfg.batch_streams, cfg.batch_videos)
    return ray.data.from_arrow(batches).map_batches(
        LabelPredictor,
        fn_constructor_kwargs={"model": ray.put(model), "decode": decode, "topk": topk,
                               "capacity": cfg.batch_streams, "threads": cfg.cpus_per_actor,
                               "device": "cuda" if cfg.use_gpu else "cpu"},
        batch_size=cfg.batch_videos, batch_format="pyarrow",
        # One batch per actor at a time: a batch is seconds of work, so queueing a second
        # gains nothing, and an actor that dies takes only its own batch with it (and no
        # actor sits idle at the end while another works through a queue).
        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
        num_cpus=cfg.cpus_per_actor, num_gpus=1 if cfg.use_gpu else None)


def _actors_that_fit(cfg: LabelConfig) -> int:
    import ray

    resources = ray.cluster_resources()
    if cfg.use_gpu:
        return max(1, int(resources.get("GPU", 1)))
    return max(1, int(resources.get("CPU", 1) // cfg.cpus_per_actor))


def _write_results(ds, store: LabelStore, model_uri: str, version: str, counts: dict,
                   total: int) -> None:
    """Write each result block as it arrives; a video seen twice (never expected: Ray
    delivers a retried batch once) is dropped, not written twice."""
    written: set[str] = set()
    for results in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        ids = results["video_id"].to_pylist()
        fresh = [i for i, v in enumerate(ids) if v not in written]
        if len(fresh) < len(ids):
            log.warning("dropping %d result(s) already written in this run",
                        len(ids) - len(fresh))
            results = results.take(pa.array(fresh, pa.int64()))
        if not len(results):
            continue
        rows, timeline_rows = store.write_part(results, model_uri, version)
        written.update(rows["video_id"].to_pylist())
        ok = pc.sum(pc.equal(rows["status"], "ok")).as_py() or 0
        counts["ok"] += ok
        counts["error"] += len(rows) - ok
        counts["frames"] += pc.sum(rows["frames"]).as_py() or 0
        counts["timeline_rows"] += timeline_rows
        log.info("wrote %d videos (%d ok); %d/%d labelled", len(rows), ok, len(written), total)


def demo_label(videos_dir: Path, model_uri: str, out_dir: Path,
               tracking_uri: str | None) -> dict:
    """Label the videos below ``videos_dir`` with ``model_uri`` into ``out_dir``; print the
    summary and where the Parquet files are; return the summary (the ``make demo`` step)."""
    import ray

    started = not ray.is_initialized()
    if started:
        init_ray("local", include_dashboard=False)
    try:
        cfg = LabelConfig(input=str(videos_dir), out=str(out_dir), model=model_uri,
                          tracking_uri=tracking_uri)
        summary = run_label(cfg)
    finally:
        if started:
            ray.shutdown()
    print(f"labelled {summary['labelled']} videos ({summary['ok']} ok, {summary['failed']} "
          f"failed) in {summary['wall_s']:.1f} s, {summary['frames_per_s']:.1f} frames/s")
    print(f"  per video:     {summary['videos_dir']}")
    print(f"  per chunk:     {summary['timeline_dir']}")
    return summary
