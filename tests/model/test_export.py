"""The exported stream step streams like the eager model."""

from __future__ import annotations

import numpy as np
import torch

from movinet_ray.model import create_model
from movinet_ray.model.export import StreamStep, export_onnx, export_stream_step

from .conftest import randomize_

TOL = 1e-4


def _stream(step_fn, model, video):
    """Run ``video`` frame by frame through ``step_fn(frames, *state) -> (logits, *state)``."""
    b, _, t, h, w = video.shape
    names = list(model.state_shapes(h, w))
    state = model.init_state(b, h, w)
    values = [state[n] for n in names]
    logits = []
    for i in range(t):
        out = step_fn(video[:, :, i:i + 1], *values)
        logits.append(torch.as_tensor(np.asarray(out[0])))
        values = [torch.as_tensor(np.asarray(v)) for v in out[1:]]
    return torch.stack(logits, 1)


def test_torch_export_stream_step_matches_eager():
    model = randomize_(create_model("a0", "stream", num_classes=8), seed=7)
    video = torch.rand(3, 3, 5, 64, 64)  # batch 3: the export was traced with batch 2
    program = export_stream_step(model, 64, 64)
    with torch.no_grad():
        eager = _stream(StreamStep(model, 64, 64), model, video)
        exported = _stream(program.module(), model, video)
        whole, _ = model(video)
    torch.testing.assert_close(exported, eager, atol=TOL, rtol=0)
    torch.testing.assert_close(exported[:, -1], whole, atol=TOL, rtol=0)


def test_onnx_stream_step_matches_eager(tmp_path):
    import onnxruntime as ort

    model = randomize_(create_model("a0", "stream", num_classes=8), seed=8)
    path = export_onnx(model, tmp_path / "a0.onnx", 64, 64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    assert inputs[0] == "frames" and inputs[1:] == list(model.state_shapes(64, 64))
    assert session.get_outputs()[0].name == "logits"

    def run(frames, *state):
        feed = {name: t.numpy() for name, t in zip(inputs, (frames, *state))}
        return session.run(None, feed)

    video = torch.rand(4, 3, 4, 64, 64)
    with torch.no_grad():
        eager = _stream(StreamStep(model, 64, 64), model, video)
    onnx = _stream(run, model, video)
    torch.testing.assert_close(onnx, eager, atol=TOL, rtol=0)
