"""Can A0-stream learn the rotation direction on its own? rotate_cw vs rotate_ccw only.

The full preset of `train_quality.py` scores every class but this pair (docs/train.md). This
probe trains the same recipe on the pair alone (the full dataset's 400 rotating videos,
prepared at 5 fps) so the only thing to learn is the direction, and reports the training
loss (ln 2 = 0.693 is a coin toss) beside the validation top-1 (chance 0.5):

    python benchmarks/rotation_probe.py --data DIR                        # 64 px, as recorded
    python benchmarks/rotation_probe.py --data DIR --hflip-swap           # mirrored clips relabelled
    python benchmarks/rotation_probe.py --data DIR --hflip-swap --resolution 96
    python benchmarks/rotation_probe.py --data DIR --hflip-swap --reverse-swap  # and backwards

``--data`` is a folder holding the full synthetic dataset (`train_quality.py --data DIR`
keeps it); without it the script generates the two classes alone in the full preset's
formats. A loss far below ln 2 with validation at chance is memorising the training videos;
``--hflip-swap`` labels a mirrored clockwise clip counter-clockwise, so every object and scene
appears under both labels and only the direction can lower the loss; ``--reverse-swap`` labels
a clockwise clip played backwards counter-clockwise: the very same frames under both labels.

Writes benchmarks/results/rotation_probe_<resolution>[_flip][_reverse].json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, write_results  # noqa: E402

PAIR = ("rotate_cw", "rotate_ccw")
CLIP_FPS = 5.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None,
                   help="folder with the full synthetic dataset (default: generate the pair)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--steps", type=int, default=450)
    p.add_argument("--hflip-swap", action="store_true",
                   help="flip clips at random and label a flipped clip as the other rotation")
    p.add_argument("--reverse-swap", action="store_true",
                   help="play clips backwards at random and label those as the other rotation")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from movinet_ray.data import (AugmentConfig, Manifest, generate_synthetic_dataset,
                                  prepare_dataset, read_manifest, write_manifest)
    from movinet_ray.ray_init import init_ray
    from movinet_ray.tracking import setup_mlflow
    from movinet_ray.train.demo import motion_config
    from movinet_ray.train.job import train

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.data or work / "data"
        if not (data / "manifest.parquet").exists():
            generate_synthetic_dataset(data, PAIR, videos_per_class=200, seed=args.seed,
                                       val_fraction=0.25, workers=os.cpu_count() or 1)
        rows = [r for r in read_manifest(data / "manifest.parquet").rows() if r["label"] in PAIR]
        pair = write_manifest(Manifest.from_rows(rows, PAIR), work / "pair.parquet")
        init_ray("local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        size = f"{args.resolution}x{args.resolution}"
        prepared = prepare_dataset(read_manifest(pair), work / f"prepared-{size}", CLIP_FPS,
                                   size=size)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        cfg = motion_config(Path(prepared.manifest_path), work, "a0-stream", uri,
                            seed=args.seed, steps=args.steps)
        augmentation = AugmentConfig(
            random_resized_crop=False, hflip=args.hflip_swap,
            hflip_swap=(PAIR,) if args.hflip_swap else (), reverse=args.reverse_swap,
            reverse_swap=(PAIR,) if args.reverse_swap else ())
        cfg = dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, fps=CLIP_FPS, resolution=args.resolution,
                                          augment=args.hflip_swap or args.reverse_swap,
                                          augmentation=augmentation),
            tracking=dataclasses.replace(cfg.tracking, register=False))
        start = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - start
        client = setup_mlflow(uri).MlflowClient()
        losses, evals = ([(m.step, m.value) for m in sorted(
            client.get_metric_history(result.run_id, key), key=lambda m: m.step)]
            for key in ("train/loss", "val/top1"))
    window = max(1, args.steps // 6)
    curve = [{"steps": f"{lo + 1}-{lo + window}",
              "train_loss": statistics.mean(v for s, v in losses if lo < s <= lo + window)}
             for lo in range(0, args.steps, window)
             if any(lo < s <= lo + window for s, _ in losses)]
    print(f"\nrotate_cw vs rotate_ccw, {len(rows)} videos, {args.resolution} px, 8 frames at "
          f"{CLIP_FPS:g} fps, hflip_swap={args.hflip_swap}, "
          f"reverse_swap={args.reverse_swap}, {wall:.0f} s")
    print(markdown_table(curve, ["steps", "train_loss"]))
    print(markdown_table([{"step": s, "val_top1": v} for s, v in evals], ["step", "val_top1"]))
    name = (f"rotation_probe_{args.resolution}" + ("_flip" if args.hflip_swap else "")
            + ("_reverse" if args.reverse_swap else ""))
    path = write_results(name, {"resolution": args.resolution, "clip_fps": CLIP_FPS,
                                "steps": args.steps, "hflip_swap": args.hflip_swap,
                                "reverse_swap": args.reverse_swap,
                                "videos": len(rows), "wall_s": wall, "train_loss": curve,
                                "val_top1": [{"step": s, "value": v} for s, v in evals]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
