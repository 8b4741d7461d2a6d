"""``movinet demo``: the project end to end on an embedded default.

One local Ray, one SQLite MLflow store, everything under ``--out``:

1. the model: A0-stream fed frame by frame equals the whole clip;
2. data + training: a generated motion dataset (four directions no single frame can tell
   apart), A0-stream and the frame baseline trained briefly on 2 Ray Train workers, A0
   registered as ``movinet-a0-stream@candidate``, the MLflow comparison printed;
3. labelling: the generated archive labelled in stream mode with the model just trained,
   Parquet per video and per chunk;
4. serving: the trained model behind Ray Serve, one video classified over HTTP.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on generated data")
    p.add_argument("--out", default="demo_out", help="working folder (data, runs, MLflow, labels)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: sqlite:///<out>/mlflow.db)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port for the serving step")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def check_streaming(frames: int = 16, size: int = 172) -> float:
    """Stream a random clip through a random A0-stream one frame at a time; return the
    largest difference from the whole-clip logits."""
    import torch

    from .model import create_model

    torch.manual_seed(0)
    model = create_model("a0", "stream").eval()
    video = torch.rand(1, 3, frames, size, size)
    with torch.inference_mode():
        whole, _ = model(video)
        state = model.init_state(1, size, size)
        for t in range(frames):
            logits, state = model(video[:, :, t:t + 1], state)
    return (logits - whole).abs().max().item()


def _banner(step: str) -> None:
    print(f"\n=== {step} ===", flush=True)


def run(args) -> int:
    import ray

    from .label.job import demo_label
    from .ray_init import init_ray
    from .serve.run import demo_serve
    from .train.demo import demo_train

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tracking_uri = args.tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
    started = time.perf_counter()

    _banner("1/4 model: A0-stream frame by frame vs whole clip")
    diff = check_streaming()
    print(f"16 frames at 172x172: max |stream - clip| = {diff:.1e} "
          f"({'ok' if diff < 1e-4 else 'MISMATCH'})")
    if diff >= 1e-4:
        return 1

    init_ray("local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _banner("2/4 data + training: A0-stream vs the frame baseline (Ray Train, MLflow)")
        model_uri = demo_train(out / "train", tracking_uri, seed=args.seed)

        _banner(f"3/4 labelling the generated archive with {model_uri} (Ray Data)")
        archive = out / "train" / "motion"
        summary = demo_label(archive, model_uri, out / "labels", tracking_uri)

        _banner(f"4/4 serving {model_uri} (Ray Serve), one video over HTTP")
        video = _one_val_video(archive)
        answer = demo_serve(model_uri, video, tracking_uri, port=args.port)
    finally:
        ray.shutdown()

    print(f"\nDone in {time.perf_counter() - started:.0f} s. Everything is under {out}:")
    print(f"  MLflow:  movinet ui --tracking-uri {tracking_uri}")
    print(f"  labels:  {summary['videos_dir']}  (per chunk: {summary['timeline_dir']})")
    print(f"  served:  {video.name} (true class {video.parent.name}) -> "
          f"{answer['top_k'][0]['label']}")
    return 0 if summary["failed"] == 0 else 1


def _one_val_video(archive: Path) -> Path:
    """A validation video of the generated archive (never seen in training)."""
    from .data import read_manifest

    manifest = read_manifest(archive / "manifest.parquet")
    row = next(r for r in manifest.rows() if r["split"] == "val")
    path = Path(row["path"])
    return path if path.is_absolute() else (archive / path).resolve()
