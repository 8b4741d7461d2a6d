"""A killed training worker costs the steps since the last checkpoint, nothing else.

One run goes through both recoveries: a worker killed after the step-4 checkpoint is
replaced and training continues from step 4 (``max_failures=1``); a worker killed again
after the step-8 checkpoint exceeds ``max_failures`` and the run fails; starting the run
again under its name continues from step 8. It ends at step 12, and MLflow holds every
step's metrics once, in one MLflow run.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest

from movinet_ray.tracking import setup_mlflow
from movinet_ray.train.job import train
from movinet_ray.train.optim import lr_factor

from .conftest import small_config

pytestmark = pytest.mark.slow


class WorkerKiller(threading.Thread):
    """SIGKILLs one Ray Train worker of this test's Ray (a child of this process) as soon as
    each of the run's checkpoints ``step_<s>`` for ``steps`` is committed."""

    def __init__(self, run_dir, steps: list[int], timeout: float = 900):
        super().__init__(daemon=True)
        self.snapshot = run_dir / "checkpoint_manager_snapshot.json"
        self.steps, self.timeout = steps, timeout
        self.killed: list[int] = []

    def run(self):
        deadline = time.monotonic() + self.timeout
        for step in self.steps:
            while time.monotonic() < deadline and not self._committed(step):
                time.sleep(0.02)
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "RayTrainWorker" in " ".join(_cmdline(p))]
            if not workers:
                return
            os.kill(workers[-1].pid, signal.SIGKILL)
            self.killed.append(workers[-1].pid)

    def _committed(self, step: int) -> bool:
        try:
            snapshot = json.loads(self.snapshot.read_text())
        except (OSError, ValueError):
            return False
        latest = snapshot.get("latest_checkpoint_result") or {}
        return latest.get("checkpoint_dir_name") == f"step_{step:07d}"


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _steps(client, run_id, key):
    return sorted(int(m.step) for m in client.get_metric_history(run_id, key))


def test_killed_workers_recover_and_a_failed_run_resumes_by_name(ray_local, tiny_manifest,
                                                                 tmp_path, mlflow_uri):
    storage = tmp_path / "runs"
    cfg = small_config(tiny_manifest, storage, mlflow_uri, "run.name=ft", "train.steps=12",
                       "run.max_failures=1")
    killer = WorkerKiller(storage / "ft", steps=[4, 8])
    killer.start()
    with pytest.raises(Exception, match="(?i)worker|died|fail"):
        train(cfg)  # the first kill is survived, the second exceeds max_failures=1
    killer.join(5)
    assert len(killer.killed) == 2
    client = setup_mlflow(mlflow_uri).MlflowClient()
    (failed,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert failed.info.status == "FAILED"
    logged = _steps(client, failed.info.run_id, "train/loss")
    assert logged[:8] == list(range(1, 9)) and len(logged) == len(set(logged))

    result = train(cfg)  # the same name: continue from the step-8 checkpoint
    assert result.run_id == failed.info.run_id and result.steps == 12
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["movinet.resumed"] == "true"
    # one restart from step 4 (the worker group was replaced), one resume from step 8
    resumes = client.get_metric_history(result.run_id, "train/resumed_from_step")
    assert sorted((int(m.step), m.value) for m in resumes) == [(4, 4.0), (8, 8.0)]
    # every step's metrics are in MLflow exactly once; evaluations at 4, 8, 12
    for key in ("train/loss", "train/lr", "train/clips_per_s", "train/data_wait_s"):
        assert _steps(client, result.run_id, key) == list(range(1, 13)), key
    assert _steps(client, result.run_id, "val/top1") == [4, 8, 12]
    assert run.data.metrics["train/steps_done"] == 12
    snapshot = json.loads((storage / "ft" / "checkpoint_manager_snapshot.json").read_text())
    assert snapshot["latest_checkpoint_result"]["checkpoint_dir_name"] == "step_0000012"
    # the scheduler went on where it stopped: every step's LR is the schedule's value
    lrs = {int(m.step): m.value for m in client.get_metric_history(result.run_id, "train/lr")}
    assert lrs == {s: pytest.approx(1e-3 * lr_factor(s - 1, 0, 12)) for s in range(1, 13)}

    again = train(cfg)  # a finished run is not trained again
    assert again.run_id == result.run_id and again.steps == 12
    assert _steps(client, result.run_id, "train/steps_done") == [12]
