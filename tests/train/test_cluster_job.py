"""`ray job submit -- python jobs/train.py --config cluster/...` on a real 2-node Ray cluster
(token auth, one machine: nodes on 127.0.0.2 and 127.0.0.3), logging to a real MLflow
tracking server started with `movinet ui`: the workers run on both nodes, the run and the
registered model land on the server."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow

HEAD, WORKER = "127.0.0.2", "127.0.0.3"
GCS_PORT, DASHBOARD_PORT, MLFLOW_PORT = 6400, 8400, 5400
RAY = str(Path(sys.executable).with_name("ray"))
# Every port a node opens, from our ranges (other developers run clusters on this machine).
NODE_PORTS = {
    HEAD: ["--port", str(GCS_PORT), "--dashboard-port", str(DASHBOARD_PORT),
           "--ray-client-server-port", "6401", "--dashboard-agent-listen-port", "8401",
           "--dashboard-agent-grpc-port", "6402", "--metrics-export-port", "6403",
           "--runtime-env-agent-port", "6404", "--node-manager-port", "6405",
           "--object-manager-port", "6406", "--min-worker-port", "6420",
           "--max-worker-port", "6449"],
    WORKER: ["--dashboard-agent-listen-port", "8411", "--dashboard-agent-grpc-port", "6412",
             "--metrics-export-port", "6413", "--runtime-env-agent-port", "6414",
             "--node-manager-port", "6415", "--object-manager-port", "6416",
             "--min-worker-port", "6450", "--max-worker-port", "6479"],
}


class Processes:
    """Processes this test starts, each in its own process group, stopped by group; then
    anything still running from our private Ray temp dir, by PID (never a `ray stop`)."""

    def __init__(self, temp_dir: Path):
        self.temp_dir, self.groups = temp_dir, []

    def start(self, cmd, env, log: Path) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.groups.append(proc)
        return proc

    def stop(self):
        """SIGTERM each group, SIGKILL what is still up after 5 s: a `ray start --head
        --block` took over 30 s to wind down, and these nodes hold nothing worth keeping."""
        import psutil

        for proc in reversed(self.groups):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        leftovers = [p for p in psutil.process_iter(["pid", "cmdline"])
                     if str(self.temp_dir) in " ".join(p.info["cmdline"] or [])]
        for p in leftovers:
            try:
                p.kill()
            except psutil.Error:
                pass


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout}s: {log.read_text()[-2000:]}")


def test_job_submit_trains_on_two_nodes_and_logs_to_a_tracking_server(tiny_manifest, tmp_path):
    temp_dir = Path(f"/tmp/mrt_{secrets.token_hex(3)}")  # Ray's socket paths stay short
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
           # the job's `python` is this interpreter, as in an image
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = Processes(temp_dir)
    try:
        mlflow_log = tmp_path / "mlflow.log"
        server = procs.start(
            [sys.executable, "-m", "movinet_ray.cli", "ui", "--port", str(MLFLOW_PORT),
             "--tracking-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts", str(tmp_path / "server-artifacts")], env, mlflow_log)
        # a temp dir per node: nodes sharing one would garbage-collect each other's files
        common = ["--block", "--num-cpus", "2", "--disable-usage-stats"]
        head_log = tmp_path / "head.log"
        head = procs.start([RAY, "start", "--head", "--node-ip-address", HEAD,
                            "--dashboard-host", HEAD, "--include-dashboard", "true",
                            "--temp-dir", f"{temp_dir}h", *NODE_PORTS[HEAD], *common],
                           env, head_log)
        _wait_for_nodes(env, 1, head, head_log)
        worker_log = tmp_path / "worker.log"
        worker = procs.start([RAY, "start", f"--address={HEAD}:{GCS_PORT}",
                              "--node-ip-address", WORKER, "--temp-dir", f"{temp_dir}w",
                              *NODE_PORTS[WORKER], *common],
                             env, worker_log)
        tracking = f"http://127.0.0.1:{MLFLOW_PORT}"
        _wait_http(f"{tracking}/health", 120, server, mlflow_log)
        _wait_for_nodes(env, 2, worker, worker_log)

        overrides = [
            f"data.manifest={tiny_manifest}", "data.resolution=32", "data.frames=4",
            "data.augment=false", "data.decode_cpus=0.5", "model.bn_momentum=0.1",
            "train.steps=4", "train.batch_size=4", "train.eval_every=2",
            "train.checkpoint_every=2", "optim.warmup_steps=1", "scaling.use_gpu=false",
            "scaling.cpus_per_worker=1", "scaling.placement_strategy=SPREAD",
            f"run.storage_path={tmp_path / 'shared-storage'}", "run.name=cluster-job",
            f"tracking.tracking_uri={tracking}", "tracking.experiment=cluster",
            "tracking.registered_model=cluster-a0"]
        submit = subprocess.run(
            [RAY, "job", "submit", "--address", f"http://{HEAD}:{DASHBOARD_PORT}",
             "--working-dir", str(ROOT), "--runtime-env-json",
             json.dumps({"excludes": ["benchmarks/results", "*.db", "mlartifacts", "runs"]}),
             "--", "python", "jobs/train.py", "--config", "cluster/train_a0_synthetic.yaml",
             *overrides],
            env=env, capture_output=True, text=True, timeout=900)
        (tmp_path / "job.log").write_text(submit.stdout + submit.stderr)
        assert submit.returncode == 0, _first_error(submit.stdout + submit.stderr)
        assert "model: models:/cluster-a0@candidate" in submit.stdout

        import mlflow

        client = mlflow.MlflowClient(tracking)
        (run,) = client.search_runs(
            [client.get_experiment_by_name("cluster").experiment_id])
        assert run.info.status == "FINISHED" and run.info.run_name == "cluster-job"
        assert run.data.params["scaling.num_workers"] == "2"
        # rank 0 and rank 1 trained on different nodes
        assert sorted(run.data.tags["movinet.worker_nodes"].split(",")) == [HEAD, WORKER]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] \
            == [1, 2, 3, 4]
        version = client.get_model_version_by_alias("cluster-a0", "candidate")
        assert version.run_id == run.info.run_id
        # the artifacts went through the server into its artifact store
        assert any((tmp_path / "server-artifacts").rglob("*.pt"))
    finally:
        procs.stop()
        for node in "hw":
            shutil.rmtree(f"{temp_dir}{node}", ignore_errors=True)


def _wait_for_nodes(env, count: int, node, log: Path, timeout: float = 180) -> None:
    """Until ``count`` nodes are alive (asked through the dashboard, with the token)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"ray start exited: {log.read_text()[-2000:]}")
        out = subprocess.run([RAY, "list", "nodes", "--address",
                              f"http://{HEAD}:{DASHBOARD_PORT}", "--format", "json"],
                             env=env, capture_output=True, text=True, timeout=60)
        # before any node registers, the command prints "No resource in the cluster" (rc 0)
        if out.returncode == 0 and out.stdout.lstrip().startswith("["):
            if sum(n["state"] == "ALIVE" for n in json.loads(out.stdout)) >= count:
                return
        time.sleep(1)
    raise TimeoutError(f"{count} nodes not up: {log.read_text()[-2000:]}")


def _first_error(log: str) -> str:
    start = log.find("Traceback")
    return log[start:start + 6000] if start >= 0 else log[-4000:]
