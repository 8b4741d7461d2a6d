"""One Serve instance for the serving tests (shut down after them), with two apps:

* ``/``: the test model with normal limits (uploads up to 1 MB, 4-frame classify chunks);
* ``/limits``: the same model with 2 session slots and a 1.5 s idle timeout.
"""

from __future__ import annotations

import pytest

from movinet_ray.serve import ReplicaConfig, ServeConfig

from .serve_helpers import make_checkpoint, reference_model

HTTP_PORT = 8641


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "motion-a0.pt")


@pytest.fixture(scope="session")
def ref_model(checkpoint):
    return reference_model(checkpoint)


@pytest.fixture(scope="package")
def serve_url(ray_local, checkpoint):
    """Base URL of the main app. Serve is shut down after the serving tests: its replicas
    hold 1.5 of the shared local Ray's 2 CPUs, which later tests (training) need."""
    from ray import serve

    from movinet_ray.serve.app import make_app

    serve.start(http_options={"host": "127.0.0.1", "port": HTTP_PORT})
    main = ServeConfig(model=str(checkpoint), max_upload_mb=1.0, classify_chunk_frames=4,
                       batch_wait_ms=20.0, replicas=ReplicaConfig(num_cpus=1.0))
    limits = ServeConfig(model=str(checkpoint), max_sessions=2, idle_timeout_s=1.5,
                         replicas=ReplicaConfig(num_cpus=0.5))
    serve.run(make_app(main), name="main", route_prefix="/")
    serve.run(make_app(limits), name="limits", route_prefix="/limits")
    yield f"http://127.0.0.1:{HTTP_PORT}"
    serve.shutdown()


@pytest.fixture(scope="package")
def ws_url(serve_url):
    return serve_url.replace("http://", "ws://")
