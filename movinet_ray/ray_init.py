"""Starting or joining Ray the same way everywhere (CLI, demo, jobs, tests).

A local Ray started here keeps up to :data:`IDLE_WORKERS` idle worker processes. Ray's
default keeps as many as there are *available* CPUs, so Ray Data's fractional-CPU decoding
tasks running beside Ray Train workers or labelling actors make the raylet kill idle workers
every second and start new ones (each start re-imports torch). Measured on the 2-core demo
machine, 100 training steps of the demo recipe: 61 worker processes and 116 s by default, 29
and 67 s with this setting. For clusters started with ``ray start``, set the same with the
environment variable ``RAY_num_workers_soft_limit`` (see ``cluster/``).

Its workers also run :func:`pace_ray_data` at start (a ``worker_process_setup_hook``): Ray
Data's scheduling loop otherwise spins while the trainers are busy, see there.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time

IDLE_WORKERS = 16
# Pause between iterations of a Ray Data scheduling loop in a worker; 0 turns pacing off.
DATA_LOOP_PAUSE_ENV = "MOVINET_DATA_LOOP_PAUSE_S"
DATA_LOOP_PAUSE_S = 0.05


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
        runtime_env = dict(kwargs.get("runtime_env") or {})
        runtime_env.setdefault("worker_process_setup_hook", "movinet_ray.ray_init.pace_ray_data")
        kwargs["runtime_env"] = runtime_env
    kwargs.setdefault("configure_logging", False)
    ray.init(address=address, **kwargs)


def pace_ray_data() -> None:
    """Make Ray Data's scheduling loop pause ``$MOVINET_DATA_LOOP_PAUSE_S`` (default 0.05 s)
    after each iteration, in this worker process.

    Ray Data 2.60's streaming executor only blocks in ``ray.wait`` on its running tasks; when
    their outputs are ready but held back for a consumer that is still busy (a trainer in
    the middle of a step), ``ray.wait`` returns at once and the loop spins. In training that
    loop runs in the ``SplitCoordinator`` actor feeding the Ray Train workers, and it took
    75 % of a core of the 2-core demo machine (A0, batch 32 on 2 workers: 1.10 s a step
    without the pause, 0.845 s with it; ``benchmarks/train_speed.py`` compares both). The
    loop pauses only while its output queue holds data for a consumer that has not taken it,
    so a fast consumer (a GPU) that waits for data is never slowed. Only local Rays started
    by :func:`init_ray` install it (small machines, where the spin competes with training for
    the few cores).

    The executor is patched when it is first imported, so workers that never use Ray Data
    (Serve replicas, most actors) do not pay for importing it.
    """
    pause = float(os.environ.get(DATA_LOOP_PAUSE_ENV, DATA_LOOP_PAUSE_S))
    if pause <= 0:
        return
    module = sys.modules.get(_EXECUTOR_MODULE)
    if module is not None:
        _pace(module.StreamingExecutor, pause)
    elif not any(isinstance(f, _PaceOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PaceOnImport(pause))


_EXECUTOR_MODULE = "ray.data._internal.execution.streaming_executor"


def _pace(executor: type, pause: float) -> None:
    step = executor._scheduling_loop_step
    if getattr(step, "paced", False):
        return

    def paced_step(self, topology):
        more = step(self, topology)
        if more and not self._consumer_idling():  # outputs wait for a busy consumer
            time.sleep(pause)
        return more

    paced_step.paced = True
    executor._scheduling_loop_step = paced_step


class _PaceOnImport(importlib.abc.MetaPathFinder):
    """Paces the streaming executor right after its module is first executed."""

    def __init__(self, pause: float):
        self.pause = pause

    def find_spec(self, name, path, target=None):
        if name != _EXECUTOR_MODULE:
            return None
        sys.meta_path.remove(self)  # find the real spec, and never act twice
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute, pause = spec.loader.exec_module, self.pause

        def exec_module(module):
            execute(module)
            _pace(module.StreamingExecutor, pause)

        spec.loader.exec_module = exec_module
        return spec
