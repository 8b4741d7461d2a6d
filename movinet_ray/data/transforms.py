"""Training augmentations on uint8 clips ``[3, T, H, W]``: one draw of random parameters per
clip (every frame gets the same crop, flip and colour change), from a numpy Generator that
the caller seeds from (seed, video_id, epoch) — see :func:`~movinet_ray.data.sampling.rng_for`.

Resizing uses the same kernel as decoding (torch's antialiased bilinear uint8 path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings.

    Attributes:
        random_resized_crop: Inception-style crop of a random area/aspect, resized to
            ``size x size``; off = centre crop.
        area: range of the crop area as a fraction of the frame.
        aspect: range of the crop aspect ratio (w / h), drawn log-uniformly.
        hflip: random horizontal flip with probability 0.5. Off by default: a mirror image
            changes direction-sensitive classes (move_left <-> move_right, rotate_cw <->
            rotate_ccw), so either leave it off or name those pairs in ``hflip_swap``.
        hflip_swap: pairs of class names a horizontal flip turns into each other; a flipped
            clip of one is labelled the other. Besides being right, it gives the network the
            same object and scene under both labels, so only the direction can tell them
            apart (needs ``hflip``).
        reverse: play the clip backwards with probability 0.5. Off by default: time
            reversal turns direction-sensitive classes into their opposites (move_left <->
            move_right, grow <-> shrink, rotate_cw <-> rotate_ccw, open <-> close), so name
            those pairs in ``reverse_swap``; classes not named keep their label (static).
        reverse_swap: pairs of class names time reversal turns into each other; a reversed
            clip of one is labelled the other. The same frames then carry both labels, so
            only their order can tell the classes apart (needs ``reverse``).
        brightness, contrast, saturation: colour jitter strengths: factors drawn uniformly
            from ``[1 - x, 1 + x]`` (0 = off), applied in this order.
    """

    random_resized_crop: bool = True
    area: tuple[float, float] = (0.08, 1.0)
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = False
    hflip_swap: tuple[tuple[str, str], ...] = ()
    reverse: bool = False
    reverse_swap: tuple[tuple[str, str], ...] = ()
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self):
        lo, hi = self.area
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"area must satisfy 0 < lo <= hi <= 1, got {self.area}")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"bad aspect range {self.aspect}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        _check_swap_pairs("hflip", self.hflip, self.hflip_swap)
        _check_swap_pairs("reverse", self.reverse, self.reverse_swap)

    def mirror_labels(self, classes: tuple[str, ...] | list[str]) -> tuple[int, ...]:
        """For each class index, the class its horizontal mirror image shows."""
        return _swap_map("hflip_swap", self.hflip_swap, classes)

    def reversal_labels(self, classes: tuple[str, ...] | list[str]) -> tuple[int, ...]:
        """For each class index, the class the clip played backwards shows."""
        return _swap_map("reverse_swap", self.reverse_swap, classes)


def _check_swap_pairs(flag: str, enabled: bool, pairs: tuple[tuple[str, str], ...]) -> None:
    name = f"{flag}_swap"
    if any(len(pair) != 2 or pair[0] == pair[1] for pair in pairs):
        raise ValueError(f"{name} takes pairs of two different classes, got {pairs}")
    named = [c for pair in pairs for c in pair]
    if len(set(named)) != len(named):
        raise ValueError(f"{name} names a class twice: {pairs}")
    if pairs and not enabled:
        raise ValueError(f"{name} needs {flag}=true")


