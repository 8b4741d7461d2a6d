"""The training job's pieces without Ray: schedule, parameter groups, metrics, init sources,
per-step logging that survives restarts, the runs table."""

from __future__ import annotations

import pytest
import torch

from movinet_ray.config import ConfigError, load_config
from movinet_ray.model import create_model, model_info, save_model
from movinet_ray.model.layers import SqueezeExcitation
from movinet_ray.train import TrainConfig
from movinet_ray.train.loop import remaining_steps
from movinet_ray.train.metrics import EvalSums, summarize
from movinet_ray.train.optim import freeze_backbone_, lr_factor, make_optimizer, param_groups
from movinet_ray.train.weights import initial_model
from tests.conftest import tf_fixture_dir


def _cfg(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, None, ["data.manifest=m.parquet", *overrides])


def test_warmup_then_cosine_to_zero_or_constant():
    assert [lr_factor(s, 4, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 20) == 1.0
    assert lr_factor(12, 4, 20) == pytest.approx(0.5)
    assert lr_factor(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 0, 10) == 1.0 and lr_factor(5, 0, 10) == pytest.approx(0.5)
    assert [lr_factor(s, 4, 20, "constant") for s in (0, 3, 4, 12, 19)] == [0.25, 1.0, 1.0, 1.0,
                                                                          1.0]


def test_a_run_resumed_from_the_checkpoint_that_reached_its_target_trains_no_further():
    cfg = _cfg("train.steps=400", "train.target_top1=0.8")
    assert remaining_steps(cfg, 0, None) == range(1, 401)  # a fresh run
    assert remaining_steps(cfg, 250, 0.7) == range(251, 401)  # restarted below the target
    # the run stopped at step 300 (0.85) and lost its driver before saving the model
    assert list(remaining_steps(cfg, 300, 0.85)) == []
    assert list(remaining_steps(cfg, 300, 0.8)) == []  # "reaches" includes equality
    assert remaining_steps(_cfg("train.steps=400"), 300, 0.85) == range(301, 401)  # no target
    # a raised target on resume: train on towards it
    assert remaining_steps(_cfg("train.steps=400", "train.target_top1=0.9"), 300,
                           0.85) == range(301, 401)


def test_param_groups_freeze_backbone_lr_factor_and_no_decay_on_scalars():
    model = create_model("a0", "stream", num_classes=4)
    cfg = _cfg("model.backbone_lr_mult=0.1", "optim.lr=0.01", "optim.weight_decay=0.05")
    groups = param_groups(model, cfg)
    head = {id(p) for p in model.classifier.parameters()}
    for g in groups:
        in_head = {id(p) in head for p in g["params"]}
        assert len(in_head) == 1  # a group is all classifier or all backbone
        assert g["lr"] == pytest.approx(0.01 if in_head == {True} else 0.001)
        assert (g["weight_decay"] > 0) == all(p.dim() > 1 for p in g["params"])
    rezero = [p for n, p in model.named_parameters() if n.endswith("rezero")]
    assert rezero and all(any(p is q for g in groups for q in g["params"] if g["weight_decay"] == 0)
                          for p in rezero)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))

    freeze_backbone_(model)
    frozen = param_groups(model, cfg)
    assert {id(p) for g in frozen for p in g["params"]} == head
    rms = make_optimizer(model, _cfg("optim.optimizer=rmsprop"))
    assert isinstance(rms, torch.optim.RMSprop) and rms.defaults["eps"] == 1.0


