"""Serving load on this machine: live WebSocket sessions and whole-clip uploads.

* N concurrent sessions (default 1, 4, 16, 32), each a live camera: 320x240 JPEG frames sent
  on a fixed 5 fps clock whatever the answers do; per-frame latency (frame sent -> its answer
  received, through Serve's proxy), frames/s served, streams per model call.
* How many real-time A0 sessions one CPU replica holds: the largest N whose sessions all get
  every answer, p99 latency under 500 ms (2.5 frame intervals) and >= 97 % of the offered
  frame rate (a bisection between the sweep's last passing and first failing N).
* ``POST /v1/classify`` throughput for 10 s clips (320x240, 30 fps H.264), 1 and 2 clients.

A0-stream at its native 172 px and 5 fps, random weights (the speed of trained ones), fused
BN, one replica with ``--replica-cpus`` CPUs (= torch threads). Load generator, Serve proxy
and replica share the machine's cores.

    python benchmarks/serve_load.py [--sessions 1 4 16 32] [--seconds 20] [--replica-cpus 1]

Prints a markdown table and writes benchmarks/results/serve_load.json (``--name`` for
another file, e.g. a comparison run).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, write_results  # noqa: E402

FRAME_W, FRAME_H = 320, 240
CLIP_SECONDS = 10
P99_LIMIT_MS = 500.0  # real time: answers at most 2.5 frame intervals late


def make_checkpoint(folder: Path) -> Path:
    import torch

    from movinet_ray.model import create_model, kinetics600_labels, model_info, save_model

    torch.manual_seed(0)
    model = create_model("a0", "stream").eval()
    return save_model(folder / "a0-random.pt", model, model_info(model, kinetics600_labels()))


def camera_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """A moving pattern with noise (JPEG sizes like a real camera's, ~10-20 kB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    out = []
    for t in range(n):
        img = np.stack([np.sin(x / (9 + 4 * c) + y / 23 + 0.3 * t + c) for c in range(3)], -1)
        img = 127.5 + 100 * img + rng.normal(0, 6, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def jpeg(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


async def live_session(url: str, frames: list[bytes], fps: float, offset: float,
                       deadline: float) -> dict:
    """Send frames on a fixed clock; collect each frame's end-to-end latency."""
    from websockets.asyncio.client import connect

    await asyncio.sleep(offset)
    sent: list[float] = []
    answered: list[float] = []
    latencies: list[float] = []
    server_ms: list[float] = []
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "format": "jpeg", "width": FRAME_W,
                                  "height": FRAME_H, "top_k": 5}))
        assert json.loads(await ws.recv())["type"] == "ready"

        async def receive():
            while len(latencies) < len(frames):
                msg = json.loads(await ws.recv())
                answered.append(time.perf_counter())
                latencies.append(answered[-1] - sent[msg["frame"]])
                server_ms.append(msg["latency_ms"])

        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for i, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, start + i / fps - time.perf_counter()))
            sent.append(time.perf_counter())
            await ws.send(frame)
        try:
            await asyncio.wait_for(receiver, max(1.0, deadline - time.perf_counter()))
        except asyncio.TimeoutError:
            pass
        await ws.send(json.dumps({"type": "stop"}))
    return {"latencies": latencies, "server_ms": server_ms, "first": sent[0],
            "last": answered[-1] if answered else sent[0]}


async def live_load(url: str, n: int, seconds: float, fps: float, frames: list[bytes]) -> dict:
    per_session = int(seconds * fps)
    rng = np.random.default_rng(n)
    deadline = time.perf_counter() + seconds + 1.0 / fps + 30.0
    runs = await asyncio.gather(*[
        live_session(url, [frames[(i * 7 + k) % len(frames)] for k in range(per_session)], fps,
                     float(rng.uniform(0, 1.0 / fps)), deadline) for i in range(n)])
    latencies = np.array([x for r in runs for x in r["latencies"]]) * 1000.0
    answered = len(latencies)
    span = max(r["last"] for r in runs) - min(r["first"] for r in runs)
    server = [x for r in runs for x in r["server_ms"]]
    return {"answered": answered, "expected": n * per_session, "span_s": span,
            "p50_ms": float(np.percentile(latencies, 50)) if answered else float("nan"),
            "p99_ms": float(np.percentile(latencies, 99)) if answered else float("nan"),
            "server_p50_ms": statistics.median(server) if server else float("nan")}


