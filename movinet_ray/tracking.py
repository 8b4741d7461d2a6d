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


# --------------------------------------------------------------------------- training runs


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The URI every process of a run uses: ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``,
    else ``./mlflow.db``; a relative SQLite path becomes absolute, because Ray workers run in
    other folders than the driver."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    """Log flat params to a run (in chunks: MLflow takes 100 per request)."""
    from mlflow.entities import Param

    items = [Param(k, "None" if v is None else str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i:i + 100])


def find_run(experiment: str, tags: dict[str, str]) -> str | None:
    """The id of the newest run of ``experiment`` carrying all ``tags``, or None."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return None
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlflow.MlflowClient().search_runs([exp.experiment_id], query, max_results=1,
                                             order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


class StepLogger:
    """Per-step metrics of one run, logged at most once per step even across restarts.

    A worker group that restarts from a checkpoint replays the steps after it; those that
    already reached MLflow (up to the last step of ``key``) are not logged again, so every
    metric history has one point per step. A step's metrics go out in one batch (one
    transaction), so ``key`` marks whole steps. Logging is asynchronous; :meth:`flush` waits.
    """

    def __init__(self, run_id: str, tracking_uri: str, key: str = "train/loss"):
        import mlflow

        os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
        self.run_id = run_id
        self.client = mlflow.MlflowClient(tracking_uri)
        self._pending = []  # RunOperations not yet waited for
        history = self.client.get_metric_history(run_id, key)
        self.logged_through = max((m.step for m in history), default=0)

    def log(self, step: int, metrics: dict[str, float], always: bool = False) -> bool:
        """Queue ``metrics`` at ``step``; False (nothing logged) if the step already was.

        ``always`` logs events that are not per-step values (e.g. a restart) regardless.
        """
        import time

        from mlflow.entities import Metric

        if step <= self.logged_through and not always:
            return False
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):  # MLflow's per-request limit
            self._pending.append(self.client.log_batch(self.run_id, metrics=batch[i:i + 1000],
                                                       synchronous=False))
        self.logged_through = max(self.logged_through, step)
        return True

    def flush(self) -> None:
        """Wait until every queued step is in MLflow. Waits on this logger's own operations:
        ``mlflow.flush_async_logging()`` flushes the process's default store, which in a Ray
        Train worker is a fresh ``mlflow.db`` in a Ray session folder, not the run's."""
        pending, self._pending = self._pending, []
        for operation in pending:
            operation.wait()


def log_evaluation(report: dict[str, Any], class_names, step: int,
                   prefix: str = "eval") -> None:
    """Log an evaluation in the active run: per-class precision/recall/F1 as metrics at
    ``step``, and ``<prefix>/confusion_matrix.json`` / ``.png`` (rows: true class)."""
    import mlflow

    metrics = {}
    for name, row in zip(class_names, report["per_class"]):
        for stat in ("precision", "recall", "f1"):
            metrics[f"val_class/{_metric_safe(name)}/{stat}"] = row[stat]
    items = list(metrics.items())
    for i in range(0, len(items), 1000):
        mlflow.log_metrics(dict(items[i:i + 1000]), step=step)
    mlflow.log_dict({"step": step, "class_names": list(class_names),
                     "confusion_matrix": report["confusion_matrix"],
                     "per_class": report["per_class"],
                     **{k: v for k, v in report.items() if isinstance(v, (int, float))}},
                    f"{prefix}/confusion_matrix.json")
    mlflow.log_figure(confusion_figure(report["confusion_matrix"], class_names),
                      f"{prefix}/confusion_matrix.png")


def _metric_safe(name: str) -> str:
    """MLflow metric names allow alphanumerics, ``_ - . space / :``; map the rest to ``_``."""
    return "".join(c if c.isalnum() or c in "_-. /:" else "_" for c in name)


def confusion_figure(matrix, class_names):
    """A row-normalised confusion-matrix heat map (counts in the cells when they fit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(matrix, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    side = min(4 + 0.45 * n, 40)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    if n <= 40:
        ax.set_xticks(range(n), class_names, rotation=60, ha="right")
        ax.set_yticks(range(n), class_names)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    plt.close(fig)
    return fig


def compare_runs(experiment: str | None = None, tracking_uri: str | None = None,
                 max_runs: int = 50) -> list[dict[str, Any]]:
    """One row per training run (newest first): model, key params, best top-1, steps, time.

    ``experiment`` None = every experiment.
    """
    import mlflow

    setup_mlflow(tracking_uri)
    client = mlflow.MlflowClient()
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise ValueError(f"no MLflow experiment named {experiment!r}")
        ids = [exp.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, "tags.`movinet.model` != ''", max_results=max_runs,
                              order_by=["attributes.start_time DESC"])
    rows = []
    for run in runs:
        p, m = run.data.params, run.data.metrics
        rows.append({
            "run": run.info.run_name, "model": run.data.tags.get("movinet.model", ""),
            "status": run.info.status,
            "init": p.get("model.init", ""), "lr": p.get("optim.lr", ""),
            "batch": p.get("train.batch_size", ""),
            "input": f"{p.get('data.frames', '?')}x{p.get('data.resolution', '?')}"
                     f"@{p.get('data.fps', '?')}fps",
            "best_top1": m.get("best/val_top1"), "steps": _int(m.get("train/steps_done")),
            "time_s": m.get("train/time_s"), "run_id": run.info.run_id})
    return rows


def _int(value):
    return None if value is None else int(value)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table for terminals."""
    def cell(v):
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) and abs(v) < 10 else (
            f"{v:.0f}" if isinstance(v, float) else str(v))

    table = [columns] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ui_command(tracking_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000,
               artifacts: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line (and environment) serving our store on ``host``.

    A local SQLite store serves its ``mlartifacts`` folder next to the database (where
    :func:`setup_mlflow` puts experiments' artifacts); job execution is off (it starts
    seven extra processes and triples the start-up time); one server process, not MLflow's
    four: a UI for one person, and SQLite takes one writer at a time anyway.
    """
    import sys

    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        raise ValueError(f"{uri}: `movinet ui` serves a database store; for a tracking server "
                         "open its own address in a browser")
    if artifacts is None and uri.startswith("sqlite:///"):
        artifacts = str(Path(uri[len("sqlite:///"):]).parent / DEFAULT_ARTIFACTS)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
           "--backend-store-uri", uri, "--workers", "1"]
    if artifacts:
        cmd += ["--artifacts-destination", artifacts]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return cmd, env
