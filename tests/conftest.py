"""Shared test fixtures: the official TF fixtures, a session-wide local Ray, temp MLflow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from movinet_ray.ray_init import init_ray

ROOT = Path(__file__).resolve().parents[1]
TF_FIXTURES = Path(os.environ.get("MOVINET_TF_FIXTURES", ROOT.parent / "shared/fixtures/movinet_tf"))


def tf_fixture_dir(name: str) -> Path:
    """A TF fixture folder; absent -> skip with the reason, or fail under CI (CI=true)."""
    path = TF_FIXTURES / name
    if not (path / "weights.npz").exists():
        reason = (f"official TF fixture {name!r} not found under {TF_FIXTURES} "
                  "(set MOVINET_TF_FIXTURES to the movinet_tf fixtures folder)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) shared by the tests that need Ray."""
    import ray

    if not ray.is_initialized():
        # address="local": always a fresh instance, never a cluster some other process started
        # with `ray start` on this machine.
        init_ray("local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    return uri
