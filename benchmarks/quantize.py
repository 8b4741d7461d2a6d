"""Speed and size of the stream-model variants on this CPU: A0/A1/A2-stream, quantization-friendly.

    python benchmarks/quantize.py [--variants a0 a1 a2] [--threads 2] [--batches 1 8]

Speed uses random weights with calibrated BatchNorm (speed does not depend on the weights;
int8 ranges come from a stateful calibration on random clips, which is enough for timing).
Accuracy is measured separately on a trained model by the quantize job (``tests/quant``: a
tiny A0 trained on a synthetic motion task), because no trained A0-A2 quantization-friendly
weights exist here.

Every configuration is timed in interleaved rounds (each round runs every runtime once), and
the best round is kept: the machine is shared, and interleaving keeps a burst of load from
landing on one runtime only. Writes ``benchmarks/results/quantize.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402
from movinet_ray.model import VARIANTS, model_info  # noqa: E402
from movinet_ray.model import quantize as q  # noqa: E402
from movinet_ray.model.runtime import OnnxStreamModel, TorchStreamModel  # noqa: E402


def randomized(variant: str, seed: int = 0):
    """A quantization-friendly stream model with random weights whose activations look trained:
    ReZero scalars on, BatchNorm statistics from a random clip (as tests.model.randomize_)."""
    torch.manual_seed(seed)
    model = q.create_quantizable_model(variant, num_classes=600)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 0:
                p.copy_(torch.rand((), generator=g) * 0.3 + 0.2)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 1.0
        model.train()
        model(torch.rand(2, 3, 8, 64, 64, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = model.cfg.bn_momentum
    return model.eval()


def build(variant: str, workdir: Path, calib_clips: int, frames: int) -> dict:
    model = randomized(variant)
    res = VARIANTS[variant].resolution
    info = model_info(model, [f"c{i}" for i in range(600)], resolution=res)
    g = torch.Generator().manual_seed(1)
    clips = [torch.rand(3, frames, res, res, generator=g) for _ in range(calib_clips)]
    paths = {"onnx-fp32": q.export_onnx_fp32(model, workdir / f"{variant}_fp32.onnx", info)}
    start = time.perf_counter()
    paths["onnx-int8"] = q.quantize_int8(model, workdir / f"{variant}_int8.onnx", info, clips,
                                         fp32_onnx=paths["onnx-fp32"])
    quant_s = time.perf_counter() - start
    paths["onnx-int8-allops"] = q.quantize_int8(model, workdir / f"{variant}_int8_all.onnx",
                                                info, clips, op_types=None,
                                                fp32_onnx=paths["onnx-fp32"])
    paths["fp32.pt"] = workdir / f"{variant}.pt"
    from movinet_ray.model import save_model

    save_model(paths["fp32.pt"], model, info)
    return {"model": model, "info": info, "paths": paths, "quant_s": quant_s, "res": res}


def time_runtimes(runtimes: dict, res: int, batch: int, rounds: int, steps: int) -> dict:
    best = {k: 0.0 for k in runtimes}
    for _ in range(rounds):
        for name, model in runtimes.items():
            fps = q.frames_per_second(model, res, res, batch=batch, steps=steps, warmup=2,
                                      repeats=1)
            best[name] = max(best[name], fps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["a0", "a1", "a2"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--calib-clips", type=int, default=16)
    parser.add_argument("--calib-frames", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="movinet-qbench-") as tmp:
        for variant in args.variants:
            built = build(variant, Path(tmp), args.calib_clips, args.calib_frames)
            paths, res = built["paths"], built["res"]
            runtimes = {
                "torch-fp32 (eager, BN folded)": TorchStreamModel(q.fused_copy(built["model"])),
                "onnx-fp32": OnnxStreamModel(paths["onnx-fp32"], threads=args.threads),
                "onnx-int8 (conv+dense)": OnnxStreamModel(paths["onnx-int8"],
                                                          threads=args.threads),
                "onnx-int8 (all ops)": OnnxStreamModel(paths["onnx-int8-allops"],
                                                       threads=args.threads),
            }
            sizes = {"torch-fp32 (eager, BN folded)": paths["fp32.pt"],
                     "onnx-fp32": paths["onnx-fp32"], "onnx-int8 (conv+dense)": paths["onnx-int8"],
                     "onnx-int8 (all ops)": paths["onnx-int8-allops"]}
            for batch in args.batches:
                fps = time_runtimes(runtimes, res, batch, args.rounds, args.steps)
                eager, ort32 = fps["torch-fp32 (eager, BN folded)"], fps["onnx-fp32"]
                for name, value in fps.items():
                    rows.append({"model": f"{variant}-stream {res}²", "batch": batch,
                                 "runtime": name, "frames/s": round(value, 1),
                                 "vs eager fp32": round(value / eager, 2),
                                 "vs ORT fp32": round(value / ort32, 2),
                                 "size MB": round(q.file_size_mb(sizes[name]), 2)})
                    print(rows[-1], flush=True)
    load_after = os.getloadavg()
    columns = ["model", "batch", "runtime", "frames/s", "vs eager fp32", "vs ORT fp32", "size MB"]
    table = markdown_table(rows, columns)
    print(table)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print("load average before/after:", load_before, load_after, "|", uptime)
    write_results("quantize", {"threads": args.threads, "rows": rows, "table": table,
                               "load_before": load_before, "load_after": load_after,
                               "uptime": uptime, "machine_extra": machine()})


if __name__ == "__main__":
    main()