def test_metrics_are_exact_sums_over_workers():
    logits = torch.tensor([[3.0, 1, 0], [0, 2, 1], [1, 0, 2], [2, 1, 0], [0, 1, 2]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    whole = EvalSums.zeros(3)
    whole.add(logits, labels)
    parts = [EvalSums.zeros(3), EvalSums.zeros(3)]
    parts[0].add(logits[:2], labels[:2])
    parts[1].add(logits[2:], labels[2:])
    reduced = EvalSums.unpacked(parts[0].packed() + parts[1].packed(), 3)  # = an all-reduce
    assert torch.equal(reduced.confusion, whole.confusion)
    s = summarize(reduced)
    # predictions 0, 1, 2, 0, 2 against 0, 1, 1, 2, 2
    assert s["top1"] == pytest.approx(3 / 5) and s["videos"] == 5
    assert s["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert s["per_class"][0] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                                 "support": 1}
    assert s["per_class"][1]["recall"] == 0.5 and s["per_class"][2]["precision"] == 0.5
    assert s["mean_class_recall"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    # top-5 over 3 classes is always right; the loss is the mean cross-entropy
    assert s["top5"] == 1.0
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert s["loss"] == pytest.approx(expected, rel=1e-6)


def test_rezero_init_sets_every_residual_scale_of_a_fresh_movinet_only(tmp_path):
    def scales(model):
        return {n: p.item() for n, p in model.named_parameters() if n.endswith("rezero")}

    fresh, _ = initial_model(_cfg("model.rezero_init=1.0").model, ("a", "b"))
    official, _ = initial_model(_cfg().model, ("a", "b"))
    assert len(scales(fresh)) == 15 and set(scales(fresh).values()) == {1.0}  # A0: 15 blocks
    assert set(scales(official).values()) == {0.0}
    # from saved weights the saved scales win
    path = save_model(tmp_path / "m.pt", official,
                      model_info(official, ["a", "b"], resolution=64, fps=5, frames=8))
    loaded, _ = initial_model(_cfg(f"model.init={path}", "model.rezero_init=1.0").model,
                              ("a", "b"))
    assert set(scales(loaded).values()) == {0.0}
    frame, _ = initial_model(_cfg("model.name=frame2d", "model.rezero_init=1.0").model, ("a",))
    assert not scales(frame)


def test_init_from_an_earlier_model_keeps_the_backbone_and_replaces_a_foreign_head(tmp_path):
    torch.manual_seed(1)
    earlier = create_model("a0", "stream", num_classes=3)
    path = save_model(tmp_path / "earlier.pt", earlier,
                      model_info(earlier, ["x", "y", "z"], resolution=64, fps=5, frames=8))
    section = _cfg(f"model.init={path}", "model.dropout=0.3").model
    same, source = initial_model(section, ("x", "y", "z"))
    assert source == str(path) and same.cfg.dropout == 0.3
    for (name, a), b in zip(earlier.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a, b), name
    other, _ = initial_model(section, ("left", "right", "up", "down"))
    assert other.num_classes == 4
    assert torch.equal(other.classifier.hidden.weight, earlier.classifier.hidden.weight)
    assert torch.equal(other.blocks[2][1].projection.conv.weight,
                       earlier.blocks[2][1].projection.conv.weight)
    with pytest.raises(ConfigError, match="same model type"):
        initial_model(_cfg(f"model.init={path}", "model.name=a0-base").model, ("x", "y", "z"))
    with pytest.raises(ConfigError, match="same model type"):
        initial_model(_cfg(f"model.init={path}", "model.name=frame2d").model, ("x", "y", "z"))


def test_quantization_friendly_is_relu6_without_se_and_continues_only_its_kind(tmp_path):
    def kinds(model):
        return {type(m) for m in model.modules()}

    friendly, _ = initial_model(_cfg("model.quantization_friendly=true").model, ("a", "b"))
    standard, _ = initial_model(_cfg().model, ("a", "b"))
    assert (friendly.cfg.activation, friendly.cfg.se_type) == ("relu6", "none")
    assert torch.nn.ReLU6 in kinds(friendly) and SqueezeExcitation not in kinds(friendly)
    assert SqueezeExcitation in kinds(standard) and torch.nn.ReLU6 not in kinds(standard)
    path = save_model(tmp_path / "q.pt", friendly,
                      model_info(friendly, ["a", "b"], resolution=64, fps=5, frames=8))
    again, _ = initial_model(
        _cfg(f"model.init={path}", "model.quantization_friendly=true").model, ("a", "b"))
    assert again.cfg.se_type == "none"
    for (name, a), b in zip(friendly.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ConfigError, match="is quantization-friendly"):
        initial_model(_cfg(f"model.init={path}").model, ("a", "b"))
    with pytest.raises(ConfigError, match="MoViNet option"):
        _cfg("model.name=frame2d", "model.quantization_friendly=true")


def test_init_from_official_kinetics600_weights():
    weights = tf_fixture_dir("a0_stream") / "weights.npz"
    section = _cfg(f"model.init=kinetics600:{weights}").model
    model, source = initial_model(section, ("a", "b"))
    from movinet_ray.model import load_kinetics600

    official, info = load_kinetics600(weights, "a0", "stream")
    assert source.startswith("kinetics600:") and info.num_classes == 600
    assert model.num_classes == 2
    for name, value in official.state_dict().items():
        if not name.startswith("classifier.fc."):
            assert torch.equal(model.state_dict()[name], value), name
    with pytest.raises(ConfigError, match="squeeze-excitation and hard-swish"):
        initial_model(_cfg(f"model.init=kinetics600:{weights}",
                           "model.quantization_friendly=true").model, ("a", "b"))
    with pytest.raises(ConfigError, match="MoViNets only"):
        initial_model(_cfg(f"model.init=kinetics600:{weights}", "model.name=frame2d").model,
                      ("a", "b"))


def test_step_logger_logs_each_step_once_across_a_restart(mlflow_uri):
    from movinet_ray.tracking import StepLogger, setup_mlflow

    mlflow = setup_mlflow(mlflow_uri, "steps")
    run_id = mlflow.MlflowClient().create_run(
        mlflow.get_experiment_by_name("steps").experiment_id).info.run_id
    first = StepLogger(run_id, mlflow_uri)
    for step in range(1, 8):
        first.log(step, {"train/loss": 1.0 / step, "train/lr": 0.1})
    first.flush()
    # a restart from the step-4 checkpoint replays steps 5..7, then goes on to 10
    second = StepLogger(run_id, mlflow_uri)
    assert second.logged_through == 7
    second.log(4, {"train/resumed_from_step": 4}, always=True)
    logged = [second.log(step, {"train/loss": 10.0 + step}) for step in range(5, 11)]
    second.flush()
    assert logged == [False, False, False, True, True, True]
    history = mlflow.MlflowClient().get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, 11))
    assert {m.step: m.value for m in history}[7] == pytest.approx(1 / 7)  # the first value
    resumes = mlflow.MlflowClient().get_metric_history(run_id, "train/resumed_from_step")
    assert [(m.step, m.value) for m in resumes] == [(4, 4.0)]


def test_step_logger_flushes_its_own_store_whatever_the_process_default(mlflow_uri, tmp_path):
    """A Ray Train worker's MLflow default is not the run's store (its cwd is a Ray session
    folder): flushing must wait for the logger's own queue and touch no other store."""
    from movinet_ray.tracking import StepLogger, setup_mlflow

    mlflow = setup_mlflow(mlflow_uri, "flush")
    run_id = mlflow.MlflowClient().create_run(
        mlflow.get_experiment_by_name("flush").experiment_id).info.run_id
    elsewhere = tmp_path / "elsewhere" / "mlflow.db"
    elsewhere.parent.mkdir()
    default = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{elsewhere}")
    try:
        logger = StepLogger(run_id, mlflow_uri)
        for step in range(1, 51):
            logger.log(step, {"train/loss": 1.0 / step})
        logger.flush()
        history = mlflow.MlflowClient(mlflow_uri).get_metric_history(run_id, "train/loss")
    finally:
        mlflow.set_tracking_uri(default)
    assert sorted(m.step for m in history) == list(range(1, 51))
    assert not elsewhere.exists()


def test_ui_serves_the_sqlite_store_and_its_artifacts(tmp_path):
    from movinet_ray.tracking import ui_command

    cmd, env = ui_command(f"sqlite:///{tmp_path}/m.db", port=5432)
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "5432" in cmd
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert cmd[cmd.index("--workers") + 1] == "1"
    with pytest.raises(ValueError, match="database store"):
        ui_command("http://127.0.0.1:5000")

