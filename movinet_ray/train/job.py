"""The training job's driver: data, MLflow run, ``TorchTrainer.fit()``, the final model.

One MLflow run per training run ``name`` (tags ``movinet.run_name``, ``movinet.model``,
``movinet.storage``). The driver logs what only it knows before ``fit()`` (hyperparameters,
manifest hash, class list, discard report) and, after it, the final model: the checkpoint
with the best validation top-1, its confusion matrix and per-class metrics, logged with
:func:`~movinet_ray.tracking.log_model` and registered under an alias. Rank 0 logs the live
per-step metrics during ``fit()``. Starting a run whose name already has checkpoints under
``run.storage_path`` resumes it, into the same MLflow run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import ray.train
import torch
from ray.train.torch import TorchTrainer

from .. import tracking
from ..config import ConfigError, to_dict
from ..data import Manifest, build_clip_dataset, read_manifest, screen_manifest
from ..data import storage as data_storage
from ..model import ModelInfo, save_model
from ..model.checkpoint import ARCHITECTURES
from .config import TrainConfig
from .loop import EVAL_FILE, SCORE, STATE_FILE, train_loop_per_worker
from .weights import initial_model

log = logging.getLogger(__name__)

# Params that define what is trained; a resumed run must not change them.
_DEFINING = ("model.", "data.", "optim.", "train.")


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    run_name: str
    run_id: str
    model_uri: str            # models:/<name>@<alias>, or runs:/<id>/model when not registered
    best_step: int
    best_val_top1: float
    steps: int
    checkpoint_dir: str       # where Ray Train keeps this run's checkpoints


def main(cfg: TrainConfig) -> TrainResult:
    """Log the resolved config, train, return the result (the job and ``movinet train``)."""
    import yaml

    from ..ray_init import init_ray

    resolved = cfg.resolved()
    log.info("training config:\n%s", yaml.safe_dump(to_dict(resolved), sort_keys=False))
    init_ray()  # $RAY_ADDRESS (set under `ray job submit`), else a local Ray
    return train(resolved)


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or resume) the run ``cfg.run.name`` on the connected Ray cluster (a local one is
    started if none is), tracked in MLflow; see the module docstring."""
    cfg = cfg.resolved()
    name = cfg.run.name or f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = _storage_uri(cfg.run.storage_path)
    tracking_uri = tracking.resolve_tracking_uri(cfg.tracking.tracking_uri)
    mlflow = tracking.setup_mlflow(tracking_uri, cfg.tracking.experiment)
    done = _finished(mlflow, cfg, name, storage)
    if done is not None:
        log.info("run %s already finished: model %s", name, done.model_uri)
        return done

    manifest = read_manifest(cfg.data.manifest)
    classes = tuple(manifest.classes.names)
    train_m, train_report = screen_manifest(_labelled(manifest), cfg.sampling(True),
                                            cfg.data.train_split)
    val_m, val_report = screen_manifest(_labelled(manifest), cfg.sampling(False),
                                        cfg.data.val_split)
    for split, report in (("train", train_report), ("val", val_report)):
        log.info("%s split: %s", split, report.summary())
    if not train_report.kept or not val_report.kept:
        raise ValueError(f"{cfg.data.manifest}: no usable videos in the train or val split "
                         f"(train kept {train_report.kept}, val kept {val_report.kept})")

    model, source = initial_model(cfg.model, classes, cfg.train.seed, tracking_uri)
    info = ModelInfo(ARCHITECTURE_NAME[type(model).__name__], model.cfg.to_dict(), classes,
                     cfg.data.resolution, cfg.data.fps, cfg.data.frames, source,
                     {"run_name": name})

    run_id, previous_time = _open_run(mlflow, cfg, name, storage, manifest, classes,
                                      (train_report, val_report), model)
    datasets = {
        "train": build_clip_dataset(
            _training_order(train_m, cfg), cfg.data.train_split, cfg.sampling(True), cfg.data.resolution, train=True,
            seed=cfg.train.seed, augment=cfg.data.augmentation if cfg.data.augment else None,
            epoch=None, num_cpus=cfg.data.decode_cpus,
            videos_per_block=cfg.data.videos_per_task, columns=("clip", "label"),
            max_tasks=cfg.data.decode_tasks),
        "val": build_clip_dataset(
            val_m, cfg.data.val_split, cfg.sampling(False), cfg.data.resolution, train=False,
            num_cpus=cfg.data.decode_cpus, videos_per_block=cfg.data.videos_per_task,
            columns=("clip", "label", "video_id"), max_tasks=cfg.data.decode_tasks),
    }
    for ds in datasets.values():  # a bar per pass and worker is noise in a training log
        ds.context.enable_progress_bars = False
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg, "architecture": info.architecture,
                           "model_config": info.config, "class_names": classes,
                           "init_state": ray.put(model.state_dict()),
                           "run_id": run_id, "tracking_uri": tracking_uri},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={"CPU": cfg.scaling.cpus_per_worker},
            placement_strategy=cfg.scaling.placement_strategy),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.run.keep_checkpoints, checkpoint_score_attribute=SCORE,
                checkpoint_score_order="max")),
        datasets=datasets,
        dataset_config=ValidationUnequalSplit(),
    )
    start = time.time()
    try:
        result = trainer.fit()
    except BaseException:
        mlflow.MlflowClient().set_terminated(run_id, "FAILED")
        raise
    elapsed = previous_time + time.time() - start
    return _finish(mlflow, cfg, name, run_id, result, info, elapsed)


