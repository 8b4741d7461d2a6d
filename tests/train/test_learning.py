"""Learning is shown, not assumed: motion that no single frame shows.

A0-stream trained from scratch by the job (2 Ray Train workers) on the four direction classes
of the synthetic motion dataset reaches a validation top-1 far above chance, read back from
MLflow. Every frame of every class has the object at a uniformly random place (the generator's
KS-tested property), so only the order of frames tells the classes apart: the frame baseline,
same job and data, sees a clip as an unordered set of frames and stays near chance (25 %).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from movinet_ray.tracking import setup_mlflow
from movinet_ray.train.demo import DEMO_CLASSES, motion_config, motion_data
from movinet_ray.train.job import train

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # ~6 min alone; a hang guard

# When A0 leaves chance varies from run to run: in a sweep of seeds 1-5 (2026-12-05, 8 frames)
# the training loss fell below 1.0 at step 125-225 and validation top-1 at step 300 was
# 0.905-1.0, and one CI run was still at chance (0.265) at step 300; with the 6 frames below,
# runs of seed 0 stopped at 300, 300, 300 and 350 (2026-12-08). Up to 450 steps leave ~100
# steps of margin past the latest; the run ends at the first evaluation (every 50 steps) that
# reaches the bar, 80 %, so a run that learns early does not pay for the slow ones.
A0_STEPS, EVAL_EVERY, TARGET = 450, 50, 0.8
FRAME_STEPS = 50  # evaluated at 25 and 50
# The demo recipe's clips are 8 frames; 6 (the same 2.5 fps, 2.4 s) are three quarters of the
# model's work a step; A0 stopped at step 300-350 with them (8 frames: 250 or 300 in four runs
# of 2026-12-07), while 4 frames delayed it further (0.53 at step 350). docs/train.md has the
# runs.
FRAMES = 6

VAL_VIDEOS = 4 * 50  # motion_data: 200 videos per class, a quarter held out


def _run(workdir, manifest, model: str, steps: int, every: int, uri: str, target=None,
         register=True):
    cfg = motion_config(manifest, workdir, model, uri, seed=0, steps=steps)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, frames=FRAMES),
        train=dataclasses.replace(cfg.train, eval_every=every, checkpoint_every=every,
                                  target_top1=target),
        tracking=dataclasses.replace(cfg.tracking, register=register))
    result = train(cfg)
    return result, setup_mlflow(uri).MlflowClient().get_run(result.run_id).data.metrics


def test_a0_stream_learns_directions_that_the_frame_baseline_cannot(tmp_path, ray_local,
                                                                    mlflow_uri):
    manifest = motion_data(tmp_path, seed=0)
    video, metrics = _run(tmp_path, manifest, "a0-stream", A0_STEPS, EVAL_EVERY, mlflow_uri,
                          TARGET)
    frame, frame_metrics = _run(tmp_path, manifest, "frame2d", FRAME_STEPS, 25, mlflow_uri,
                                register=False)

    top1 = metrics["best/val_top1"]
    assert top1 == pytest.approx(video.best_val_top1)
    assert top1 >= TARGET, f"A0-stream reached only {top1:.2f} on {len(DEMO_CLASSES)} classes"
    assert metrics["val/videos"] == VAL_VIDEOS  # every validation video, none dropped
    # it stopped at the first evaluation that reached the target
    steps = metrics["train/steps_done"]
    assert steps % EVAL_EVERY == 0 and steps <= A0_STEPS
    client = setup_mlflow(mlflow_uri).MlflowClient()
    history = client.get_metric_history(video.run_id, "val/top1")
    assert [m.step for m in history] == list(range(EVAL_EVERY, int(steps) + 1, EVAL_EVERY))
    assert all(m.value < TARGET for m in history[:-1])  # it did not train past the target
    assert top1 == pytest.approx(max(m.value for m in history))

    # chance is 0.25; 200 validation videos put ~0.03 of binomial noise on it, and "best" is
    # the max of two evaluations
    frame_top1 = frame_metrics["best/val_top1"]
    assert frame_top1 <= 0.35, f"the frame baseline reached {frame_top1:.2f}: frames leak motion"
    assert frame_metrics["val/videos"] == VAL_VIDEOS

    # the best checkpoint's confusion matrix and per-class recalls agree with its top-1
    with open(client.download_artifacts(video.run_id, "eval/confusion_matrix.json")) as f:
        matrix = json.load(f)["confusion_matrix"]
    assert sum(map(sum, matrix)) == VAL_VIDEOS
    assert sum(matrix[i][i] for i in range(4)) / VAL_VIDEOS == pytest.approx(top1)
    for i, name in enumerate(DEMO_CLASSES):
        assert metrics[f"val_class/{name}/recall"] == pytest.approx(matrix[i][i] / sum(matrix[i]))
    # the registered model is the best checkpoint
    assert video.model_uri == "models:/movinet-a0-stream@candidate"
