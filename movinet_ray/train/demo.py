"""The training part of ``movinet demo``: motion data, A0-stream vs. the frame baseline.

The recipe (:func:`motion_config`): four direction classes that no single frame can tell
apart, small clips, A0-stream from scratch, two Ray Train workers. The demo runs A0 for 300
steps (it passes 90 % validation top-1 around there) and the frame baseline, which sees a
clip as an unordered set of frames and cannot learn the directions at all, for 100.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from ..config import load_config
from .config import TrainConfig

log = logging.getLogger(__name__)

DEMO_CLASSES = ("move_left", "move_right", "move_up", "move_down")
DEMO_EXPERIMENT = "movinet-demo"


def motion_data(workdir: Path, videos_per_class: int = 200, seed: int = 0) -> Path:
    """A slice of the synthetic motion dataset: the four directions, 64x64, 4 s at 10 fps,
    a quarter held out for validation; returns the manifest path. Deterministic in its
    arguments (~15 s to write 800 videos on 2 cores)."""
    from ..data import generate_synthetic_dataset

    return generate_synthetic_dataset(
        Path(workdir) / "motion", DEMO_CLASSES, videos_per_class=videos_per_class, seed=seed,
        size="64x64", fps=10, seconds=4, val_fraction=0.25, distractors=0, noise=2,
        workers=2)


def motion_config(manifest: Path, workdir: Path, model: str, tracking_uri: str,
                  seed: int = 0, steps: int = 1000, **sections) -> TrainConfig:
    """The small-data recipe for ``model`` (``a0-stream`` or ``frame2d``) on
    :func:`motion_data`; ``sections`` replace whole config sections.

    Why these values (docs/train.md, "Does it learn?", has the runs): 8 frames at 2.5 fps
    span 3.2 s, so an object moves 2-5 px a frame; 16 clips per worker, because with 8 the
    per-worker BatchNorm statistics kept three 2-worker runs at chance for 900-1200 steps
    while one worker of 16 learned by step 400; ReZero scales starting at 1, so the network
    sees motion from the first step; a constant LR of 3e-3 without dropout. A0-stream
    reached 94 % at step 300 and 99 % at 400 this way on 2 workers. Decoding keeps its
    default task count: one task at a time ran steps faster but learned more slowly
    (docs/train.md). 32 videos per decoding task: these videos are tiny, so with the default
    8 Ray Data's per-task overhead outweighed the decoding (the pipeline alone fed 2
    workers 0.18 s a batch with 32, 0.27-0.33 s with 8).
    """
    every = max(1, steps // 4)
    overrides = [
        f"model.name={model}", "model.bn_momentum=0.1", "model.dropout=0.0",
        *([] if model.startswith("frame2d") else ["model.rezero_init=1.0"]),
        f"data.manifest={manifest}", "data.resolution=64", "data.frames=8", "data.fps=2.5",
        "data.augment=false", "data.decode_cpus=0.5", "data.videos_per_task=32",
        "optim.lr=3e-3", "optim.warmup_steps=15", "optim.schedule=constant",
        f"train.steps={steps}", "train.batch_size=32", f"train.eval_every={every}",
        f"train.checkpoint_every={every}", f"train.seed={seed}",
        "scaling.num_workers=2", "scaling.cpus_per_worker=0.5",
        f"run.storage_path={Path(workdir) / 'runs'}",
        f"run.name=demo-{model}-{time.strftime('%Y%m%d-%H%M%S')}",
        f"tracking.tracking_uri={tracking_uri}", f"tracking.experiment={DEMO_EXPERIMENT}",
    ]
    cfg = load_config(TrainConfig, None, overrides)
    return dataclasses.replace(cfg, **sections)


def demo_train(workdir: Path, tracking_uri: str, seed: int = 0, steps: int = 300,
               frame_steps: int = 100) -> str:
    """Generate motion data under ``workdir``, train A0-stream and the frame baseline briefly
    on 2 workers, register A0 as ``@candidate``, print the runs comparison.

    Uses the connected Ray, or starts a local one (2 CPUs) and stops it afterwards.

    Returns:
        the registered model's URI, ``models:/movinet-a0-stream@candidate``.
    """
    import ray

    from ..ray_init import init_ray
    from ..tracking import compare_runs, format_table
    from .cli import COMPARE_COLUMNS
    from .job import train

    workdir = Path(workdir)
    manifest = motion_data(workdir, seed=seed)
    started = not ray.is_initialized()
    if started:
        init_ray("local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        video = train(motion_config(manifest, workdir, "a0-stream", tracking_uri, seed, steps))
        frame = motion_config(manifest, workdir, "frame2d", tracking_uri, seed, frame_steps)
        frame = dataclasses.replace(frame, tracking=dataclasses.replace(frame.tracking,
                                                                        register=False))
        train(frame)
    finally:
        if started:
            ray.shutdown()
    print(format_table(compare_runs(DEMO_EXPERIMENT, tracking_uri), COMPARE_COLUMNS))
    return video.model_uri
