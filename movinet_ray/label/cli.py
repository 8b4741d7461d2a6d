"""``movinet label`` (bulk labelling on Ray) and ``movinet plot-timeline``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from .config import LabelConfig

log = logging.getLogger(__name__)

_DEFAULTS = LabelConfig()
# flag -> (type, help); every default shown comes from LabelConfig.
_OPTIONS = {
    "chunk_frames": (int, "frames decoded and fed per stream at a time; the timeline step"),
    "fps": (float, "frame rate the model sees (default: the model's own)"),
    "top_k": (int, "labels kept per video and per timeline row"),
    "min_score": (float, "top-1 probability under which the label is 'unknown'"),
    "batch_streams": (int, "videos in lockstep per actor (stream-engine slots)"),
    "batch_videos": (int, "videos per map_batches call (one output part each)"),
    "num_actors": (int, "labelling actors (default: as many as the cluster's CPUs, or GPUs, "
                          "allow)"),
    "cpus_per_actor": (int, "CPUs (and torch threads) per actor"),
    "limit": (int, "label at most this many not-yet-labelled videos (default: all)"),
    "variant": (str, "variant of --tf-checkpoint"),
    "backend": (str, "decoder: pyav, decord or auto (decord, PyAV fallback)"),
    "tracking_uri": (str, "MLflow tracking URI for models:/ and runs:/ (default: "
                             "$MLFLOW_TRACKING_URI, else ./mlflow.db)"),
    "ray_address": (str, "Ray cluster address (default: $RAY_ADDRESS, else a local Ray)"),
}


def register(sub) -> None:
    p = sub.add_parser(
        "label", help="label a video archive with a stream model (Ray Data)",
        description="Label every video of a folder, glob or manifest with a stream MoViNet on "
                    "Ray Data. Writes videos/ (one row per video) and timeline/ (one row per "
                    "chunk) as Parquet under --out; a rerun skips videos already there.")
    p.add_argument("input", nargs="?", help="folder, glob or manifest (.parquet/.csv); "
                                            "local or s3:// / gs://")
    p.add_argument("--out", help="output folder")
    p.add_argument("--model", help=".pt checkpoint, models:/name@alias or runs:/id/name")
    p.add_argument("--tf-checkpoint", help="official Kinetics-600 TF checkpoint (+ --variant)")
    p.add_argument("--config", help="YAML file with LabelConfig fields")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields")
    for name, (kind, text) in _OPTIONS.items():
        default = getattr(_DEFAULTS, name)
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=text if default is None else f"{text} (default: {default})")
    p.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per actor")
    p.add_argument("--retry-errors", action="store_true", default=None,
                   help="label again the videos recorded as errors")
    p.add_argument("--no-fuse-bn", dest="fuse_bn", action="store_false", default=None,
                   help="keep BatchNorm separate (default: fused for speed)")
    p.set_defaults(func=_label)

    p = sub.add_parser("plot-timeline", help="plot one labelled video's class scores over time")
    p.add_argument("--out", required=True, help="the labelling output folder")
    p.add_argument("--video-id", required=True)
    p.add_argument("--png", required=True, help="image to write")
    p.add_argument("--classes", type=int, default=5, help="how many classes to draw")
    p.set_defaults(func=_plot)


def config_from_args(args: argparse.Namespace) -> LabelConfig:
    """Defaults, then ``--config``, then ``--set``, then the explicit flags."""
    from ..config import load_config

    cfg = load_config(LabelConfig, args.config, args.set)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(LabelConfig)
             if getattr(args, f.name, None) is not None}
    return dataclasses.replace(cfg, **given)


def _label(args) -> int:
    from ..ray_init import init_ray
    from .job import run_label

    cfg = config_from_args(args)
    cfg.check_runnable()
    log.info("label config: %s", dataclasses.asdict(cfg))
    init_ray(cfg.ray_address)
    summary = run_label(cfg)
    print(json.dumps(summary, indent=1))
    return 0


def _plot(args) -> int:
    from .plot import plot_timeline

    print(plot_timeline(args.out, args.video_id, args.png, args.classes))
    return 0
