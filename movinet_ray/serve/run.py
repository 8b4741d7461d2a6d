"""Run the app on a local or existing Ray: ``movinet serve`` and the demo's one-shot serve."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from ..ray_init import init_ray
from .config import ServeConfig, ServeFile, load_serve_config, read_serve_file

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
APP_NAME = "movinet"


def with_absolute_paths(cfg: ServeConfig) -> ServeConfig:
    """Replicas run in other working directories: make local model and SQLite paths
    absolute (URIs other than ``sqlite:///`` are left alone)."""
    model, tracking = cfg.model, cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if "://" not in model and not model.startswith(("models:/", "runs:/")):
        model = str(Path(model).resolve())
    if tracking and tracking.startswith("sqlite:///") and not tracking.startswith("sqlite:////"):
        tracking = "sqlite:///" + str(Path(tracking[len("sqlite:///"):]).resolve())
    return dataclasses.replace(cfg, model=model, tracking_uri=tracking)


def start_serve(cfg: ServeConfig, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                address: str | None = "local", app_name: str = APP_NAME,
                route_prefix: str = "/") -> str:
    """Start Ray (``address="local"``: a fresh local instance; ``"auto"`` or an address:
    join that cluster) unless it is running, start Serve's HTTP proxy on ``host:port``, deploy
    the app and wait until it answers. Returns the app's base URL."""
    import ray
    from ray import serve

    from .app import make_app

    if not ray.is_initialized():
        init_ray(address, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(make_app(with_absolute_paths(cfg)), name=app_name, route_prefix=route_prefix)
    url = f"http://{host}:{port}{route_prefix.rstrip('/')}"
    log.info("serving %s at %s (page: %s/, API: %s/v1/...)", cfg.model, url, url, url)
    return url


def stop_serve(stop_ray: bool, app_name: str | None = None) -> None:
    """Shut Serve down, or with ``app_name`` delete only that app (a shared cluster's Serve
    keeps running); ``stop_ray`` ends a Ray this process started."""
    import ray
    from ray import serve

    if app_name is None:
        serve.shutdown()
    else:
        serve.delete(app_name)
    if stop_ray:
        ray.shutdown()


def demo_serve(model_uri: str, video: Path, tracking_uri: str | None = None, *,
               port: int = DEFAULT_PORT, host: str = "127.0.0.1", top_k: int = 5
               ) -> dict[str, Any]:
    """Serve ``model_uri`` on a local Ray, classify ``video`` through ``POST /v1/classify``,
    print the answer, shut Serve down (and Ray, if this call started it).

    Returns:
        The JSON answer (``top_k``, ``frames``, ``duration_s``, ``model``, ...).
    """
    import httpx
    import ray

    started_ray = not ray.is_initialized()
    cfg = ServeConfig(model=model_uri, tracking_uri=tracking_uri)
    try:
        url = start_serve(cfg, host=host, port=port)
        with open(video, "rb") as f:
            response = httpx.post(f"{url}/v1/classify", params={"top_k": top_k},
                                  files={"video": (Path(video).name, f)}, timeout=600)
        if response.status_code != 200:
            raise RuntimeError(f"POST /v1/classify answered {response.status_code}: "
                               f"{response.text}")
        result = response.json()
    finally:
        stop_serve(started_ray)
    model = result["model"]
    print(f"Served {model['name']} version {model['version']}: {Path(video).name} "
          f"({result['duration_s']:.1f} s, {result['frames']} frames at {result['fps']} fps) "
          f"in {result['seconds']:.2f} s")
    for item in result["top_k"]:
        print(f"  {item['score']:6.1%}  {item['label']}")
    return result


# --------------------------------------------------------------------------- CLI


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a model over HTTP/WebSocket with Ray Serve",
        description="Deploys the app of a Serve config file (default: none, all defaults) "
                    "on a local Ray or an existing cluster and serves until Ctrl-C. "
                    "Overrides are dotted key=value pairs of the app's args "
                    "(e.g. max_sessions=16 replicas.num_cpus=2).")
    p.add_argument("--config", default=None,
                   help="a Ray Serve config file, e.g. cluster/serve.yaml (its first app's "
                        "args and http_options are used)")
    p.add_argument("--model", default=None, help="checkpoint path or models:/name@alias")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    p.add_argument("--host", default=None, help="HTTP host (default: config, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help=f"HTTP port (default: config, else {DEFAULT_PORT})")
    p.add_argument("--address", default="local",
                   help="'local' (a fresh local Ray), 'auto' or HOST:PORT (an existing cluster)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=_serve)


def _serve(args) -> int:
    file = (read_serve_file(args.config) if args.config else
            ServeFile(APP_NAME, "/", {}, "127.0.0.1", DEFAULT_PORT))
    extra = list(args.overrides)
    if args.model:
        extra.append(f"model={args.model}")
    if args.tracking_uri:
        extra.append(f"tracking_uri={args.tracking_uri}")
    cfg = load_serve_config(file.args, extra)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    start_serve(cfg, host=args.host or file.host, port=args.port or file.port,
                address=args.address, app_name=file.app_name, route_prefix=file.route_prefix)
    print("serving; Ctrl-C to stop", flush=True)
    done.wait()
    log.info("shutting down")
    local = args.address == "local"
    stop_serve(stop_ray=True, app_name=None if local else file.app_name)
    return 0
