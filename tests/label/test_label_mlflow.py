"""The demo hook labels with a registered model: rows name the URI and the registry version."""

from __future__ import annotations

import pytest

from movinet_ray.label import LabelStore, demo_label
from movinet_ray.tracking import log_model, setup_mlflow

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_demo_label_with_a_registered_model(ray_local, archive, label_model, mlflow_uri,
                                            tmp_path, capsys):
    path, _, info = label_model
    mlflow = setup_mlflow(mlflow_uri, experiment="label-test")
    with mlflow.start_run():
        log_model(path, info, registered_model_name="tiny", aliases=("prod",))
        log_model(path, info, name="again", registered_model_name="tiny", aliases=("prod",))
    summary = demo_label(archive.root / "good", "models:/tiny@prod", tmp_path / "out",
                         mlflow_uri)
    printed = capsys.readouterr().out
    assert summary["ok"] == summary["labelled"] == 7 and summary["model_version"] == "2"
    assert str(tmp_path / "out" / "videos") in printed and "7 ok" in printed
    rows = LabelStore(str(tmp_path / "out")).read_videos(["model_uri", "model_version"])
    assert set(rows["model_uri"].to_pylist()) == {"models:/tiny@prod"}
    assert set(rows["model_version"].to_pylist()) == {"2"}
