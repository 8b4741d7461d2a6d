"""Training throughput of the Ray Train job on this machine: 1 vs 2 workers.

The real job (`movinet_ray.train.train`: Ray Data decoding, DDP, MLflow logging) trains
A0-stream at a small resolution with the same global batch on one worker (two torch threads)
and on two workers (one thread each); clips/s is the median of the per-step values rank 0
logged to MLflow after the first steps (start-up and the first decoding pass excluded).
Ray is started as the package starts it (`init_ray`), so Ray Data's scheduling loop is paced
(`movinet_ray.ray_init.pace_ray_data`); `--data-loop-pause 0` measures without the pause.

    python benchmarks/train_speed.py [--steps 60] [--resolution 64] [--frames 8]
                                     [--data-loop-pause S] [--workers 1,2]

Prints a markdown table and writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, markdown_table, write_results  # noqa: E402

WARMUP_STEPS = 10


def run(workers: int, args, workdir: Path, manifest: Path, uri: str) -> dict:
    from movinet_ray.config import load_config
    from movinet_ray.tracking import setup_mlflow
    from movinet_ray.train import TrainConfig
    from movinet_ray.train.job import train

    cfg = load_config(TrainConfig, None, [
        f"data.manifest={manifest}", f"data.resolution={args.resolution}",
        f"data.frames={args.frames}", "data.fps=5", "data.augment=false",
        "data.decode_cpus=0.5", "model.bn_momentum=0.1", f"train.steps={args.steps}",
        f"train.batch_size={args.batch}", f"train.eval_every={args.steps}",
        f"train.checkpoint_every={args.steps}", f"scaling.num_workers={workers}",
        # the same two cores either way: one worker with two threads, or two with one
        f"scaling.cpus_per_worker={2 // workers}",
        f"run.storage_path={workdir / 'runs'}", f"run.name=speed-{workers}",
        f"tracking.tracking_uri={uri}", "tracking.experiment=train-speed",
        "tracking.register=false"])
    result = train(cfg)
    client = setup_mlflow(uri).MlflowClient()
    history = client.get_metric_history(result.run_id, "train/clips_per_s")
    steady = [m.value for m in history if m.step > WARMUP_STEPS and m.step < args.steps]
    clips_s = statistics.median(steady)
    return {"workers": workers, "micro_batch": args.batch // workers,
            "global_batch": args.batch, "steps_measured": len(steady),
            "clips_per_s": clips_s, "step_s": args.batch / clips_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    p.add_argument("--data-loop-pause", type=float, default=None,
                   help="seconds; default: the package's (movinet_ray.ray_init)")
    args = p.parse_args()

    import ray

    from movinet_ray import ray_init
    from movinet_ray.data import generate_synthetic_dataset

    if args.data_loop_pause is not None:  # the workers of the local Ray inherit it
        os.environ[ray_init.DATA_LOOP_PAUSE_ENV] = str(args.data_loop_pause)
    pause = float(os.environ.get(ray_init.DATA_LOOP_PAUSE_ENV, ray_init.DATA_LOOP_PAUSE_S))

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        manifest = generate_synthetic_dataset(
            workdir / "data", ["move_left", "move_right", "move_up", "move_down"],
            videos_per_class=10, seed=0, size="128x96", fps=10, seconds=3)
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        # 2 CPUs for the workers + 1 for Ray Data decoding (logical; the machine has 2 cores)
        ray_init.init_ray("local", num_cpus=3, include_dashboard=False, log_to_driver=False)
        try:
            rows = [run(int(w), args, workdir, manifest, uri)
                    for w in args.workers.split(",")]
        finally:
            ray.shutdown()
    for row in rows:
        row["speedup"] = row["clips_per_s"] / rows[0]["clips_per_s"]
    m = machine()
    print(f"A0-stream {args.frames}x{args.resolution}, global batch {args.batch}, "
          f"data loop pause {pause} s, {m['cpu']} ({m['cores']} cores), torch {m['torch']}")
    print(markdown_table(rows, ["workers", "micro_batch", "global_batch", "clips_per_s",
                                "step_s", "speedup", "steps_measured"]))
    name = ("train_speed" + (f"_batch{args.batch}" if args.batch != 8 else "")
            + (f"_workers{args.workers.replace(',', '-')}" if args.workers != "1,2" else "")
            + ("_unpaced" if pause <= 0 else ""))
    path = write_results(name, {"model": "a0-stream", "resolution": args.resolution,
                                "frames": args.frames, "data_loop_pause_s": pause,
                                "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
