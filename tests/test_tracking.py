"""Models go into MLflow (SQLite) and come back by URI, with their class names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from movinet_ray.model import create_model, model_info, save_model
from movinet_ray.tracking import log_model, resolve_model, setup_mlflow
from tests.model.conftest import randomize_


def test_register_and_resolve_by_alias_and_run(tmp_path, mlflow_uri):
    torch.manual_seed(0)
    model = randomize_(create_model("a0", "stream", num_classes=3))
    info = model_info(model, ["left", "right", "still"], resolution=64, fps=5, frames=8)
    ckpt = save_model(tmp_path / "model.pt", model, info)
    mlflow = setup_mlflow(mlflow_uri, experiment="tracking-test")
    with mlflow.start_run() as run:
        logged, version = log_model(ckpt, info, registered_model_name="motion",
                                    aliases=("candidate",))
    assert version == "1"
    clip = torch.rand(2, 3, 4, 64, 64)
    with torch.no_grad():
        expected, _ = model(clip)
    for uri in ("models:/motion@candidate", "models:/motion/1",
                f"runs:/{run.info.run_id}/model"):
        loaded, loaded_info = resolve_model(uri, tracking_uri=mlflow_uri)
        assert loaded_info.class_names == ("left", "right", "still")
        assert loaded_info.extra["model_uri"] == uri
        with torch.no_grad():
            torch.testing.assert_close(loaded(clip)[0], expected)
    # The generic MLflow pyfunc contract: clips in, probabilities out.
    pyfunc = mlflow.pyfunc.load_model("models:/motion@candidate")
    probs = pyfunc.predict(clip.numpy())
    np.testing.assert_allclose(probs, torch.softmax(expected, -1).numpy(), atol=1e-5)
    assert probs.shape == (2, 3)


def test_unknown_alias_is_a_clear_error(mlflow_uri):
    setup_mlflow(mlflow_uri)
    with pytest.raises(Exception, match="nothere|not found|RESOURCE_DOES_NOT_EXIST"):
        resolve_model("models:/nothere@candidate", tracking_uri=mlflow_uri)
