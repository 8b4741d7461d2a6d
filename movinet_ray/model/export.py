"""Export the stream step ``(frames, state) -> (logits, state)`` with the state as named I/O.

``torch.export`` gives an ``ExportedProgram`` (for AOTInductor, ExecuTorch, or quantization
with pt2e); ONNX gives a graph that ONNX Runtime runs anywhere. Both keep the batch dimension
dynamic, so one exported model serves any number of streams.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .movinet import FRAME_COUNT, MoViNet

FRAMES = "frames"
LOGITS = "logits"


class StreamStep(nn.Module):
    """Positional-argument wrapper: ``(frames, *state_in) -> (logits, *state_out)``.

    State tensors appear in :attr:`state_names` order on both sides, so runtimes without dict
    inputs (ONNX, TFLite-style loops) can thread them by position.
    """

    def __init__(self, model: MoViNet, height: int, width: int):
        super().__init__()
        if not model.stateful:
            raise ValueError("only stream (causal) models have a stream step to export")
        self.model = model
        self.state_names = tuple(model.state_shapes(height, width))

    def forward(self, frames: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, new_state = self.model(frames, dict(zip(self.state_names, state)))
        return (logits, *(new_state[name] for name in self.state_names))


def example_inputs(model: MoViNet, height: int, width: int, batch: int = 2,
                   frames: int = 1) -> tuple[Tensor, ...]:
    state = model.init_state(batch, height, width)
    clip = torch.rand(batch, 3, frames, height, width)
    return (clip, *(state[name] for name in model.state_shapes(height, width)))


def export_stream_step(model: MoViNet, height: int, width: int, frames: int = 1
                       ) -> torch.export.ExportedProgram:
    """``torch.export`` of the stream step for ``height x width`` inputs, dynamic batch."""
    step = StreamStep(model.eval(), height, width).eval()
    return torch.export.export(step, example_inputs(model, height, width, 2, frames),
                               dynamic_shapes=_dynamic_batch(step))


def export_onnx(model: MoViNet, path: str | Path, height: int, width: int, frames: int = 1,
                opset: int = 18) -> Path:
    """Write an ONNX graph of the stream step: inputs ``frames`` + state names, outputs
    ``logits`` + the same state names suffixed ``_out``; the batch dimension is dynamic."""
    path = Path(path)
    step = StreamStep(model.eval(), height, width).eval()
    names = list(step.state_names)
    torch.onnx.export(
        step, example_inputs(model, height, width, 2, frames), str(path),
        input_names=[FRAMES, *names], output_names=[LOGITS, *(f"{n}_out" for n in names)],
        dynamic_shapes=_dynamic_batch(step), opset_version=opset, dynamo=True, external_data=False)
    return path


def _dynamic_batch(step: StreamStep):
    """Dim 0 of the frames and of every state tensor is one shared dynamic batch size."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    return ({0: batch}, tuple({0: batch} for _ in step.state_names))


def state_names(model: MoViNet, height: int, width: int) -> list[str]:
    return list(model.state_shapes(height, width))


__all__ = ["FRAMES", "FRAME_COUNT", "LOGITS", "StreamStep", "export_onnx", "export_stream_step",
           "example_inputs", "state_names"]
