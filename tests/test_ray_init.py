"""The local Ray that ``init_ray`` starts paces Ray Data's scheduling loop in its workers
(where the training job's ``SplitCoordinator`` runs it) without changing what it yields."""

from __future__ import annotations

import pytest
from ray.data._internal.execution.streaming_executor import StreamingExecutor

from movinet_ray import ray_init


def _doubled_in_a_worker():
    import ray
    from ray.data._internal.execution.streaming_executor import StreamingExecutor

    rows = ray.data.range(40, override_num_blocks=8).map(lambda r: {"v": 2 * r["id"]})
    values = sorted(r["v"] for r in rows.take_all())
    return getattr(StreamingExecutor._scheduling_loop_step, "paced", False), values


@pytest.mark.slow
def test_workers_of_a_local_ray_run_ray_data_paced(ray_local):
    paced, values = ray_local.get(ray_local.remote(_doubled_in_a_worker).remote())
    assert paced
    assert values == list(range(0, 80, 2))


def test_pause_comes_from_the_environment_and_zero_turns_it_off(monkeypatch):
    calls = []

    def step(self, topology):
        calls.append(topology)
        return topology != "last"

    monkeypatch.setattr(StreamingExecutor, "_scheduling_loop_step", step)
    monkeypatch.setenv(ray_init.DATA_LOOP_PAUSE_ENV, "0")
    ray_init.pace_ray_data()
    assert StreamingExecutor._scheduling_loop_step is step

    sleeps = []
    monkeypatch.setattr("time.sleep", sleeps.append)
    monkeypatch.setenv(ray_init.DATA_LOOP_PAUSE_ENV, "0.01")
    ray_init.pace_ray_data()
    paced = StreamingExecutor._scheduling_loop_step
    assert paced.paced

    class Executor:
        idle = False

        def _consumer_idling(self):
            return self.idle

    busy, waiting = Executor(), Executor()
    waiting.idle = True
    assert paced(busy, "next") is True and paced(busy, "last") is False
    assert sleeps == [0.01]  # no pause after the last step
    assert paced(waiting, "next") is True and sleeps == [0.01]  # nor for a waiting consumer
    assert calls == ["next", "last", "next"]
    ray_init.pace_ray_data()  # installing twice does not pause twice
    assert StreamingExecutor._scheduling_loop_step is paced


def test_a_worker_that_never_imports_ray_data_does_not_pay_for_it():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from movinet_ray.ray_init import _EXECUTOR_MODULE, pace_ray_data\n"
        "pace_ray_data()\n"
        "assert _EXECUTOR_MODULE not in sys.modules\n"
        "from ray.data._internal.execution.streaming_executor import StreamingExecutor\n"
        "print(StreamingExecutor._scheduling_loop_step.paced)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"
