"""A0-stream from scratch in one process on the synthetic directions: does the recipe learn?

The control for the Ray Train job (`benchmarks/train_quality.py`): the same model code, data
layer and recipe, without Ray, DDP or the cosine schedule (warm-up, then a cosine over
``--schedule-steps``, by default 3x the run, so the LR stays near its peak). Fresh random
clips every pass; validation on the centred clip of every validation video, every 100 steps.

    python benchmarks/train_inprocess.py --videos-per-class 200 --fps 2.5 --batch 16 \
        --lr 3e-3 --steps 1300 --schedule-steps 3000 --threads 1

(the run quoted in docs/train.md: 87 % at step 700, 95 % at 1100). Prints the curve and
writes benchmarks/results/train_inprocess.json.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_results  # noqa: E402

CLASSES = ("move_left", "move_right", "move_up", "move_down")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos-per-class", type=int, default=200)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--fps", type=float, default=2.5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--schedule-steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    from movinet_ray.data import ClipMaker, ClipSampling, generate_synthetic_dataset, read_manifest
    from movinet_ray.data.dataset import manifest_items
    from movinet_ray.model import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    curve = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = read_manifest(generate_synthetic_dataset(
            Path(tmp), CLASSES, videos_per_class=args.videos_per_class, seed=0, size="64x64",
            fps=10, seconds=4, val_fraction=0.25, distractors=0, noise=2))
        sampling = ClipSampling(frames=args.frames, fps=args.fps)

        def clips(split: str, train: bool, epoch: int):
            maker = ClipMaker(sampling, args.resolution, train, seed=0, epoch=epoch,
                              on_error="raise")
            rows = [r for item in manifest_items(manifest, split) for r in maker(item)]
            return (torch.from_numpy(np.stack([r["clip"] for r in rows])),
                    torch.tensor([int(r["label"]) for r in rows]))

        val_x, val_y = clips("val", False, 0)
        model = create_model("a0", "stream", num_classes=len(CLASSES), bn_momentum=0.1,
                             dropout=0.0)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
        horizon = args.schedule_steps or 3 * args.steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 15) * 0.5 * (
            1 + math.cos(math.pi * min(s, horizon) / horizon)))
        start, step, epoch = time.perf_counter(), 0, 0
        while step < args.steps:
            x, y = clips("train", True, epoch)
            if len(y) < args.batch:
                raise SystemExit(f"{len(y)} training clips, fewer than a batch of {args.batch}")
            epoch += 1
            order = torch.randperm(len(y))
            for i in range(0, len(y) - args.batch + 1, args.batch):
                idx = order[i:i + args.batch]
                logits, _ = model(x[idx].float() / 255)
                loss = F.cross_entropy(logits, y[idx], label_smoothing=0.1)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                if step % 100 == 0:
                    model.eval()
                    with torch.no_grad():
                        top1 = (model(val_x.float() / 255)[0].argmax(1) == val_y).float().mean()
                    model.train()
                    curve.append({"step": step, "loss": loss.item(), "val_top1": top1.item(),
                                  "seconds": time.perf_counter() - start})
                    print(curve[-1], flush=True)
                if step >= args.steps:
                    break
    path = write_results("train_inprocess", {"args": vars(args), "curve": curve})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
