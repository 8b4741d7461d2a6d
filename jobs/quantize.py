"""Quantize a trained stream MoViNet into every deployable variant, tracked side by side.

    movinet quantize --config jobs/configs/quantize.yaml model=models:/motion@candidate \
        manifest=data/motion/manifest.parquet
    python jobs/quantize.py --config jobs/configs/quantize.yaml key=value ...   # ray job submit

One MLflow run (child of the training run) holds, per variant - fp32 (eager), fp16, onnx
(fp32 ONNX Runtime), int8 (post-training, ONNX Runtime), int8-qat (quantization-aware
fine-tune, then the same conversion) - the artifact as a LoggedModel with its size,
validation top-1 on the same clips and frames/s on this machine, plus a comparison table.
Each variant is registered under the model's name with its own alias (``@fp32``, ``@fp16``,
``@onnx``, ``@int8``, ``@int8-qat``) and loads back with ``resolve_model``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("movinet.quantize")

# name -> (file, alias); the order of the comparison table.
VARIANTS = {
    "fp32": ("fp32.pt", "fp32"),
    "fp16": ("fp16.pt", "fp16"),
    "onnx": ("fp32.onnx", "onnx"),
    "int8": ("int8.onnx", "int8"),
    "int8-qat": ("int8_qat.onnx", "int8-qat"),
}


@dataclass(frozen=True)
class CalibrationConfig:
    clips: int = 256          # clips of the split, each streamed frame by frame
    split: str = "train"
    batch_size: int = 8
    method: str = "MinMax"    # MinMax | Percentile | Entropy


@dataclass(frozen=True)
class QATConfig:
    epochs: int = 2
    lr: float = 1e-4
    batch_size: int = 8
    clips_per_epoch: int = 512
    split: str = "train"
    calibration_clips: int = 256  # for the conversion after fine-tuning


@dataclass(frozen=True)
class BenchmarkConfig:
    batch: int = 1            # streams per call
    steps: int = 20
    threads: int = 2          # torch and ONNX Runtime intra-op threads


@dataclass(frozen=True)
class QuantizeConfig:
    model: str = ""           # .pt checkpoint, models:/name@alias, models:/name/N, runs:/id/name
    manifest: str = ""        # labelled videos (calibration, QAT, validation)
    out_dir: str = "runs/quantize"
    variants: tuple[str, ...] = tuple(VARIANTS)
    frames: int = 16          # frames per calibration / validation / QAT clip
    frame_stride: int = 1
    fps: float | None = None  # default: the model's fps
    val_split: str = "val"
    val_clips: int | None = None
    op_types: tuple[str, ...] = ("Conv", "Gemm", "MatMul")  # empty: quantize every op
    seed: int = 0
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    qat: QATConfig = field(default_factory=QATConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    tracking_uri: str | None = None
    experiment: str | None = None     # default: the training run's experiment
    registered_name: str | None = None  # default: the name in models:/name@alias
    train_run_id: str | None = None   # default: the run that produced the source model
    log_mlflow: bool = True


# --------------------------------------------------------------------------- building blocks


class Clips:
    """Clips of one split of the manifest, decoded through the data layer (uint8)."""

    def __init__(self, cfg: QuantizeConfig, info):
        from movinet_ray.data import ClipSampling, read_manifest

        self.manifest = read_manifest(cfg.manifest)
        if tuple(self.manifest.classes.names) != tuple(info.class_names):
            raise ValueError(f"{cfg.manifest}: classes {list(self.manifest.classes.names)} "
                             f"differ from the model's {list(info.class_names)}")
        self.sampling = ClipSampling(frames=cfg.frames, frame_stride=cfg.frame_stride,
                                     fps=cfg.fps if cfg.fps is not None else info.fps,
                                     discard_threshold=0.0)
        self.size, self.seed = info.resolution, cfg.seed

    def load(self, split: str, limit: int | None, train: bool = False, epoch: int = 0):
        import numpy as np
        import torch

        from movinet_ray.data import ClipMaker
        from movinet_ray.data.dataset import manifest_items

        items = manifest_items(self.manifest, split)
        rng = np.random.default_rng([self.seed, epoch])
        if limit is not None and limit < len(items):
            items = [items[i] for i in sorted(rng.choice(len(items), limit, replace=False))]
        maker = ClipMaker(self.sampling, self.size, train, self.seed, None, epoch)
        rows = [r for item in items for r in maker(item)]
        if not rows:
            raise ValueError(f"no clips in split {split!r} of the manifest")
        clips = [torch.from_numpy(r["clip"]) for r in rows]
        return clips, [int(r["label"]) for r in rows]


def build_variant(name: str, path: Path, model, info, cfg: QuantizeConfig, clips: Clips,
                  built: dict[str, Path]):
    """Write variant ``name`` of ``model`` to ``path`` (``built``: variants written so far)."""
    from movinet_ray.model import save_model
    from movinet_ray.model import quantize as q
    from movinet_ray.model.runtime import with_variant

    op_types = tuple(cfg.op_types) or None
    if name == "fp32":
        return save_model(path, model, with_variant(info, "fp32", "torch"))
    if name == "fp16":
        return q.save_fp16(model, path, info)
    if name == "onnx":
        return q.export_onnx_fp32(model, path, info)
    if name == "int8":
        calib, _ = clips.load(cfg.calibration.split, cfg.calibration.clips)
        return q.quantize_int8(model, path, info, calib, batch_size=cfg.calibration.batch_size,
                               op_types=op_types, method=cfg.calibration.method,
                               fp32_onnx=built.get("onnx"))
    if name == "int8-qat":
        qc = cfg.qat

        def epoch_batches(epoch):
            import torch

            data, labels = clips.load(qc.split, qc.clips_per_epoch, train=True, epoch=epoch + 1)
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
            return [(torch.stack([data[i] for i in order[s:s + qc.batch_size]]),
                     torch.tensor([labels[i] for i in order[s:s + qc.batch_size]]))
                    for s in range(0, len(order), qc.batch_size)]

        tuned = q.quantize_aware_finetune(
            model, epoch_batches, qc.epochs, qc.lr,
            on_epoch=lambda e, loss: log.info("QAT epoch %d: loss %.4f", e, loss))
        calib, _ = clips.load(cfg.calibration.split, qc.calibration_clips)
        return q.quantize_int8(tuned, path, info, calib, batch_size=cfg.calibration.batch_size,
                               op_types=op_types, method=cfg.calibration.method, source="qat")
    raise ValueError(f"unknown variant {name!r}; choose from {list(VARIANTS)}")


def measure(name: str, path: Path, cfg: QuantizeConfig, val) -> dict:
    """Size, validation top-1 and frames/s of one variant, loaded the way users load it."""
    import torch

    from movinet_ray.model import quantize as q
    from movinet_ray.model.runtime import TorchStreamModel, load_variant, precision_of, runtime_of

    threads = cfg.benchmark.threads
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, info = load_variant(path, threads=threads)
        if name == "fp32":  # what users run today: the eager model, BatchNorm folded
            model = TorchStreamModel(model, torch.float32, info)
        res = info.resolution
        top1 = q.evaluate_top1(model, val[0], val[1], batch_size=8)
        fps = q.frames_per_second(model, res, res, batch=cfg.benchmark.batch,
                                  steps=cfg.benchmark.steps)
    finally:
        torch.set_num_threads(previous)
    return {"variant": name, "precision": precision_of(info), "runtime": runtime_of(info),
            "size_mb": round(q.file_size_mb(path), 3), "val_top1": round(top1, 4),
            "frames_per_s": round(fps, 1), "file": path.name}


def comparison_table(rows: list[dict]) -> list[dict]:
    """Add speed-ups against eager PyTorch fp32 and ONNX Runtime fp32, and top-1 deltas."""
    by = {r["variant"]: r for r in rows}
    out = []
    for r in rows:
        r = dict(r)
        for ref, key in (("fp32", "speedup_vs_eager_fp32"), ("onnx", "speedup_vs_ort_fp32")):
            if ref in by and by[ref]["frames_per_s"]:
                r[key] = round(r["frames_per_s"] / by[ref]["frames_per_s"], 2)
        if "fp32" in by:
            r["top1_delta_pts"] = round(100 * (r["val_top1"] - by["fp32"]["val_top1"]), 2)
        out.append(r)
    return out


def markdown(rows: list[dict]) -> str:
    cols = ["variant", "precision", "runtime", "size_mb", "val_top1", "top1_delta_pts",
            "frames_per_s", "speedup_vs_eager_fp32", "speedup_vs_ort_fp32"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the job


def main(cfg: QuantizeConfig) -> dict:
    """Build, measure, log and register every variant in ``cfg.variants``; returns a summary
    ``{"rows": [...], "run_id": ..., "versions": {variant: version}}``."""
    from movinet_ray import tracking
    from movinet_ray.config import to_dict

    if not cfg.model or not cfg.manifest:
        raise ValueError("model= and manifest= are required")
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    log.info("config: %s", json.dumps(to_dict(cfg)))
    model, info = tracking.resolve_model(cfg.model, tracking_uri=cfg.tracking_uri)
    if not getattr(model, "stateful", False) or getattr(model, "fused", True):
        raise ValueError(f"{cfg.model}: need an unfused float32 stream model checkpoint")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = Clips(cfg, info)
    val = clips.load(cfg.val_split, cfg.val_clips)
    rows, paths = [], {}
    for name in cfg.variants:
        start = time.perf_counter()
        paths[name] = build_variant(name, out / VARIANTS[name][0], model, info, cfg, clips,
                                    paths)
        rows.append({**measure(name, paths[name], cfg, val),
                     "build_s": round(time.perf_counter() - start, 1)})
        log.info("%s: %s", name, rows[-1])
    rows = comparison_table(rows)
    (out / "comparison.json").write_text(json.dumps(rows, indent=1))
    (out / "comparison.md").write_text(markdown(rows))
    summary = {"rows": rows, "run_id": None, "versions": {}}
    if cfg.log_mlflow:
        summary.update(log_run(cfg, info, rows, paths, out))
    print(markdown(rows))
    return summary


def log_run(cfg: QuantizeConfig, info, rows: list[dict], paths: dict, out: Path) -> dict:
    """One MLflow run, child of the training run: every variant as a registered LoggedModel."""
    from movinet_ray import tracking
    from movinet_ray.config import to_dict
    from movinet_ray.model.runtime import load_variant

    mlflow = tracking.setup_mlflow(cfg.tracking_uri)
    source = tracking.source_of(cfg.model)
    parent = cfg.train_run_id or source.get("run_id")
    name = cfg.registered_name or source.get("name")
    experiment = cfg.experiment
    if experiment is None and parent:
        experiment = mlflow.get_experiment(mlflow.get_run(parent).info.experiment_id).name
    tracking.setup_mlflow(cfg.tracking_uri, experiment or "movinet-quantize")
    tags = {"mlflow.parentRunId": parent} if parent else {}
    versions = {}
    with mlflow.start_run(run_name=f"quantize-{info.config.get('variant', 'model')}",
                          tags={**tags, "job": "quantize", "source_model": cfg.model}) as run:
        mlflow.log_params({k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v)
                           for k, v in tracking.flatten(to_dict(cfg)).items()})
        for row in rows:
            variant = row["variant"]
            _, vinfo = load_variant(paths[variant])
            metrics = {k: float(row[k]) for k in ("size_mb", "val_top1", "frames_per_s")}
            mlflow.log_metrics({f"{variant}_{k}": v for k, v in metrics.items()})
            params = {k: vinfo.extra[k] for k in ("precision", "runtime", "quant_method",
                                                  "quant_source", "calibration_steps")
                      if k in vinfo.extra}
            _, version = tracking.log_model(
                paths[variant], vinfo, name=f"movinet-{variant}", registered_model_name=name,
                aliases=(VARIANTS[variant][1],) if name else (), params=params,
                metrics=metrics, tags={"variant": variant})
            versions[variant] = version
        mlflow.log_dict(rows, "comparison.json")
        mlflow.log_text(markdown(rows), "comparison.md")
        mlflow.log_artifact(str(out / "comparison.json"), "tables")
    return {"run_id": run.info.run_id, "parent_run_id": parent, "registered_name": name,
            "versions": versions}


def parse_args(argv: list[str] | None = None) -> QuantizeConfig:
    from movinet_ray.config import load_config

    parser = argparse.ArgumentParser(prog="quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML file (fields of QuantizeConfig)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = parser.parse_args(argv)
    return load_config(QuantizeConfig, args.config, args.overrides)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(parse_args())
    sys.exit(0)
