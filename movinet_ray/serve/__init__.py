"""Ray Serve: whole-video classification and live streaming sessions. See ``docs/serve.md``.

``movinet_ray.serve.app:build_app`` is the application builder for Serve config files
(``cluster/serve.yaml``); :func:`demo_serve` serves a model once and classifies one video.
"""

from .config import AutoscalingConfig, ReplicaConfig, ServeConfig, load_serve_config
from .run import demo_serve, start_serve, stop_serve

__all__ = ["AutoscalingConfig", "ReplicaConfig", "ServeConfig", "demo_serve",
           "load_serve_config", "start_serve", "stop_serve"]
