"""Runtime adapters: every model variant behind MoViNet's stream interface.

:class:`~movinet_ray.streaming.StreamEngine` (bulk labelling, serving) needs only
``init_state(batch, height, width, device=None)`` and ``model(video, state) -> (logits,
state)`` on torch tensors. These classes give that interface to the variants the quantize job
produces, so the engine runs fp32, fp16, ONNX and int8 models unchanged:

* :class:`TorchStreamModel` - the eager PyTorch model with BatchNorm folded, in float32 or
  float16 (stream buffers in the model dtype; running sums stay float32, frame counts int64).
* :class:`OnnxStreamModel` - an exported stream step (``frames`` + state -> ``logits`` +
  ``<state>_out``) in ONNX Runtime, float32 or int8 (QDQ).

:func:`load_variant` opens any variant file (``.pt`` checkpoint or ``.onnx`` graph) and returns
``(model, ModelInfo)``; the ONNX graph carries its :class:`ModelInfo` in its metadata, so a
variant file is self-describing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import ModelInfo, load_model
from .export import FRAMES, LOGITS
from .movinet import MoViNet, State

ONNX_INFO_KEY = "movinet_ray.info"
PRECISION_KEY = "precision"  # ModelInfo.extra: "fp32" | "fp16" | "int8"
RUNTIME_KEY = "runtime"      # ModelInfo.extra: "torch" | "onnxruntime"

_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def precision_of(info: ModelInfo) -> str:
    return str(info.extra.get(PRECISION_KEY, "fp32"))


def runtime_of(info: ModelInfo) -> str:
    return str(info.extra.get(RUNTIME_KEY, "torch"))


def with_variant(info: ModelInfo, precision: str, runtime: str, **extra) -> ModelInfo:
    """``info`` tagged with a variant's precision and runtime (other metadata unchanged)."""
    return dataclasses.replace(info, extra={**info.extra, PRECISION_KEY: precision,
                                            RUNTIME_KEY: runtime, **extra})


# --------------------------------------------------------------------------- PyTorch