def mean_batch(before: dict, after: dict) -> float:
    calls = {int(k): v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    total = sum(calls.values())
    return sum(k * v for k, v in calls.items()) / total if total else float("nan")


def run_sessions(base: str, n: int, seconds: float, fps: float, frames: list[bytes]) -> dict:
    import httpx

    before = httpx.get(f"{base}/v1/stats").json()
    result = asyncio.run(live_load(base.replace("http", "ws", 1) + "/v1/stream", n, seconds,
                                   fps, frames))
    after = httpx.get(f"{base}/v1/stats").json()
    offered = n * fps
    # over the sending time, or longer if the last answers came late
    served = result["answered"] / max(seconds, result["span_s"])
    realtime = (result["answered"] == result["expected"] and result["p99_ms"] < P99_LIMIT_MS
                and served >= 0.97 * offered)
    return {"sessions": n, "offered frames/s": offered, "served frames/s": served,
            "p50 ms": result["p50_ms"], "p99 ms": result["p99_ms"],
            "server p50 ms": result["server_p50_ms"], "streams/call": mean_batch(before, after),
            "answered": f"{result['answered']}/{result['expected']}",
            "real-time": "yes" if realtime else "no"}


def classify_throughput(base: str, clip: Path, clients: int, repeats: int) -> dict:
    import httpx

    data = clip.read_bytes()

    def one() -> float:
        r = httpx.post(f"{base}/v1/classify", files={"video": (clip.name, data)}, timeout=600)
        r.raise_for_status()
        return r.json()["frames"]

    one()  # warm-up
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        frames = list(pool.map(lambda _: one(), range(repeats * clients)))
    seconds = time.perf_counter() - start
    n = repeats * clients
    return {"clients": clients, "clips": n, "frames/clip": frames[0],
            "seconds/clip": seconds / n * clients, "clips/s": n / seconds,
            "x real time": CLIP_SECONDS * n / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--seconds", type=float, default=20.0, help="per session count")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--replica-cpus", type=float, default=1.0)
    parser.add_argument("--port", type=int, default=8660)
    parser.add_argument("--no-bisect", action="store_true")
    parser.add_argument("--name", default="serve_load", help="results file name")
    args = parser.parse_args()

    import ray

    from movinet_ray.data.synthetic import write_video
    from movinet_ray.serve import ReplicaConfig, ServeConfig, start_serve, stop_serve

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    checkpoint = make_checkpoint(work)
    raw = camera_frames(CLIP_SECONDS * 30)
    clip = work / "clip10s.mp4"
    write_video(clip, raw, fps=30)
    frames = [jpeg(f) for f in raw[:50]]
    cfg = ServeConfig(model=str(checkpoint), max_sessions=max(64, *args.sessions),
                      max_upload_mb=50, replicas=ReplicaConfig(num_cpus=args.replica_cpus))
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    base = start_serve(cfg, port=args.port)
    load_before = os.getloadavg()[0]
    try:
        run_sessions(base, 1, 3, args.fps, frames)  # warm-up
        rows = []
        for n in args.sessions:
            rows.append(run_sessions(base, n, args.seconds, args.fps, frames))
            print(markdown_table(rows[-1:], list(rows[-1])), flush=True)
        ok = [r["sessions"] for r in rows if r["real-time"] == "yes"]
        bad = [r["sessions"] for r in rows if r["real-time"] == "no" and (not ok or
                                                                          r["sessions"] > max(ok))]
        lo, hi = (max(ok) if ok else 0), (min(bad) if bad else None)
        while hi is not None and hi - lo > max(1, lo // 8) and not args.no_bisect:
            mid = (lo + hi) // 2
            row = run_sessions(base, mid, args.seconds, args.fps, frames)
            rows.append(row)
            print(markdown_table([row], list(row)), flush=True)
            lo, hi = (mid, hi) if row["real-time"] == "yes" else (lo, mid)
        classify = [classify_throughput(base, clip, c, 3) for c in (1, 2)]
    finally:
        stop_serve(stop_ray=True)
        shutil.rmtree(work, ignore_errors=True)
    rows.sort(key=lambda r: r["sessions"])
    print(f"\nLive sessions (A0-stream 172 px, {args.fps:g} fps each, 320x240 JPEG, one replica "
          f"with {args.replica_cpus:g} CPUs):\n")
    print(markdown_table(rows, list(rows[0])))
    print(f"\nReal-time sessions one replica holds: {lo}"
          + (f" (fails at {hi})" if hi is not None else " (every N tried passed)"))
    print(f"\nClassify, {CLIP_SECONDS} s clips (320x240, 30 fps H.264 -> "
          f"{classify[0]['frames/clip']} frames at 5 fps):\n")
    print(markdown_table(classify, list(classify[0])))
    path = write_results(args.name, {
        "model": "a0-stream 172px fused, random weights", "replica_cpus": args.replica_cpus,
        "seconds_per_run": args.seconds, "fps": args.fps, "sessions": rows,
        "realtime_sessions": lo, "first_failing": hi, "classify": classify,
        # other jobs on this shared machine: the 1-minute load average around the run
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
