"""``movinet train``, ``movinet runs compare`` and ``movinet ui``."""

from __future__ import annotations

import argparse
import logging
import subprocess

log = logging.getLogger(__name__)

# --flag -> dotted config key; flags are applied after the positional key=value overrides.
FLAGS = {
    "model": ("model.name", str, "a0-stream ... a5-base, or frame2d"),
    "init": ("model.init", str, "random | kinetics600:PATH | run:<id> | models:/<name>@<alias>"),
    "backbone_lr_mult": ("model.backbone_lr_mult", float, "LR factor of the backbone"),
    "manifest": ("data.manifest", str, "manifest path or URI"),
    "resolution": ("data.resolution", int, "square crop side (default: the model's)"),
    "frames": ("data.frames", int, "frames per clip (default: the model's)"),
    "fps": ("data.fps", float, "clip frame rate (default: the model's)"),
    "steps": ("train.steps", int, "optimizer steps"),
    "batch_size": ("train.batch_size", int, "global batch (clips per optimizer step)"),
    "lr": ("optim.lr", float, "peak learning rate"),
    "seed": ("train.seed", int, "random seed"),
    "num_workers": ("scaling.num_workers", int, "Ray Train workers"),
    "name": ("run.name", str, "run name (the same name resumes)"),
    "storage_path": ("run.storage_path", str, "checkpoint storage: path, s3:// or gs://"),
    "tracking_uri": ("tracking.tracking_uri", str, "MLflow tracking URI"),
    "experiment": ("tracking.experiment", str, "MLflow experiment"),
}


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="fine-tune a MoViNet (or the frame baseline) with Ray Train + MLflow",
        description="Train on the connected Ray cluster ($RAY_ADDRESS; else a local Ray). "
                    "Settings: the config's defaults, then --config, then key=value "
                    "overrides, then flags.")
    p.add_argument("--config", default=None, help="YAML config (see docs/train.md)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. optim.lr=3e-3 data.frames=16")
    for flag, (key, kind, text) in FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=None,
                       help=f"{text} ({key})")
    p.add_argument("--freeze-backbone", action="store_true", default=None,
                   help="train only the classifier (model.freeze_backbone)")
    p.add_argument("--quantization-friendly", action="store_true", default=None,
                   help="ReLU6, no squeeze-excitation (model.quantization_friendly)")
    p.add_argument("--use-gpu", action="store_true", default=None,
                   help="one GPU per worker, DDP over NCCL (scaling.use_gpu)")
    p.set_defaults(func=_train)

    runs = sub.add_parser("runs", help="training runs in MLflow")
    rsub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    rsub.required = True
    c = rsub.add_parser("compare", help="a table of training runs: model, params, best top-1")
    c.add_argument("--experiment", default=None, help="one experiment (default: all)")
    c.add_argument("--tracking-uri", default=None)
    c.set_defaults(func=_compare)

    u = sub.add_parser("ui", help="the MLflow UI on our store (mlflow server on 127.0.0.1)")
    u.add_argument("--tracking-uri", default=None,
                   help="database store (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--artifacts", default=None,
                   help="artifact folder served (default: mlartifacts next to the database)")
    u.set_defaults(func=_ui)


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` of a ``movinet train`` command line."""
    from ..config import load_config
    from .config import TrainConfig

    overrides = list(args.overrides)
    for flag, (key, _, _) in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.freeze_backbone:
        overrides.append("model.freeze_backbone=true")
    if args.quantization_friendly:
        overrides.append("model.quantization_friendly=true")
    if args.use_gpu:
        overrides.append("scaling.use_gpu=true")
    return load_config(TrainConfig, args.config, overrides)


def _train(args) -> int:
    from .job import main

    result = main(config_from_args(args))
    print(f"{result.run_name}: best val top-1 {result.best_val_top1:.3f} at step "
          f"{result.best_step}/{result.steps}; model {result.model_uri}")
    return 0


COMPARE_COLUMNS = ["run", "model", "status", "init", "lr", "batch", "input", "best_top1",
                   "steps", "time_s"]


def _compare(args) -> int:
    from ..tracking import compare_runs, format_table

    rows = compare_runs(args.experiment, args.tracking_uri)
    print(format_table(rows, COMPARE_COLUMNS) if rows else "no training runs")
    return 0


def _ui(args) -> int:
    from ..tracking import ui_command

    cmd, env = ui_command(args.tracking_uri, args.host, args.port, args.artifacts)
    log.info("MLflow UI on http://%s:%d (%s)", args.host, args.port, " ".join(cmd[2:]))
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
