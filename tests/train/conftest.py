"""Training test fixtures: a tiny motion dataset and small, fast configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from movinet_ray.config import load_config
from movinet_ray.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory):
    """4 direction classes x 4 videos (3 train, 1 val each), 64x64, 2 s at 10 fps."""
    from movinet_ray.data import generate_synthetic_dataset

    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("tiny"), ["move_left", "move_right", "move_up", "move_down"],
        videos_per_class=4, seed=0, size="64x64", fps=10, seconds=2, val_fraction=0.25,
        distractors=0, noise=2)


def small_config(manifest, storage, tracking_uri: str, *overrides: str) -> TrainConfig:
    """A0-stream at 32 px, 4 frames, 2 workers of half a CPU each: seconds per step."""
    return load_config(TrainConfig, None, [
        f"data.manifest={manifest}", "data.resolution=32", "data.frames=4", "data.fps=5",
        "data.augment=false", "data.decode_cpus=0.5", "model.bn_momentum=0.1",
        "train.batch_size=4", "train.steps=8", "train.eval_every=4",
        "train.checkpoint_every=4", "scaling.num_workers=2", "scaling.cpus_per_worker=0.5",
        f"run.storage_path={storage}", f"tracking.tracking_uri={tracking_uri}",
        "tracking.experiment=tests", "tracking.register=false", *overrides])
