"""Starting or joining Ray the same way everywhere (CLI, demo, jobs, tests).

A local Ray started here keeps up to :data:`IDLE_WORKERS` idle worker processes. Ray's
default keeps as many as there are *available* CPUs, so Ray Data's fractional-CPU decoding
tasks running beside Ray Train workers or labelling actors make the raylet kill idle workers
every second and start new ones (each start re-imports torch). Measured on the 2-core demo
machine, 100 training steps of the demo recipe: 61 worker processes and 116 s by default, 29
and 67 s with this setting. For clusters started with ``ray start``, set the same with the
environment variable ``RAY_num_workers_soft_limit`` (see ``cluster/``).
"""

from __future__ import annotations

import os

IDLE_WORKERS = 16


def init_ray(address: str | None = None, **kwargs) -> None:
    """Join ``address`` (else ``$RAY_ADDRESS``), or start a fresh local Ray when neither is
    set (``address="local"``: never a cluster some other process started on this machine).
    Does nothing when Ray is already initialized. ``kwargs`` go to ``ray.init``."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        kwargs.setdefault("_system_config", {"num_workers_soft_limit": IDLE_WORKERS})
    kwargs.setdefault("configure_logging", False)
    ray.init(address=address, **kwargs)
