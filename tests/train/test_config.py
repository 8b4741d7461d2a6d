"""Training configs: every shipped YAML loads, flags beat overrides beat YAML, model-native
defaults, and combinations that cannot work are refused before anything starts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from movinet_ray.cli import build_parser
from movinet_ray.config import ConfigError, load_config
from movinet_ray.train import TrainConfig
from movinet_ray.train.cli import config_from_args

ROOT = Path(__file__).resolve().parents[2]
TRAIN_YAMLS = sorted(ROOT.glob("cluster/train_*.yaml")) + sorted(
    (ROOT / "movinet_ray/train/configs").glob("*.yaml"))


@pytest.mark.parametrize("path", TRAIN_YAMLS, ids=lambda p: p.name)
def test_every_shipped_training_yaml_loads_and_resolves(path):
    cfg = load_config(TrainConfig, path, ["data.manifest=m.parquet"]).resolved()
    assert cfg.data.resolution and cfg.data.frames and cfg.data.fps
    assert cfg.micro_batch >= 1
    assert path.read_text().lstrip().startswith("#")  # names the command that runs it


def test_cluster_manifests_run_the_training_job_with_token_auth():
    rayjob = yaml.safe_load((ROOT / "cluster/rayjob-train.yaml").read_text())
    assert rayjob["kind"] == "RayJob"
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/train.py"] and (ROOT / argv[1]).exists()
    config = ROOT / argv[argv.index("--config") + 1]
    assert config in TRAIN_YAMLS
    cluster = rayjob["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token" and cluster["rayVersion"] == "2.60.0"
    gpus = [g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
            for g in cluster["workerGroupSpecs"]]
    assert gpus and all(int(g) >= 1 for g in gpus)
    env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["MLFLOW_TRACKING_URI"].startswith("http")

    launcher = yaml.safe_load((ROOT / "cluster/launcher-gpu.yaml").read_text())
    assert {"cluster_name", "provider", "available_node_types"} <= set(launcher)
    assert any(t["resources"].get("GPU", 0) >= 1
               for t in launcher["available_node_types"].values())
    starts = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    trained = load_config(TrainConfig, config, ["data.manifest=m.parquet"]).resolved()
    assert trained.scaling.use_gpu and trained.run.storage_path.startswith("s3://")
    assert trained.tracking.tracking_uri.startswith("http")


def test_flags_beat_overrides_beat_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: a2-base}\noptim: {lr: 3e-4}\ntrain: {steps: 10}\n"
                    "data: {manifest: m.parquet}\n")
    args = build_parser().parse_args(shlex.split(
        f"train --config {path} train.steps=20 optim.lr=1e-2 --steps 30 --freeze-backbone "
        "--init models:/motion@candidate --num-workers 4 --batch-size 32 "
        "--quantization-friendly"))
    cfg = config_from_args(args)
    assert cfg.model.name == "a2-base"          # YAML
    assert cfg.optim.lr == 1e-2                 # override (YAML's 3e-4 read as a number)
    assert cfg.train.steps == 30                # flag
    assert cfg.model.freeze_backbone and cfg.model.init == "models:/motion@candidate"
    assert cfg.model.quantization_friendly
    assert cfg.scaling.num_workers == 4 and cfg.micro_batch == 8


def test_model_native_defaults():
    for name, size, fps, frames in (("a0-stream", 172, 5, 50), ("a3-base", 256, 12, 120),
                                    ("a5-stream", 320, 12, 120), ("frame2d", 172, 5, 50)):
        cfg = load_config(TrainConfig, None, [f"model.name={name}", "data.manifest=m"])
        d = cfg.resolved().data
        assert (d.resolution, d.fps, d.frames) == (size, fps, frames), name
    cfg = load_config(TrainConfig, None, ["model.name=frame2d-a2", "data.manifest=m"])
    assert cfg.model.architecture == "frame2d" and cfg.model.variant == "a2"
    assert cfg.resolved().data.resolution == 224


@pytest.mark.parametrize("overrides, message", [
    (["model.name=a6-stream"], "model.name"),
    (["train.batch_size=10", "scaling.num_workers=4"], "must divide"),
    (["train.eval_every=30", "train.checkpoint_every=100"], "multiple of"),
    (["train.precision=bf16"], "needs GPUs"),
    (["optim.nesterov=true"], "unknown key"),
    (["data.decode_tasks=0"], "data.decode_tasks must be >= 1"),
    (["train.target_top1=90"], r"target_top1 must be in \(0, 1\]"),
    ([], "data.manifest is required"),
])
def test_refuses_what_cannot_work(overrides, message):
    base = [] if not overrides else ["data.manifest=m.parquet"]
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, base + overrides).resolved()


def test_hflip_swap_pairs_load_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  manifest: m.parquet\n  augmentation:\n    hflip: true\n"
                    "    hflip_swap: [[move_left, move_right]]\n")
    cfg = load_config(TrainConfig, path,
                      ["data.augmentation.hflip_swap=[[rotate_cw, rotate_ccw], [a, b]]"])
    assert cfg.data.augmentation.hflip_swap == (("rotate_cw", "rotate_ccw"), ("a", "b"))
    assert load_config(TrainConfig, path).data.augmentation.hflip_swap == (
        ("move_left", "move_right"),)
