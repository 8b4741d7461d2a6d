"""The serving config: one frozen record, the ``args`` of the app in a Serve config file.

``cluster/serve.yaml`` is a plain Ray Serve config (``serve run`` / ``serve deploy`` read it);
its application's ``args`` load into :class:`ServeConfig` here, so unknown keys and wrong
types fail at deploy time with the key's name instead of somewhere inside a replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import ConfigError, apply_overrides, from_dict


@dataclass(frozen=True)
class AutoscalingConfig:
    """Serve autoscaling by ongoing requests; a live session is one request for its lifetime,
    so ``target_ongoing_requests`` is the number of sessions (plus uploads) per replica."""

    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 16.0


@dataclass(frozen=True)
class ReplicaConfig:
    """How many replicas and what each reserves.

    ``num_replicas`` is ignored when ``autoscaling`` is set. ``num_cpus`` also sets the
    replica's torch threads (Ray sets OMP_NUM_THREADS from it).
    """

    num_replicas: int = 1
    autoscaling: AutoscalingConfig | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass(frozen=True)
class ServeConfig:
    """Everything a replica needs.

    Attributes:
        model: a movinet-ray checkpoint (``.pt``) or an MLflow URI (``models:/name@alias``,
            ``models:/name/3``, ``runs:/<id>/model``).
        tracking_uri: MLflow tracking URI for ``models:/`` (default ``$MLFLOW_TRACKING_URI``).
        device: ``auto`` takes a GPU when the replica has one.
        fuse_bn: fold BatchNorm into the convolutions at load (faster, same outputs in 1e-5).
        top_k: labels per answer unless the request asks for another number.
        max_upload_mb: ``POST /v1/classify`` bodies above this get 413 while still arriving.
        classify_chunk_frames: frames per model call for uploads (bounds their memory).
        max_sessions: live sessions per replica = stream-engine slots; more are refused.
        idle_timeout_s: a session that sends nothing for this long is closed, its slot freed.
        batch_wait_ms: how long a step waits for frames of other sessions to batch with.
        max_frame_side: largest width/height a session may declare.
        replicas: replica count, autoscaling and resources.
    """

    model: str = ""
    tracking_uri: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    fuse_bn: bool = True
    top_k: int = 5
    max_upload_mb: float = 200.0
    classify_chunk_frames: int = 16
    max_sessions: int = 32
    idle_timeout_s: float = 60.0
    batch_wait_ms: float = 5.0
    max_frame_side: int = 2048
    replicas: ReplicaConfig = field(default_factory=ReplicaConfig)

    def __post_init__(self):
        if not self.model:
            raise ConfigError("model: give a checkpoint path or a models:/name@alias URI")
        for name in ("top_k", "classify_chunk_frames", "max_sessions", "max_frame_side"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("max_upload_mb", "idle_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_ongoing_requests(self) -> int:
        """Serve counts every open WebSocket as an ongoing request: room for all sessions
        plus a few HTTP calls, so a full replica refuses a session itself (with a reason)
        instead of Serve queueing the connection silently."""
        return self.max_sessions + 8


def load_serve_config(args: dict[str, Any], overrides: list[str] | None = None) -> ServeConfig:
    """A :class:`ServeConfig` from an app's ``args`` mapping plus dotted overrides."""
    return from_dict(ServeConfig, apply_overrides(dict(args or {}), overrides or []))


@dataclass(frozen=True)
class ServeFile:
    """The parts of a Serve config file ``movinet serve`` uses: the first application's
    name, route prefix and args, and the HTTP host/port."""

    app_name: str
    route_prefix: str
    args: dict[str, Any]
    host: str
    port: int


def read_serve_file(path: str | Path) -> ServeFile:
    """Read a Ray Serve config file (validated against Serve's own schema)."""
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load(Path(path).read_text()) or {}
    schema = ServeDeploySchema.model_validate(raw)
    if not schema.applications:
        raise ConfigError(f"{path}: no applications")
    app = schema.applications[0]
    http = schema.http_options
    return ServeFile(app.name, app.route_prefix or "/", dict(app.args or {}),
                     http.host or "127.0.0.1", int(http.port))
