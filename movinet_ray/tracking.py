"""MLflow: where runs are recorded and models are registered, and how models come back.

A registered model is an MLflow pyfunc whose artifact is a model file: our checkpoint (weights
+ class names + input size, see :mod:`movinet_ray.model.checkpoint`; float32 or float16
weights) or an ONNX stream step carrying the same metadata (float32 or int8, see
:mod:`movinet_ray.model.runtime`). Its ``predict`` takes clips ``[B, 3, T, H, W]`` in [0, 1]
and returns class probabilities, so any MLflow tool can use it, while our jobs load the file
directly for streaming (:func:`resolve_model`).

Default store: SQLite at ``./mlflow.db`` with artifacts under ``./mlartifacts`` (override with
``MLFLOW_TRACKING_URI`` or ``--tracking-uri``; multi-node clusters need an ``mlflow server``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
CHECKPOINT_ARTIFACT = "checkpoint"


def setup_mlflow(tracking_uri: str | None = None, experiment: str | None = None):
    """Point MLflow at ``tracking_uri`` (else ``$MLFLOW_TRACKING_URI``, else ./mlflow.db).

    For a local SQLite store the experiment's artifacts go to ``./mlartifacts`` next to it.
    Returns the ``mlflow`` module.
    """
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    import mlflow

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    if experiment:
        if mlflow.get_experiment_by_name(experiment) is None:
            location = None
            if uri.startswith("sqlite:///"):
                db = Path(uri[len("sqlite:///"):]).resolve()
                location = (db.parent / DEFAULT_ARTIFACTS).as_uri()
            try:
                mlflow.create_experiment(experiment, artifact_location=location)
            except mlflow.exceptions.MlflowException:
                pass  # created concurrently by another worker
        mlflow.set_experiment(experiment)
    return mlflow


class MoViNetPyfunc:
    """Placeholder replaced at import by the real ``mlflow.pyfunc.PythonModel`` subclass."""


def _pyfunc_class():
    import mlflow.pyfunc

    class _MoViNetPyfunc(mlflow.pyfunc.PythonModel):
        """Clips ``[B, 3, T, H, W]`` float in [0, 1] -> class probabilities ``[B, C]``."""

        def load_context(self, context):
            from .model.runtime import load_variant

            self.model, self.info = load_variant(context.artifacts[CHECKPOINT_ARTIFACT])

        def predict(self, context, model_input, params=None):
            import torch

            if isinstance(model_input, dict):  # a named-tensor signature delivers {"clip": ...}
                model_input = model_input["clip"]
            clip = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
            with torch.inference_mode():
                logits, _ = self.model(clip)
            return torch.softmax(logits.float(), dim=-1).numpy()

    return _MoViNetPyfunc


def log_model(checkpoint: str | Path, info, name: str = "model",
              registered_model_name: str | None = None, aliases: tuple[str, ...] = (),
              extra_artifacts: dict[str, str] | None = None, tags: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None):
    """Log a model file as an MLflow pyfunc model in the active run; optionally register it.

    ``checkpoint`` is any model variant file: our ``.pt`` checkpoint (float32 or float16
    weights) or an ``.onnx`` stream step carrying its ``ModelInfo`` (see
    :mod:`movinet_ray.model.runtime`). ``params`` and ``metrics`` go to the LoggedModel (e.g.
    precision, size, accuracy, frames/s), so variants compare side by side.

    Returns ``(model_info, version)``; ``version`` is the registered version or None.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1, -1), "clip")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, info.num_classes), "probs")]))
    artifacts = {CHECKPOINT_ARTIFACT: str(checkpoint), **(extra_artifacts or {})}
    logged = mlflow.pyfunc.log_model(
        name=name, python_model=_pyfunc_class()(), artifacts=artifacts, signature=signature,
        registered_model_name=registered_model_name,
        pip_requirements=_requirements(onnx=Path(checkpoint).suffix == ".onnx"),
        metadata={"movinet": {k: v for k, v in info.to_dict().items() if k != "config"}},
        tags=tags, params=params)
    if metrics:
        mlflow.log_metrics(metrics, model_id=logged.model_id)
    version = None
    if registered_model_name:
        version = str(logged.registered_model_version)
        client = mlflow.MlflowClient()
        for alias in aliases:
            client.set_registered_model_alias(registered_model_name, alias, version)
        log.info("registered %s version %s%s", registered_model_name, version,
                 "".join(f" @{a}" for a in aliases))
    return logged, version


def _requirements(onnx: bool = False) -> list[str]:
    from importlib.metadata import version

    reqs = [f"torch=={version('torch')}", f"mlflow=={version('mlflow')}", "numpy"]
    if onnx:
        reqs += [f"onnxruntime=={version('onnxruntime')}", f"onnx=={version('onnx')}"]
    return reqs


MODEL_SUFFIXES = (".pt", ".onnx")


def download_checkpoint(uri: str) -> Path:
    """Fetch the model file (``.pt`` checkpoint or ``.onnx`` graph) of a logged/registered
    model (``models:/``, ``runs:/``)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    matches = sorted((local / "artifacts").glob("*")) if (local / "artifacts").is_dir() else []
    files = [p for p in matches if p.is_file() and p.suffix in MODEL_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"{uri}: no model file (.pt/.onnx) among the model's artifacts "
                                f"({[p.name for p in matches]})")
    return files[0]


def resolve_model(source: str, device: str = "cpu", tracking_uri: str | None = None):
    """Load ``(model, ModelInfo)`` from a model file or an MLflow model URI.

    ``source``: a ``.pt`` checkpoint (ours, or from ``movinet convert``), an ``.onnx`` stream
    step, ``models:/name@alias`` (e.g. ``@int8``, ``@fp16``, ``@onnx``), ``models:/name/version``
    or ``runs:/<run id>/<model name>``.

    The model is whatever runs that variant, all with the stream interface
    (``init_state``, ``model(video, state) -> (logits, state)``, ``num_classes``): the eager
    MoViNet for float32 checkpoints, a float16 ``TorchStreamModel``, or an
    ``OnnxStreamModel`` (float32 or int8); see :mod:`movinet_ray.model.runtime`.
    """
    from .model.runtime import load_variant

    if source.startswith(("models:/", "runs:/")):
        setup_mlflow(tracking_uri)
        path = download_checkpoint(source)
        model, info = load_variant(path, device=device)
        return model, _with_source(info, source)
    return load_variant(source, device=device)


def _with_source(info, source: str):
    import dataclasses

    return dataclasses.replace(info, extra={**info.extra, "model_uri": source})


def source_of(uri: str) -> dict[str, str]:
    """Where a model came from: ``{"name", "version", "run_id"}`` for ``models:/`` URIs (the
    registered name and the run that logged it), ``{"run_id"}`` for ``runs:/``, ``{}`` for
    files. Used to make a derived run (e.g. quantization) a child of the training run."""
    import mlflow

    if uri.startswith("runs:/"):
        return {"run_id": uri[len("runs:/"):].split("/", 1)[0]}
    if not uri.startswith("models:/"):
        return {}
    ref = uri[len("models:/"):]
    client = mlflow.MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, version = ref.rsplit("/", 1)
        mv = client.get_model_version(name, version)
    return {k: v for k, v in {"name": name, "version": str(mv.version),
                              "run_id": mv.run_id}.items() if v}
