"""The synthetic motion dataset: deterministic, classes differ by motion only."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from movinet_ray.data import (MIRROR_PAIRS, MOTION_CLASSES, REVERSAL_PAIRS,
                              generate_synthetic_dataset, read_manifest, read_video)
from movinet_ray.data.synthetic import VideoSpec, render_frames, sample_spec, trajectory

SMALL = dict(size="128x96", fps=10, seconds=2)


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generation_is_deterministic_and_writes_a_manifest(tmp_path):
    classes = ["move_left", "move_right", "grow", "rotate_cw"]
    a = generate_synthetic_dataset(tmp_path / "a", classes, videos_per_class=6, seed=3, **SMALL)
    generate_synthetic_dataset(tmp_path / "b", classes, videos_per_class=6, seed=3, **SMALL)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    c = generate_synthetic_dataset(tmp_path / "c", classes, videos_per_class=6, seed=4, **SMALL)
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    m = read_manifest(a)
    assert m.classes.names == tuple(classes) and len(m) == 24
    for label in classes:   # 20 % of each class in val, chosen per class
        part = [r for r in m.rows() if r["label"] == label]
        assert sum(r["split"] == "val" for r in part) == 1
    assert read_manifest(c).classes.names == tuple(classes)
    row = m.rows()[0]
    frames = read_video(row["path"])
    assert frames.shape == (3, 20, 96, 128)


def test_default_formats_vary_within_the_documented_ranges():
    sizes, rates, lengths = set(), set(), []
    for i in range(40):
        s = sample_spec("static", np.random.default_rng(i))
        sizes.add((s.width, s.height))
        rates.add(s.fps)
        lengths.append(s.num_frames / s.fps)
        assert 160 <= s.width <= 640 and 120 <= s.height <= 360 and 10 <= s.fps <= 30
    assert len(sizes) > 4 and len(rates) > 3 and 2 <= min(lengths) and max(lengths) <= 8.1


def _wrapped_steps(x, period=1.0):
    d = np.diff(x)
    return (d + period / 2) % period - period / 2


@pytest.mark.parametrize("label", MOTION_CLASSES)
def test_each_class_moves_its_parameter_the_right_way(label):
    steps = {}
    for i in range(10):
        spec = sample_spec(label, np.random.default_rng([9, i]), (160, 120), 10, 3.0)
        tr = trajectory(spec)
        for key, period in (("x", 1.0), ("y", 1.0), ("scale", 1.0), ("angle", 2 * math.pi)):
            steps.setdefault(key, []).append(_wrapped_steps(tr[key], period))
    moving = {"move_left": ("x", -1), "move_right": ("x", 1), "move_up": ("y", -1),
              "move_down": ("y", 1), "grow": ("scale", 1), "shrink": ("scale", -1),
              "rotate_cw": ("angle", 1), "rotate_ccw": ("angle", -1), "static": (None, 0)}
    param, sign = moving[label]
    for key, s in steps.items():
        s = np.concatenate(s)
        if key == param:
            assert np.all(np.sign(s) == sign), (label, key)
        else:
            assert np.all(s == 0), (label, key)


def _partner(label, pairs):
    return next((b if label == a else a for a, b in pairs if label in (a, b)), label)


def _same_angle(a, b):
    return np.allclose(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))), 0, atol=1e-9)


@pytest.mark.parametrize("label", MOTION_CLASSES)
def test_reversal_and_mirror_pairs_are_what_the_generator_draws(label):
    """Played backwards, a video of ``label`` follows exactly the trajectory of its
    REVERSAL_PAIRS partner (started where it ended); mirrored left-right, that of its
    MIRROR_PAIRS partner (started at the mirrored place and angle). Unpaired classes map to
    themselves. This is what makes reverse_swap / hflip_swap right for this data."""
    spec = sample_spec(label, np.random.default_rng(3), (160, 120), 10, 3.0)
    tr = trajectory(spec)
    back = trajectory(replace(spec, label=_partner(label, REVERSAL_PAIRS), x0=tr["x"][-1],
                              y0=tr["y"][-1], scale0=tr["scale"][-1], angle0=tr["angle"][-1]))
    for key in ("cx", "cy", "radius"):
        assert np.allclose(back[key], tr[key][::-1]), key
    assert _same_angle(back["angle"], tr["angle"][::-1])
    mirrored = trajectory(replace(spec, label=_partner(label, MIRROR_PAIRS), x0=1 - spec.x0,
                                  angle0=math.pi - spec.angle0))
    assert np.allclose(mirrored["cx"], spec.width - tr["cx"])
    assert np.allclose(mirrored["cy"], tr["cy"]) and np.allclose(mirrored["radius"], tr["radius"])
    assert _same_angle(mirrored["angle"], math.pi - tr["angle"])


def test_single_frames_are_alike_across_classes():
    """At a random frame, the object's (x, y, scale, angle) phases are uniform on [0, 1) in
    every class (one-sample KS test per class and parameter), so the position, size and
    angle of the object in one frame say nothing about the class."""
    n = 2000
    for ci, label in enumerate(MOTION_CLASSES):
        pick = np.random.default_rng([2, ci])
        out = np.empty((n, 4))
        for i in range(n):
            spec = sample_spec(label, np.random.default_rng([1, ci, i]), (160, 120), 10, 4.0,
                               distractors=0)
            tr = trajectory(spec)
            t = pick.integers(spec.num_frames)
            out[i] = tr["x"][t], tr["y"][t], tr["scale"][t], tr["angle"][t] / (2 * math.pi)
        for j in range(4):
            x = np.sort(out[:, j])
            ks = max(np.max(np.arange(1, n + 1) / n - x), np.max(x - np.arange(n) / n))
            assert ks < 1.95 / math.sqrt(n), (label, j, ks)  # 99.9 % critical value


def test_rendered_object_follows_its_trajectory():
    spec = sample_spec("move_right", np.random.default_rng(5), (160, 120), 10, 2.0,
                       distractors=0, noise=0)
    spec = VideoSpec(**{**spec.__dict__, "background": ((0, 0, 0), (0, 0, 0)),
                        "color": (255, 255, 255), "x0": 0.1})  # no wrap within 2 s
    tr = trajectory(spec)
    xs = []
    for i, frame in enumerate(render_frames(spec)):
        mask = frame.max(axis=2) > 0  # object and its stripe
        ys, xx = np.nonzero(mask)
        assert abs(xx.mean() + 0.5 - tr["cx"][i]) < 2.5 and abs(ys.mean() + 0.5 - tr["cy"][i]) < 2.5
        xs.append(xx.mean())
    assert np.all(np.diff(xs) > 0)


def test_cli_synth_writes_trajectories(tmp_path, capsys):
    from movinet_ray.cli import main

    assert main(["data", "synth", "--out", str(tmp_path), "--classes", "grow", "shrink",
                 "--videos-per-class", "2", "--seed", "1", "--size", "64x48", "--fps", "10",
                 "--seconds", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("manifest.parquet")
    lines = [json.loads(x) for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert [x["video_id"] for x in lines] == ["grow_0000", "grow_0001", "shrink_0000",
                                              "shrink_0001"]
    assert len(lines[0]["radius"]) == 10


def test_workers_write_the_same_files(tmp_path):
    kwargs = dict(classes=["grow", "move_up"], videos_per_class=2, seed=5, size="64x48",
                  fps=10, seconds=1)
    one = generate_synthetic_dataset(tmp_path / "one", **kwargs).parent
    two = generate_synthetic_dataset(tmp_path / "two", workers=2, **kwargs).parent
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".mp4"]) == 4
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
