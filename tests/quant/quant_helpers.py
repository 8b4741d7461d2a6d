"""A tiny motion dataset a quantization-friendly A0 learns in seconds, and its trained model.

Three classes only motion tells apart - a square moving left, moving right, or standing
still - on a noisy background, written as H.264 videos with a manifest, so the quantize job
reads them through the data layer like any dataset. (The data layer's synthetic set is harder:
a from-scratch model needs far more than a test's budget to learn it.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from movinet_ray.data import ClipMaker, ClipSampling, Manifest, write_manifest
from movinet_ray.data.dataset import manifest_items
from movinet_ray.data.synthetic import write_video

CLASSES = ("move_left", "move_right", "static")
SIZE = 32          # frames are SIZE x SIZE
VIDEO_FRAMES = 12
CLIP = ClipSampling(frames=8)


def squares_video(label: int, rng: np.random.Generator) -> list[np.ndarray]:
    speed = (-3, 3, 0)[label]
    side = 8
    x0, y0 = rng.integers(0, SIZE - side, 2)
    colour = rng.integers(110, 256, 3).astype(np.uint8)
    frames = []
    for t in range(VIDEO_FRAMES):
        img = rng.integers(0, 80, (SIZE, SIZE, 3)).astype(np.uint8)
        x = int(x0 + speed * t) % (SIZE - side)
        img[y0:y0 + side, x:x + side] = colour
        frames.append(img)
    return frames


def make_squares_dataset(root: Path, train_per_class: int = 48, val_per_class: int = 16,
                         seed: int = 0) -> Path:
    """Write the videos and ``manifest.parquet`` under ``root``; returns the manifest path."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            for i in range(n):
                rel = f"{split}/{name}_{i:03d}.mp4"
                (root / split).mkdir(parents=True, exist_ok=True)
                write_video(root / rel, squares_video(label, rng), fps=10, crf=10)
                rows.append({"path": rel, "label": name, "split": split,
                             "video_id": f"{split}-{name}-{i}"})
    path = root / "manifest.parquet"
    write_manifest(Manifest.from_rows(rows, classes=list(CLASSES), base=str(root)), path)
    return path


def load_clips(manifest: Manifest, split: str, train: bool = False, epoch: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 clips ``[N, 3, 8, SIZE, SIZE]`` and labels of a split, through the data layer."""
    maker = ClipMaker(CLIP, SIZE, train, seed=0, epoch=epoch, on_error="raise")
    rows = [r for item in manifest_items(manifest, split) for r in maker(item)]
    clips = torch.from_numpy(np.stack([r["clip"] for r in rows]))
    return clips, torch.tensor([int(r["label"]) for r in rows])


def shuffled_batches(clips: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int):
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return [(clips[order[i:i + batch_size]], labels[order[i:i + batch_size]])
            for i in range(0, len(labels), batch_size)]


@torch.no_grad()
def recalibrate_bn_(model, clips: torch.Tensor, batch_size: int = 32) -> None:
    """Exact BatchNorm statistics over ``clips`` (cumulative average), eval mode after."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(clips), batch_size):
        model(clips[i:i + batch_size].float() / 255.0)
    for m in bns:
        m.momentum = model.cfg.bn_momentum
    model.eval()