ARCHITECTURE_NAME = {"MoViNet": "movinet", "Frame2D": "frame2d"}


class ValidationUnequalSplit(ray.train.DataConfig):
    """Training shards of equal size (DDP steps stay in lockstep), while the validation
    split is shared out unequally, so that no validation clip is dropped to even it out."""

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        # Ray Train V2 configures one dataset per call; handle any mix anyway.
        rest = {k: v for k, v in datasets.items() if k != "val"}
        output = (super().configure(rest, world_size, worker_handles, worker_node_ids,
                                    **kwargs) if rest else [{} for _ in range(world_size)])
        if "val" in datasets:
            val = datasets["val"].copy(datasets["val"])
            val.context.execution_options = self._resolve_execution_options("val")
            hints = worker_node_ids if self._enable_shard_locality else None
            for i, split in enumerate(val.streaming_split(world_size, equal=False,
                                                          locality_hints=hints)):
                output[i]["val"] = split
        return output


# A pass over the training dataset should last this many steps (or the whole run): every
# pass starts the Ray Data pipeline again, which costs seconds.
MIN_STEPS_PER_PASS = 100


def _training_order(manifest: Manifest, cfg: TrainConfig) -> Manifest:
    """The training videos in random order, repeated (each copy in its own order) until one
    pass of the dataset covers ``MIN_STEPS_PER_PASS`` steps.

    Ray Data keeps the input order (roughly: decoding runs in parallel), and manifests are
    often sorted by class; with ``epoch=None`` every repetition draws new clips. The order is
    seeded and the same on every pass; the workers' local shuffle buffer mixes further.
    """
    clips = min(cfg.train.steps, MIN_STEPS_PER_PASS) * cfg.train.batch_size
    copies = max(1, -(-clips // len(manifest)))
    rng = np.random.default_rng(cfg.train.seed)
    order = np.concatenate([rng.permutation(len(manifest)) for _ in range(copies)])
    return Manifest(manifest.table.take(order), manifest.classes)


def _labelled(manifest: Manifest) -> Manifest:
    ids = {r["video_id"] for r in manifest.rows() if r.get("label") is not None}
    if len(ids) < len(manifest):
        log.info("%d unlabelled videos ignored", len(manifest) - len(ids))
    return manifest.filter_video_ids(ids)


def _storage_uri(path: str) -> str:
    """Ray Train wants an absolute local path or a URI."""
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def manifest_sha256(path: str) -> str:
    """SHA-256 of the manifest file's bytes (what ``sha256sum`` prints)."""
    fs, inner = data_storage.from_uri(path)
    digest = hashlib.sha256()
    with fs.open_input_stream(inner) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _run_tags(name: str, storage: str) -> dict[str, str]:
    return {"movinet.run_name": name, "movinet.storage": storage}


def _finished(mlflow, cfg: TrainConfig, name: str, storage: str) -> TrainResult | None:
    """The result of run ``name`` if it already finished with a model (re-running is a no-op)."""
    run_id = tracking.find_run(cfg.tracking.experiment, _run_tags(name, storage))
    if run_id is None:
        return None
    run = mlflow.MlflowClient().get_run(run_id)
    uri, m = run.data.tags.get("movinet.model_uri"), run.data.metrics
    if run.info.status != "FINISHED" or uri is None:
        return None
    return TrainResult(name, run_id, uri, int(m["best/step"]), m["best/val_top1"],
                       int(m["train/steps_done"]), f"{storage.rstrip('/')}/{name}")


def _open_run(mlflow, cfg: TrainConfig, name: str, storage: str, manifest: Manifest,
              classes, reports, model) -> tuple[str, float]:
    """Create the MLflow run for ``name``, or reopen it when resuming.

    Returns ``(run_id, training seconds already spent)``.
    """
    tags = _run_tags(name, storage)
    params = tracking.flatten(to_dict(cfg))
    params.update({"data.manifest_sha256": manifest_sha256(cfg.data.manifest),
                   "data.num_classes": len(classes),
                   "model.parameters": sum(p.numel() for p in model.parameters())})
    client = mlflow.MlflowClient()
    run_id = tracking.find_run(cfg.tracking.experiment, tags)
    if run_id is not None:
        old = client.get_run(run_id).data.params
        changed = sorted(k for k, v in params.items()
                         if k.startswith(_DEFINING) and k in old and old[k] != str(v))
        if changed:
            raise ConfigError(f"run {name!r} exists with other settings ({changed[:5]}); "
                              "resume it unchanged or pick another run.name")
        log.info("resuming MLflow run %s (%s)", run_id, name)
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "movinet.resumed", "true")
        return run_id, client.get_run(run_id).data.metrics.get("train/time_s", 0.0)
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    run_id = client.create_run(experiment.experiment_id, run_name=name, tags={
        **tags, "movinet.model": cfg.model.name, "movinet.init": cfg.model.init}).info.run_id
    tracking.log_params(client, run_id, params)
    client.log_dict(run_id, {"classes": list(classes)}, "data/classes.json")
    client.log_dict(run_id, to_dict(cfg), "config.json")
    for split, report in zip(("train", "val"), reports):
        for key, value in report.counts().items():
            client.log_metric(run_id, f"data/{split}_{key}", value)
        client.log_dict(run_id, report.as_dict(), f"data/discards_{split}.json")
    return run_id, 0.0


def _finish(mlflow, cfg: TrainConfig, name: str, run_id: str, result, info: ModelInfo,
            elapsed: float) -> TrainResult:
    """Save the best checkpoint as the run's model; log its evaluation; register it."""
    ranked = sorted(result.best_checkpoints or [],
                    key=lambda cm: (cm[1][SCORE], cm[1]["step"]))
    if not ranked:
        raise RuntimeError(f"run {name} finished without a checkpoint")
    best, best_metrics = ranked[-1]
    steps = int(result.metrics["step"])
    with tempfile.TemporaryDirectory() as tmp, best.as_directory() as ckpt_dir:
        state = torch.load(Path(ckpt_dir) / STATE_FILE, map_location="cpu", weights_only=False)
        report = json.loads((Path(ckpt_dir) / EVAL_FILE).read_text())
        model = ARCHITECTURES[info.architecture](info.config)
        model.load_state_dict(state["model"])
        info = dataclasses.replace(info, extra={**info.extra, "step": report["step"],
                                                "val_top1": report["top1"]})
        path = save_model(Path(tmp) / f"{cfg.model.name}.pt", model, info)
        registered = None
        if cfg.tracking.register:
            registered = cfg.tracking.registered_model or f"movinet-{cfg.model.name}"
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({"best/val_top1": report["top1"], "best/val_top5": report["top5"],
                                "best/step": report["step"], "train/steps_done": steps,
                                "train/time_s": elapsed}, step=steps)
            tracking.log_evaluation(report, info.class_names, report["step"])
            _, version = tracking.log_model(
                path, info, name="model", registered_model_name=registered,
                aliases=(cfg.tracking.alias,) if registered else (),
                tags={"run_name": name, "step": str(report["step"])})
            uri = (f"models:/{registered}@{cfg.tracking.alias}" if registered
                   else f"runs:/{run_id}/model")
            mlflow.set_tag("movinet.model_uri", uri)
    log.info("run %s: best val top-1 %.3f at step %d of %d; model %s", name, report["top1"],
             report["step"], steps, uri)
    return TrainResult(name, run_id, uri, int(report["step"]), float(report["top1"]), steps,
                       result.path)