class TorchStreamModel(nn.Module):
    """An eager stream MoViNet with BatchNorm folded, run in ``dtype``.

    Inputs are cast to the model dtype; stream buffers are kept in it, while the pooled running
    sums stay float32 and the frame counter int64 (the model already computes them so), so a
    float16 model accumulates exactly over long streams. Logits come back as float32.

    Args:
        model: a stream (causal) MoViNet (fused or not; it is fused here, in place).
        dtype: ``torch.float32`` or ``torch.float16`` (float16 is meant for GPUs; on CPU it is
            correct but slow).
        info: the weights' metadata (optional).
    """

    def __init__(self, model: MoViNet, dtype: torch.dtype = torch.float32,
                 info: ModelInfo | None = None):
        super().__init__()
        if not model.stateful:
            raise ValueError("TorchStreamModel runs stream (causal) models only")
        if not model.fused:
            model.fuse_bn_()  # fold in float32, before any cast
        self.model = model.to(dtype).eval()
        self.dtype = dtype
        self.info = info

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    stateful = True  # stream models only (checked above)

    def state_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        return self.model.state_shapes(height, width)

    def init_state(self, batch_size: int, height: int, width: int, device=None) -> State:
        return self.model.init_state(batch_size, height, width, device=device, dtype=self.dtype)

    def forward(self, video: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(video.shape[0], video.shape[-2], video.shape[-1],
                                    device=video.device)
        state = {k: (v.to(self.dtype) if k.endswith("_stream_buffer") else v)
                 for k, v in state.items()}
        logits, state = self.model(video.to(self.dtype), state)
        return logits.float(), state


# --------------------------------------------------------------------------- ONNX Runtime


class OnnxStreamModel:
    """An exported stream step run by ONNX Runtime, as a stream model on torch tensors.

    The graph takes one frame per call (``frames`` ``[B, 3, 1, H, W]``, dynamic ``B``); longer
    clips are fed frame by frame, threading the state, which gives the same logits as one
    whole-clip call of the eager model.

    Args:
        path: the ``.onnx`` file (from :func:`movinet_ray.model.export.export_onnx` or the
            quantize job).
        info: metadata; default: the :class:`ModelInfo` stored in the graph's metadata.
        threads: ONNX Runtime intra-op threads (None: ORT's default, one per core).
        providers: execution providers (default CPU).
        spinning: let idle ORT threads spin-wait for the next call (ORT's default). Off by
            default: on a shared machine (other Ray workers, other processes) spinning threads
            steal the cores from everyone, ORT included - measured here under load, A0 at
            172² ran ~3x faster without it, and an eager PyTorch model sharing the process
            slowed to a crawl with it.

    Pickles as the graph's bytes plus settings (a new session is built on unpickling), so it
    travels through Ray's object store to actors on nodes that do not have the file.
    """

    def __init__(self, path: str | Path, info: ModelInfo | None = None,
                 threads: int | None = None, providers: list[str] | None = None,
                 spinning: bool = False):
        self.path = Path(path)
        self._build(self.path.read_bytes(), info, threads, providers, spinning)

    def __getstate__(self) -> dict:
        return {"path": self.path, "graph": self._graph, "info": self.info,
                "settings": self._settings}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self._build(state["graph"], state["info"], *state["settings"])

    def _build(self, graph: bytes, info: ModelInfo | None, threads: int | None,
               providers: list[str] | None, spinning: bool) -> None:
        import onnxruntime as ort

        self._graph, self._settings = graph, (threads, providers, spinning)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(graph, options,
                                            providers=providers or ["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if inputs[0].name != FRAMES:
            raise ValueError(f"{self.path}: first input is {inputs[0].name!r}, expected {FRAMES!r}")
        self.state_names = [i.name for i in inputs[1:]]
        self._frame_shape = inputs[0].shape  # [batch, 3, t, H, W]
        self._state_specs = {i.name: (tuple(i.shape[1:]), _ONNX_DTYPES[i.type])
                             for i in inputs[1:]}
        self._outputs = [LOGITS, *(f"{n}_out" for n in self.state_names)]
        self.info = info if info is not None else _info_from_metadata(self.session, self.path)
        self._num_classes = int(self.session.get_outputs()[0].shape[-1])

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def stateful(self) -> bool:
        return bool(self.state_names)  # an exported stream step carries its state

    # The few nn.Module methods the jobs call on any loaded model, so every variant goes
    # through the same labelling / serving code.
    def eval(self) -> OnnxStreamModel:
        return self  # an inference graph: always in eval mode

    def to(self, device: str | torch.device) -> OnnxStreamModel:
        if torch.device(device).type != "cpu":
            raise ValueError(f"{self.path.name}: ONNX Runtime variants run on the CPU here; "
                             f"use the fp32 or fp16 variant on {device}")
        return self

    def parameters(self):
        return iter(())  # no torch parameters: inputs and state live on the CPU

    def fingerprint(self) -> str:
        """sha256 of the graph (weights and quantization parameters)."""
        import hashlib

        return hashlib.sha256(self._graph).hexdigest()

    @property
    def frame_size(self) -> tuple[int, int]:
        """The (height, width) the graph was exported for."""
        return int(self._frame_shape[3]), int(self._frame_shape[4])

    def state_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        self._check_size(height, width)
        return {n: shape for n, (shape, _) in self._state_specs.items()}

    def init_state(self, batch_size: int, height: int, width: int, device=None) -> State:
        self._check_size(height, width)
        return {n: torch.from_numpy(np.zeros((batch_size, *shape), dtype=dtype)).to(device or "cpu")
                for n, (shape, dtype) in self._state_specs.items()}

    def __call__(self, video: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``video`` float ``[B, 3, T, H, W]`` in [0, 1] -> (logits ``[B, C]``, next state)."""
        b, _, t, h, w = video.shape
        if state is None:
            state = self.init_state(b, h, w)
        self._check_size(h, w)
        device = video.device
        frames = video.detach().to("cpu", torch.float32).numpy()
        values = {n: _numpy(state[n], self._state_specs[n][1]) for n in self.state_names}
        logits = None
        for i in range(t):
            out = self.session.run(self._outputs, {FRAMES: frames[:, :, i:i + 1], **values})
            logits = out[0]
            values = dict(zip(self.state_names, out[1:]))
        new_state = {n: torch.from_numpy(v).to(device) for n, v in values.items()}
        return torch.from_numpy(logits).float().to(device), new_state

    def _check_size(self, height: int, width: int) -> None:
        if (height, width) != self.frame_size:
            raise ValueError(f"{self.path.name} was exported for {self.frame_size[0]}x"
                             f"{self.frame_size[1]} frames, got {height}x{width}")


def _numpy(value: Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(value.detach().to("cpu").numpy(), dtype=dtype)


# --------------------------------------------------------------------------- metadata, loading


def write_onnx_info(path: str | Path, info: ModelInfo) -> Path:
    """Store ``info`` (JSON) in the ONNX graph's metadata, in place."""
    import onnx

    path = Path(path)
    graph = onnx.load(str(path))
    kept = [p for p in graph.metadata_props if p.key != ONNX_INFO_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    graph.metadata_props.add(key=ONNX_INFO_KEY, value=json.dumps(info.to_dict()))
    onnx.save(graph, str(path))
    return path


def read_onnx_info(path: str | Path) -> ModelInfo:
    """The :class:`ModelInfo` stored by :func:`write_onnx_info` (ValueError if absent)."""
    import onnxruntime as ort

    return _info_from_metadata(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]),
                               path)


def _info_from_metadata(session, path: str | Path) -> ModelInfo:
    meta = session.get_modelmeta().custom_metadata_map
    if ONNX_INFO_KEY not in meta:
        raise ValueError(f"{path}: no movinet-ray metadata ({ONNX_INFO_KEY}); export it with "
                         "`movinet export` or write_onnx_info()")
    return ModelInfo.from_dict(json.loads(meta[ONNX_INFO_KEY]))


def load_variant(path: str | Path, device: str | torch.device = "cpu",
                 threads: int | None = None):
    """Open any model variant file and return ``(stream model, ModelInfo)``.

    * ``.onnx`` -> :class:`OnnxStreamModel` (fp32 or int8 graph);
    * ``.pt`` whose info says ``precision: fp16`` -> :class:`TorchStreamModel` in float16;
    * any other ``.pt`` -> the plain eager model from :func:`load_model` (unchanged behaviour).
    """
    path = Path(path)
    if path.suffix == ".onnx":
        model = OnnxStreamModel(path, threads=threads)
        return model, model.info
    model, info = load_model(path, device=device)
    precision = precision_of(info)
    if precision != "fp32":
        if precision not in _TORCH_DTYPES:
            raise ValueError(f"{path}: unsupported precision {precision!r} for a .pt variant")
        model = TorchStreamModel(model, _TORCH_DTYPES[precision], info).to(device)
    return model, info



__all__ = ["ONNX_INFO_KEY", "OnnxStreamModel", "TorchStreamModel", "load_variant",
           "precision_of", "read_onnx_info", "runtime_of", "with_variant", "write_onnx_info"]
