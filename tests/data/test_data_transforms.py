"""Augmentations: seeded reproducibility, one draw per clip, flip off by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from movinet_ray.data import AugmentConfig, augment_clip
from movinet_ray.data.sampling import rng_for
from movinet_ray.data.transforms import augment_labelled_clip, color_jitter, random_crop_box


def _clip(t=4, h=60, w=80):
    """Each frame: a horizontal ramp (column index) in red, frame index in green."""
    x = torch.zeros(3, t, h, w, dtype=torch.uint8)
    x[0] = torch.linspace(0, 255, w).round().to(torch.uint8)
    x[1] = (torch.arange(t) * 40).view(t, 1, 1).to(torch.uint8)
    x[2] = 128
    return x


def test_same_seed_same_clip_other_seed_other_clip():
    clip, cfg = _clip(), AugmentConfig()
    a = augment_clip(clip, 32, cfg, rng_for(1, "v", 0, "augment"))
    b = augment_clip(clip, 32, cfg, rng_for(1, "v", 0, "augment"))
    assert a.shape == (3, 4, 32, 32) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, augment_clip(clip, 32, cfg, rng_for(1, "v", 1, "augment")))
    assert not torch.equal(a, augment_clip(clip, 32, cfg, rng_for(2, "v", 0, "augment")))
    assert not torch.equal(a, augment_clip(clip, 32, cfg, rng_for(1, "w", 0, "augment")))


def test_every_frame_gets_the_same_parameters():
    clip = _clip(t=5)
    clip[1] = 0  # now all frames are identical
    out = augment_clip(clip, 32, AugmentConfig(hflip=True), rng_for(3, "v", 0, "augment"))
    for t in range(1, 5):
        assert torch.equal(out[:, t], out[:, 0])


def test_flip_is_off_by_default_and_flips_when_on():
    clip = _clip()
    no_jitter = dict(random_resized_crop=False, brightness=0, contrast=0, saturation=0)
    for seed in range(8):  # red ramp must keep increasing left to right
        out = augment_clip(clip, 32, AugmentConfig(**no_jitter), rng_for(seed, "v", 0, "a"))
        assert out[0, 0, 16, -1] > out[0, 0, 16, 0]
    flips = 0
    for seed in range(16):
        out = augment_clip(clip, 32, AugmentConfig(hflip=True, **no_jitter),
                           rng_for(seed, "v", 0, "a"))
        flips += int(out[0, 0, 16, -1] < out[0, 0, 16, 0])
    assert 0 < flips < 16


def test_random_resized_crop_box_ranges():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(300):
        top, left, h, w = random_crop_box(120, 160, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 160
        areas.append(h * w / (120 * 160))
        ratios.append(w / h)
    assert 0.06 < min(areas) < 0.2 and max(areas) > 0.8
    assert min(ratios) > 0.7 and max(ratios) < 1.4


def test_colour_jitter_values():
    clip = torch.full((3, 2, 4, 4), 100, dtype=torch.uint8)
    assert torch.all(color_jitter(clip, 1.5, 1.0, 1.0) == 150)
    clip[:, :, :2] = 50  # contrast stretches around the mean (75)
    out = color_jitter(clip, 1.0, 2.0, 1.0)
    assert out[0, 0, 0, 0] == 25 and out[0, 0, 3, 0] == 125
    grey = color_jitter(_clip(), 1.0, 1.0, 0.0)  # saturation 0 = greyscale
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_config_validation():
    with pytest.raises(ValueError):
        AugmentConfig(area=(0.5, 0.2))
    with pytest.raises(ValueError):
        AugmentConfig(brightness=1.2)


def test_hflip_swap_labels_a_mirrored_clip_as_its_mirror_class():
    """A flipped clip of a pair's class comes back labelled the other class; other classes
    keep theirs; an unflipped clip keeps its label."""
    clip = _clip(h=32, w=32)
    cfg = AugmentConfig(random_resized_crop=False, hflip=True, hflip_swap=(("cw", "ccw"),),
                        brightness=0, contrast=0, saturation=0)
    mirror = cfg.mirror_labels(("still", "cw", "ccw"))
    assert mirror == (0, 2, 1)
    seen = set()
    for seed in range(20):
        for label in (0, 1, 2):
            out, shown = augment_labelled_clip(clip, label, 32, cfg,
                                               rng_for(seed, "v", 0, "augment"), mirror)
            flipped = torch.equal(out, clip.flip(-1))
            assert flipped or torch.equal(out, clip)
            assert shown == (mirror[label] if flipped else label)
            seen.add(flipped)
    assert seen == {True, False}


def test_reverse_swap_plays_backwards_and_relabels_and_composes_with_the_flip():
    """A reversed clip has its frames in the opposite order and the pair's other label; with
    both flip and reversal on, every combination occurs and the label follows both maps."""
    clip = _clip(t=5, h=32, w=32)
    cfg = AugmentConfig(random_resized_crop=False, hflip=True, hflip_swap=(("cw", "ccw"),),
                        reverse=True, reverse_swap=(("cw", "ccw"), ("grow", "shrink")),
                        brightness=0, contrast=0, saturation=0)
    classes = ("still", "cw", "ccw", "grow", "shrink")
    mirror, reversal = cfg.mirror_labels(classes), cfg.reversal_labels(classes)
    assert reversal == (0, 2, 1, 4, 3) and mirror == (0, 2, 1, 3, 4)
    seen = set()
    for seed in range(40):
        for label in range(len(classes)):
            out, shown = augment_labelled_clip(clip, label, 32, cfg,
                                               rng_for(seed, "v", 0, "augment"), mirror,
                                               reversal)
            variants = {(f, r): clip.flip(-1) if f else clip for f in (0, 1) for r in (0, 1)}
            variants = {k: v.flip(1) if k[1] else v for k, v in variants.items()}
            (flipped, reversed_), = [k for k, v in variants.items() if torch.equal(out, v)]
            expected = mirror[label] if flipped else label
            assert shown == (reversal[expected] if reversed_ else expected)
            seen.add((flipped, reversed_))
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_reversal_off_draws_nothing():
    """Turning the reversal off leaves earlier seeded clips unchanged (no extra draw)."""
    clip = _clip()
    a = augment_clip(clip, 32, AugmentConfig(hflip=True), rng_for(5, "v", 0, "augment"))
    b = augment_clip(clip, 32, AugmentConfig(hflip=True, reverse=False),
                     rng_for(5, "v", 0, "augment"))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hflip=True, hflip_swap=(("a", "a"),)), "two different classes"),
    (dict(hflip=True, hflip_swap=(("a", "b"), ("b", "c"))), "names a class twice"),
    (dict(hflip=False, hflip_swap=(("a", "b"),)), "needs hflip"),
    (dict(reverse=True, reverse_swap=(("a", "b", "c"),)), "reverse_swap takes pairs"),
    (dict(reverse=False, reverse_swap=(("a", "b"),)), "needs reverse"),
])
def test_bad_hflip_swap_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**kwargs)


def test_hflip_swap_of_an_unknown_class_names_it():
    cfg = AugmentConfig(hflip=True, hflip_swap=(("rotate_cw", "rotate_ccv"),))
    with pytest.raises(ValueError, match=r"\['rotate_ccv'\], not in the class list"):
        cfg.mirror_labels(("rotate_cw", "rotate_ccw"))
    cfg = AugmentConfig(reverse=True, reverse_swap=(("grow", "shrnk"),))
    with pytest.raises(ValueError, match=r"reverse_swap names \['shrnk'\]"):
        cfg.reversal_labels(("grow", "shrink"))
