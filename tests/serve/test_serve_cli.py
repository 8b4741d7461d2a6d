"""`movinet serve` with the shipped config file, and the demo hook with a registered model,
each in its own process with its own local Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from movinet_ray.model import load_model
from movinet_ray.tracking import log_model, setup_mlflow

from .serve_helpers import CLASSES, TOL, scores, video_probs, write_test_video

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CLI_PORT = 8651


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"movinet serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(f"{url}/v1/health", timeout=2)
            if r.status_code == 200:  # the proxy answers 404 until the app is deployed
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"no answer from {url} in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module", autouse=True)
def cli_server(checkpoint, tmp_path_factory):
    """`movinet serve` with the shipped config file, started when this module starts so that
    it boots (its own Ray, Serve, the model) while the demo test runs in another process."""
    folder = tmp_path_factory.mktemp("cli")
    log = folder / "serve.log"
    cmd = [sys.executable, "-m", "movinet_ray.cli", "serve", "--config",
           str(ROOT / "cluster/serve.yaml"), "--port", str(CLI_PORT), f"model={checkpoint}",
           "replicas.num_cpus=1", "max_sessions=4"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(),
                                cwd=folder)
    yield proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_demo_serve_classifies_with_a_registered_model(checkpoint, ref_model, tmp_path,
                                                       mlflow_uri):
    _, info = load_model(checkpoint)
    mlflow = setup_mlflow(mlflow_uri, experiment="serve-demo")
    with mlflow.start_run():
        _, version = log_model(checkpoint, info, registered_model_name="motion-serve",
                               aliases=("champion",))
    video = write_test_video(tmp_path / "demo.mp4", n=25, fps=10, seed=8)
    script = ("import json, sys; from pathlib import Path; from movinet_ray.serve import "
              "demo_serve; r = demo_serve('models:/motion-serve@champion', Path(sys.argv[1]), "
              "sys.argv[2], port=8652, top_k=9); print('RESULT ' + json.dumps(r))")
    run = subprocess.run([sys.executable, "-c", script, str(video), mlflow_uri], env=_env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["model"] == {"name": "motion-serve", "version": version,
                               "uri": "models:/motion-serve@champion"}
    expected, frames = video_probs(ref_model, video)
    assert result["frames"] == frames == 13
    torch.testing.assert_close(scores(result["top_k"]), expected, atol=TOL, rtol=0)
    best = CLASSES[int(expected.argmax())]
    assert any(line.startswith(f"Served motion-serve version {version}: demo.mp4")
               for line in lines)
    assert any(line.strip().endswith(best) and "%" in line for line in lines)


def test_movinet_serve_with_cluster_config(cli_server, ref_model, tmp_path):
    """Serves with the file's settings plus overrides; Ctrl-C shuts everything down."""
    proc, log = cli_server
    url = f"http://127.0.0.1:{CLI_PORT}"
    try:
        health = _wait_healthy(url, proc, log)
        assert health["model"] == "motion-a0"
        assert httpx.get(f"{url}/v1/model").json()["max_sessions"] == 4  # the override
        video = write_test_video(tmp_path / "clip.mp4", n=20, fps=10, seed=7)
        with open(video, "rb") as f:
            body = httpx.post(f"{url}/v1/classify", params={"top_k": len(CLASSES)},
                              files={"video": f}, timeout=120).json()
        expected, frames = video_probs(ref_model, video)
        assert body["frames"] == frames == 10
        torch.testing.assert_close(scores(body["top_k"]), expected, atol=TOL, rtol=0)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()[-3000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/health", timeout=2)
