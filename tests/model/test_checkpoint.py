"""Our checkpoint format and the `movinet convert` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from movinet_ray.model import create_model
from movinet_ray.model.checkpoint import (
    kinetics600_labels,
    load_model,
    model_info,
    save_model,
)

from .conftest import TFFixture, randomize_


def test_save_load_round_trip(tmp_path):
    model = randomize_(create_model("a0", "stream", num_classes=3))
    info = model_info(model, ["left", "right", "still"], resolution=96, fps=6, frames=12,
                      source="test", top1=0.9)
    save_model(tmp_path / "m.pt", model, info)
    loaded, info2 = load_model(tmp_path / "m.pt")
    assert info2 == info and info2.class_names == ("left", "right", "still")
    assert (info2.resolution, info2.fps, info2.frames, info2.extra) == (96, 6, 12, {"top1": 0.9})
    video = torch.rand(1, 3, 4, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video)[0], model(video)[0])


def test_contradictions_are_errors(tmp_path):
    model = create_model("a0", "stream", num_classes=3)
    with pytest.raises(ValueError, match="2 class names for a model with 3 outputs"):
        save_model(tmp_path / "m.pt", model, model_info(model, ["a", "b"]))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a movinet-ray checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_kinetics_labels_are_the_official_600():
    labels = kinetics600_labels()
    assert len(labels) == len(set(labels)) == 600
    assert labels[0] == "abseiling" and labels[-1] == "zumba" and "skateboarding" in labels


def test_convert_command(tmp_path):
    fx = TFFixture("a0_stream")
    out = tmp_path / "a0.pt"
    subprocess.run([sys.executable, "-m", "movinet_ray.cli", "convert", "--tf-checkpoint",
                    str(fx.dir / "ckpt"), "--variant", "a0", "--mode", "stream", "--out",
                    str(out)], check=True, timeout=120)
    model, info = load_model(out)
    assert info.class_names[:2] == ("abseiling", "acting in play")
    assert (info.resolution, info.fps) == (172, 5)
    with torch.no_grad():
        logits, _ = model(fx.clip)
    np.testing.assert_allclose(logits.numpy(), fx.io["logits"], atol=1e-4, rtol=0)
