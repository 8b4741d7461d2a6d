"""The shipped Serve config file and RayService manifest load into the typed config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from movinet_ray.config import ConfigError
from movinet_ray.serve import ServeConfig, load_serve_config
from movinet_ray.serve.app import build_app
from movinet_ray.serve.config import read_serve_file

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def test_serve_yaml_names_every_field_and_loads():
    file = read_serve_file(CLUSTER / "serve.yaml")
    assert (file.app_name, file.route_prefix, file.host, file.port) == (
        "movinet", "/", "127.0.0.1", 8000)
    assert set(file.args) == {f.name for f in dataclasses.fields(ServeConfig)}
    cfg = load_serve_config(file.args, ["model=ckpt.pt", "replicas.num_cpus=1"])
    assert cfg.model == "ckpt.pt" and cfg.replicas.num_cpus == 1.0
    defaults = ServeConfig(model="ckpt.pt")
    assert dataclasses.replace(cfg, replicas=defaults.replicas) == defaults  # documents defaults


def test_rayservice_carries_the_same_app():
    from ray.serve.schema import ServeDeploySchema

    (service,) = [d for d in yaml.safe_load_all((CLUSTER / "rayservice.yaml").read_text())
                  if d and d.get("kind") == "RayService"]
    serve_cfg = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    (app,) = serve_cfg.applications
    local = yaml.safe_load((CLUSTER / "serve.yaml").read_text())["applications"][0]
    assert app.import_path == local["import_path"] == "movinet_ray.serve.app:build_app"
    cfg = load_serve_config(app.args)
    assert cfg.model == "models:/movinet@prod"
    assert cfg.replicas.autoscaling.max_replicas == 4
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == "2.60.0"


def test_build_app_applies_replica_settings():
    app = build_app({"model": "x.pt", "max_sessions": 8,
                     "replicas": {"num_cpus": 2, "num_gpus": 1,
                                  "autoscaling": {"max_replicas": 3}}})
    deployment = app._bound_deployment
    assert deployment.ray_actor_options == {"num_cpus": 2.0, "num_gpus": 1.0}
    assert deployment.max_ongoing_requests == 8 + 8
    assert deployment._deployment_config.autoscaling_config.max_replicas == 3
    fixed = build_app({"model": "x.pt", "replicas": {"num_replicas": 2}})._bound_deployment
    assert fixed.num_replicas == 2


@pytest.mark.parametrize("args, match", [
    ({"model": "x.pt", "max_sesions": 3}, r"unknown key\(s\) \['max_sesions'\]"),
    ({"model": "x.pt", "top_k": "five"}, "top_k: expected an integer"),
    ({}, "model: give a checkpoint path"),
    ({"model": "x.pt", "max_sessions": 0}, "max_sessions: must be >= 1"),
    ({"model": "x.pt", "replicas": {"num_cpu": 1}}, r"unknown key\(s\) \['num_cpu'\]"),
])
def test_bad_args_fail_at_deploy_time(args, match):
    with pytest.raises(ConfigError, match=match):
        build_app(args)