def _swap_map(name: str, pairs: tuple[tuple[str, str], ...],
              classes: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """Class index -> class index, swapping each named pair (the rest map to themselves)."""
    classes = list(classes)
    unknown = sorted({c for pair in pairs for c in pair} - set(classes))
    if unknown:
        raise ValueError(f"{name} names {unknown}, not in the class list {classes}")
    swapped = list(range(len(classes)))
    for a, b in pairs:
        i, j = classes.index(a), classes.index(b)
        swapped[i], swapped[j] = j, i
    return tuple(swapped)


def resize(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``[3, T, H, W]`` -> ``[3, T, height, width]`` (antialiased bilinear)."""
    if tuple(clip.shape[-2:]) == (height, width):
        return clip
    x = clip.permute(1, 0, 2, 3).contiguous(memory_format=torch.channels_last)
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                      align_corners=False)
    return x.permute(1, 0, 2, 3).contiguous()


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window (offset ``(extent - size) // 2``)."""
    h, w = clip.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop {size} larger than the clip {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return clip[..., top:top + size, left:left + size]


def random_crop_box(height: int, width: int, area: tuple[float, float],
                    aspect: tuple[float, float],
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of an Inception-style random crop (torchvision's algorithm:
    10 tries, then the largest centred crop with the aspect clamped to the range)."""
    frame_area = height * width
    log_ratio = (math.log(aspect[0]), math.log(aspect[1]))
    for _ in range(10):
        target = frame_area * rng.uniform(area[0], area[1])
        ratio = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < aspect[0]:
        w, h = width, int(round(width / aspect[0]))
    elif in_ratio > aspect[1]:
        h, w = height, int(round(height * aspect[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def augment_clip(clip: torch.Tensor, size: int, cfg: AugmentConfig,
                 rng: np.random.Generator) -> torch.Tensor:
    """Augment one uint8 clip ``[3, T, H, W]`` to ``[3, T, size, size]`` (uint8).

    The random draws happen in a fixed order (crop, flip, reversal, colour; a step that is
    off draws nothing), so a generator seeded the same way gives the same clip.
    """
    return augment_labelled_clip(clip, -1, size, cfg, rng)[0]


def augment_labelled_clip(clip: torch.Tensor, label: int, size: int, cfg: AugmentConfig,
                          rng: np.random.Generator,
                          mirror: tuple[int, ...] | None = None,
                          reversal: tuple[int, ...] | None = None) -> tuple[torch.Tensor, int]:
    """:func:`augment_clip`, and the label the result shows: ``mirror[label]`` when the clip
    was flipped, ``reversal[label]`` when it was played backwards (the maps from
    :meth:`AugmentConfig.mirror_labels` / :meth:`AugmentConfig.reversal_labels`; None keeps
    the label)."""
    if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[0] != 3:
        raise ValueError(f"expected uint8 [3, T, H, W], got {clip.dtype} {tuple(clip.shape)}")
    h, w = clip.shape[-2:]
    if cfg.random_resized_crop:
        top, left, ch, cw = random_crop_box(h, w, cfg.area, cfg.aspect, rng)
        clip = resize(clip[..., top:top + ch, left:left + cw], size, size)
    else:
        short = min(h, w)
        if short != size:
            clip = resize(clip, *((size, max(1, round(w * size / h))) if h <= w
                                  else (max(1, round(h * size / w)), size)))
        clip = center_crop(clip, size)
    if cfg.hflip and rng.random() < 0.5:
        clip = clip.flip(-1)
        if mirror is not None and label >= 0:
            label = mirror[label]
    if cfg.reverse and rng.random() < 0.5:
        clip = clip.flip(1)
        if reversal is not None and label >= 0:
            label = reversal[label]
    factors = [float(rng.uniform(1 - s, 1 + s)) if s > 0 else 1.0
               for s in (cfg.brightness, cfg.contrast, cfg.saturation)]
    if any(f != 1.0 for f in factors):
        clip = color_jitter(clip, *factors)
    return clip.contiguous(), label


def color_jitter(clip: torch.Tensor, brightness: float, contrast: float,
                 saturation: float) -> torch.Tensor:
    """Brightness, contrast (around the clip's mean grey), saturation (blend with grey), on a
    uint8 clip ``[3, T, H, W]``; rounds back to uint8."""
    x = clip.to(torch.float32)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1, 1)
    if brightness != 1.0:
        x = (x * brightness).clamp_(0, 255)
    if contrast != 1.0:
        mean = (x * weights).sum(0).mean()
        x = (mean + (x - mean) * contrast).clamp_(0, 255)
    if saturation != 1.0:
        grey = (x * weights).sum(0, keepdim=True)
        x = (grey + (x - grey) * saturation).clamp_(0, 255)
    return x.round_().to(torch.uint8)
