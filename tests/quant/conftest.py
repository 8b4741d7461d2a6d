"""Session fixtures: the tiny motion dataset, a model trained on it, and one quantize-job run
over it (through the CLI, into a fresh MLflow store) that several tests inspect."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from pathlib import Path

from movinet_ray.data import read_manifest
from movinet_ray.model import model_info, save_model
from movinet_ray.model.quantize import create_quantizable_model, evaluate_top1, train_epochs

from .quant_helpers import (CLASSES, SIZE, load_clips, make_squares_dataset, recalibrate_bn_,
                            shuffled_batches)

EPOCHS = 10
REGISTERED = "squares"
JOB_YAML = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "quantize.yaml"


@pytest.fixture(scope="session")
def squares(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    manifest_path = make_squares_dataset(root, train_per_class=64, val_per_class=16)
    manifest = read_manifest(manifest_path)
    train = load_clips(manifest, "train", train=True)
    val = load_clips(manifest, "val")
    return SimpleNamespace(root=root, manifest_path=manifest_path, train=train, val=val)


@pytest.fixture(scope="session")
def trained(squares, tmp_path_factory):
    """A quantization-friendly A0-stream (ReLU6, no SE) trained from scratch on the squares."""
    torch.manual_seed(0)
    start = time.perf_counter()
    model = create_quantizable_model("a0", num_classes=len(CLASSES), dropout=0.0,
                                     bn_momentum=0.1)
    xt, yt = squares.train
    losses = train_epochs(model, lambda e: shuffled_batches(xt, yt, 16, e), EPOCHS, 2e-3)
    recalibrate_bn_(model, xt)  # exact BatchNorm statistics for the short schedule
    info = model_info(model, CLASSES, resolution=SIZE, fps=10, frames=8, source="test:squares")
    path = save_model(tmp_path_factory.mktemp("trained") / "squares_a0.pt", model, info)
    top1 = evaluate_top1(model, *squares.val, batch_size=16)
    return SimpleNamespace(model=model, info=info, path=path, top1=top1, losses=losses,
                           seconds=time.perf_counter() - start)


@pytest.fixture(scope="session")
def job(trained, squares, tmp_path_factory):
    """The trained model registered by a "training" run, then `movinet quantize` on it.

    Session-scoped (one MLflow store for the session, not the per-test ``mlflow_uri``): the
    job is the expensive part and several tests read its run.
    """
    import os

    from movinet_ray import cli, tracking

    root = tmp_path_factory.mktemp("quant-job")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK"] = "true"
    mlflow = tracking.setup_mlflow(uri, experiment="squares-train")
    with mlflow.start_run(run_name="train") as train_run:
        mlflow.log_metric("val_top1", trained.top1)
        tracking.log_model(trained.path, trained.info, registered_model_name=REGISTERED,
                           aliases=("candidate",))
    out = root / "variants"
    start = time.perf_counter()
    code = cli.main([
        "quantize", "--config", str(JOB_YAML), f"model=models:/{REGISTERED}@candidate",
        f"manifest={squares.manifest_path}", f"out_dir={out}", f"tracking_uri={uri}",
        "frames=8", "calibration.clips=48", "qat.epochs=2", "qat.lr=0.0001",
        "qat.clips_per_epoch=96", "qat.calibration_clips=48", "benchmark.batch=2",
        "benchmark.steps=5", "benchmark.threads=1"])
    seconds = time.perf_counter() - start
    assert code == 0
    mlflow = tracking.setup_mlflow(uri)
    runs = mlflow.search_runs(search_all_experiments=True,
                              filter_string="tags.job = 'quantize'", output_format="list")
    assert len(runs) == 1
    import json

    rows = {r["variant"]: r for r in json.loads((out / "comparison.json").read_text())}
    return SimpleNamespace(uri=uri, out=out, run=runs[0], train_run=train_run, rows=rows,
                           seconds=seconds)
