"""MoViNet inference speed and memory on this machine.

* stream models frame by frame (A0/A1/A2 at native resolution; 1 and 8 streams): frames/s
* base models on whole clips (50 frames): clips/s and frames/s
* peak memory: streaming a 10-minute video vs whole-clip inference on growing clip lengths

    python benchmarks/model_speed.py [--quick] [--compile]

Prints markdown tables and writes benchmarks/results/model_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, median_time, write_results  # noqa: E402

from movinet_ray.model import VARIANTS, create_model  # noqa: E402


def stream_fps(variant: str, batch: int, fused: bool, compiled: bool, steps: int) -> float:
    torch.manual_seed(0)
    res = VARIANTS[variant].resolution
    model = create_model(variant, "stream").eval()
    if fused:
        model.fuse_bn_()
    step = torch.compile(model) if compiled else model
    frame = torch.rand(batch, 3, 1, res, res)
    state = [model.init_state(batch, res, res)]

    def one():
        _, state[0] = step(frame, state[0])

    with torch.inference_mode():
        seconds = median_time(one, steps, warmup=10 if compiled else 5)
    return batch / seconds


def base_throughput(variant: str, frames: int, fused: bool, repeats: int) -> float:
    torch.manual_seed(0)
    res = VARIANTS[variant].resolution
    model = create_model(variant, "base").eval()
    if fused:
        model.fuse_bn_()
    clip = torch.rand(1, 3, frames, res, res)
    with torch.inference_mode():
        seconds = median_time(lambda: model(clip), repeats, warmup=1)
    return 1.0 / seconds


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, os, sys, threading, time, torch
    from movinet_ray.model import create_model
    torch.set_num_threads({threads})
    kind, frames, res = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    page = os.sysconf("SC_PAGE_SIZE") / 2**20

    def rss():  # current resident set (MiB); ru_maxrss would be the lifetime peak
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    peak = [0.0]
    def sample():
        while True:
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)
    threading.Thread(target=sample, daemon=True).start()
    torch.manual_seed(0)
    with torch.inference_mode():
        if kind == "stream":
            model = create_model("a0", "stream").eval()
            state = model.init_state(1, res, res)
            frame = torch.rand(1, 3, 1, res, res)
            _, state = model(frame, state)
            time.sleep(0.05)
            base = rss(); peak[0] = base
            marks = {{}}
            for i in range(1, frames + 1):
                _, state = model(frame, state)
                if i in (frames // 10, frames // 2, frames):
                    marks[i] = round(peak[0] - base, 1)
        else:
            model = create_model("a0", "base").eval()
            model(torch.rand(1, 3, 1, res, res))
            time.sleep(0.05)
            base = rss(); peak[0] = base
            model(torch.rand(1, 3, frames, res, res))
            marks = {{}}
    time.sleep(0.01)
    print(json.dumps({{"peak_mib": round(peak[0] - base, 1), "marks": marks}}))
""")


def peak_memory(kind: str, frames: int, res: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT.format(threads=torch.get_num_threads()), kind,
         str(frames), str(res)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    steps = 20 if args.quick else 100

    stream_rows = []
    for variant in ("a0", "a1", "a2"):
        for batch in (1, 8):
            row = {"model": f"{variant}-stream", "input": VARIANTS[variant].resolution,
                   "streams": batch,
                   "eager frames/s": stream_fps(variant, batch, False, False, steps),
                   "eager+fused BN frames/s": stream_fps(variant, batch, True, False, steps)}
            if args.compile and variant == "a0":
                row["torch.compile frames/s"] = stream_fps(variant, batch, True, True, steps)
            stream_rows.append(row)
            print(row, flush=True)

    base_rows = []
    for variant in ("a0", "a1", "a2"):
        clips = base_throughput(variant, 50, True, 2 if args.quick else 5)
        base_rows.append({"model": f"{variant}-base", "input": f"50x{VARIANTS[variant].resolution}²",
                          "clips/s": clips, "frames/s": clips * 50})
        print(base_rows[-1], flush=True)

    minutes = 1 if args.quick else 10
    stream_frames = int(minutes * 60 * VARIANTS["a0"].fps)
    memory_rows = [{"inference": f"a0-stream, {minutes} min video frame by frame "
                                 f"({stream_frames} frames)",
                    **peak_memory("stream", stream_frames, 172)}]
    for frames in ((8, 32) if args.quick else (8, 32, 64, 128, 256)):
        memory_rows.append({"inference": f"a0-base, whole clip of {frames} frames",
                            **peak_memory("base", frames, 172)})
    for row in memory_rows:
        row["peak MiB above model"] = row.pop("peak_mib")
        print(row, flush=True)

    print("\n## Stream models, frame by frame\n")
    cols = ["model", "input", "streams", "eager frames/s", "eager+fused BN frames/s"]
    if args.compile:
        cols.append("torch.compile frames/s")
    print(markdown_table(stream_rows, cols))
    print("\n## Base models, whole clips\n")
    print(markdown_table(base_rows, ["model", "input", "clips/s", "frames/s"]))
    print("\n## Peak memory (RSS)\n")
    print(markdown_table(memory_rows, ["inference", "peak MiB above model"]))
    path = write_results("model_speed", {"stream": stream_rows, "base": base_rows,
                                          "memory": memory_rows, "quick": args.quick})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
