"""``movinet export`` and ``movinet quantize``: deployable variants of a stream model."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)
PT2_INFO = "movinet_ray.info"


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a stream model's step (frames, state -> logits, state)",
        description="ONNX (runs in ONNX Runtime anywhere; ModelInfo in the graph metadata) or "
                    "torch.export .pt2 (AOTInductor, ExecuTorch, pt2e). BatchNorm is folded; "
                    "the batch dimension is dynamic; one frame per step.")
    p.add_argument("--model", required=True,
                   help="checkpoint .pt, models:/name@alias, models:/name/N or runs:/id/name")
    p.add_argument("--format", default="onnx", choices=["onnx", "pt2"])
    p.add_argument("--out", required=True, help="output file (.onnx / .pt2)")
    p.add_argument("--resolution", type=int, default=None,
                   help="frame side (default: the model's resolution)")
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "quantize", help="fp16 / int8 (PTQ, QAT) / ONNX variants of a trained stream model, "
                         "measured and registered in MLflow",
        description="Runs jobs/quantize.py: fields of QuantizeConfig from --config YAML and "
                    "dotted key=value overrides, e.g. model=models:/motion@candidate "
                    "manifest=data/motion/manifest.parquet variants=[int8,onnx].")
    p.add_argument("--config", default=None, help="YAML file (see jobs/configs/quantize.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.set_defaults(func=_quantize)


def _export(args) -> int:
    import torch

    from ..tracking import resolve_model
    from .export import export_stream_step
    from .quantize import export_onnx_fp32, fused_copy
    from .runtime import with_variant

    model, info = resolve_model(args.model, tracking_uri=args.tracking_uri)
    if not getattr(model, "stateful", False):
        raise SystemExit(f"{args.model}: not an eager stream (causal) model")
    res = args.resolution or info.resolution
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "onnx":
        export_onnx_fp32(model, out, info, res, res)
    else:
        program = export_stream_step(fused_copy(model), res, res)
        meta = with_variant(info, "fp32", "torch.export", height=res, width=res,
                            state_names=list(model.state_shapes(res, res)))
        torch.export.save(program, str(out), extra_files={PT2_INFO: json.dumps(meta.to_dict())})
    log.info("exported %s (%s, %dx%d) -> %s (%.2f MB)", args.model, args.format, res, res, out,
             out.stat().st_size / 1e6)
    print(out)
    return 0


def load_job(name: str):
    """``jobs/<name>.py`` as a module: importable as ``jobs.<name>`` from the repository root,
    else loaded from the checkout this package lives in (editable installs)."""
    try:
        return importlib.import_module(f"jobs.{name}")
    except ModuleNotFoundError:
        path = Path(__file__).resolve().parents[2] / "jobs" / f"{name}.py"
        if not path.exists():
            raise
        spec = importlib.util.spec_from_file_location(f"movinet_jobs_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


def _quantize(args) -> int:
    from ..config import load_config

    job = load_job("quantize")
    cfg = load_config(job.QuantizeConfig, args.config, args.overrides)
    job.main(cfg)
    return 0
