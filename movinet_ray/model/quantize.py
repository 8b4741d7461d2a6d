"""Quantized and exported stream models: fp16, int8 post-training, int8 quantization-aware.

Every variant keeps the explicit stream state as inputs and outputs, so it streams frame by
frame (or chunk by chunk) exactly like the eager model and runs in
:class:`~movinet_ray.streaming.StreamEngine` through the adapters in
:mod:`movinet_ray.model.runtime`.

* **Quantization-friendly architecture**: :data:`QUANT_FRIENDLY` (ReLU6 instead of hard-swish,
  no squeeze-excitation), as in the official int8 TFLite models. Any MoViNet quantizes; this
  one loses the least (bounded activations, no per-frame gating multiplies).
* **int8 (post-training)**: :func:`quantize_int8` exports the stream step to ONNX and runs
  ONNX Runtime static quantization (QDQ; per-channel symmetric int8 weights, per-tensor uint8
  activations) calibrated *statefully*: each calibration clip runs frame by frame through the
  float model, threading its state, and every step's ``(frames, state)`` is a calibration
  sample - so the state inputs see the ranges they have mid-stream, not zeros
  (``tools/quantize_movinet.py`` does the same for TFLite). By default only convolutions and
  dense layers are quantized; the stream buffers, running sums and the temporal taps stay
  float32 (see ``docs/quantize.md`` for why and the measurements).
* **fp16**: :func:`save_fp16` writes float16 weights (BatchNorm statistics stay float32);
  :class:`~movinet_ray.model.runtime.TorchStreamModel` runs them with float16 stream buffers,
  float32 running sums and int64 frame counts.
* **int8 quantization-aware training**: :func:`prepare_qat` wraps every convolution and dense
  layer with fake quantization that mirrors the int8 scheme above (BatchNorm folded with frozen
  statistics, per-channel weights, per-tensor activations, straight-through gradients);
  :func:`train_epochs` fine-tunes; :func:`strip_qat` gives back the float model, which
  :func:`quantize_int8` converts.

Evaluation helpers (:func:`evaluate_top1`, :func:`frames_per_second`) take any stream model.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import ModelInfo, save_model
from .export import FRAMES, export_onnx
from .layers import ConvBN, pad_same
from .movinet import MoViNet, create_model
from .runtime import with_variant, write_onnx_info

log = logging.getLogger(__name__)

QUANT_FRIENDLY = {"activation": "relu6", "se_type": "none"}
# ONNX ops quantized by default: convolutions and dense layers. Quantizing every op (Add, Mul,
# Concat, Slice of the stream buffers...) was no faster here and puts the state through int8.
DEFAULT_OP_TYPES = ("Conv", "Gemm", "MatMul")
INT8_METHOD = "onnxruntime-static-qdq"


def create_quantizable_model(variant: str = "a0", num_classes: int = 600, mode: str = "stream",
                             **overrides) -> MoViNet:
    """:func:`create_model` with the quantization-friendly defaults (ReLU6, no SE)."""
    return create_model(variant, mode, num_classes, **{**QUANT_FRIENDLY, **overrides})


def fused_copy(model: MoViNet) -> MoViNet:
    """An eval-mode copy of ``model`` with BatchNorm folded (the original is untouched)."""
    copied = copy.deepcopy(model).eval()
    return copied if copied.fused else copied.fuse_bn_()


def to_float_clip(clip: Tensor) -> Tensor:
    """uint8 0-255 or float 0-1 clips -> float32 in [0, 1]."""
    return clip.float() / 255.0 if clip.dtype == torch.uint8 else clip.float()


def batched(clips: Iterable[Tensor], batch_size: int) -> Iterator[Tensor]:
    """Clips ``[3, T, H, W]`` (equal shapes) -> float batches ``[B, 3, T, H, W]``."""
    buf: list[Tensor] = []
    for clip in clips:
        buf.append(to_float_clip(torch.as_tensor(clip)))
        if len(buf) == batch_size:
            yield torch.stack(buf)
            buf = []
    if buf:
        yield torch.stack(buf)


# --------------------------------------------------------------------------- export: fp32, fp16


def export_onnx_fp32(model: MoViNet, path: str | Path, info: ModelInfo, height: int | None = None,
                     width: int | None = None) -> Path:
    """ONNX float32 stream step (BatchNorm folded) with ``info`` in its metadata."""
    height = height or info.resolution
    width = width or height
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(fused_copy(model), path, height, width)
    return write_onnx_info(path, with_variant(info, "fp32", "onnxruntime", height=height,
                                              width=width))


def save_fp16(model: MoViNet, path: str | Path, info: ModelInfo) -> Path:
    """A checkpoint with float16 weights (BatchNorm statistics and ReZero scalars kept float32
    so folding them stays exact); loads as a float16 ``TorchStreamModel``."""
    half = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in half.parameters():
            if p.dim() > 0 and p.is_floating_point():
                p.data = p.data.half()
    return save_model(path, half, with_variant(info, "fp16", "torch"))


# --------------------------------------------------------------------------- stateful calibration


def stream_feeds(model: MoViNet, clip_batches: Iterable[Tensor], chunk_frames: int = 1,
                 state_names: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """ONNX input feeds of a stateful calibration.

    Each batch of clips ``[B, 3, T, H, W]`` runs through the float ``model`` ``chunk_frames``
    at a time from the zero state; before every step the feed ``{frames, **state}`` is
    yielded, so later steps carry the state the clip built up.
    """
    model = model.eval()
    with torch.inference_mode():
        for video in clip_batches:
            video = to_float_clip(video)
            b, _, t, h, w = video.shape
            names = list(state_names or model.state_shapes(h, w))
            state = model.init_state(b, h, w)
            for start in range(0, t, chunk_frames):
                frames = video[:, :, start:start + chunk_frames]
                yield {FRAMES: frames.numpy().copy(),
                       **{n: state[n].numpy().copy() for n in names}}
                _, state = model(frames, state)


def _reader(feeds: Iterator[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.count = 0

        def get_next(self):
            item = next(feeds, None)
            self.count += item is not None
            return item

    return _Reader()


def quantize_int8(model: MoViNet, path: str | Path, info: ModelInfo,
                  calibration_clips: Iterable[Tensor], height: int | None = None,
                  width: int | None = None, batch_size: int = 8,
                  op_types: Sequence[str] | None = DEFAULT_OP_TYPES,
                  per_channel: bool = True, method: str = "MinMax",
                  source: str = "ptq", fp32_onnx: str | Path | None = None) -> Path:
    """Post-training static int8 quantization of the stream step (ONNX Runtime, QDQ).

    Args:
        model: the float stream model (BatchNorm is folded on a copy).
        path: output ``.onnx``.
        info: the weights' metadata (stored in the graph, tagged ``precision: int8``).
        calibration_clips: clips ``[3, T, H, W]`` (uint8 or float in [0, 1]) at the export size;
            each runs frame by frame threading the state (a few hundred clips are plenty).
        op_types: ONNX op types to quantize (None: every op ORT can quantize).
        per_channel: per-output-channel weight scales (symmetric int8).
        method: calibration method, ``"MinMax"``, ``"Percentile"`` or ``"Entropy"``.
        source: recorded as ``quant_source`` (``"ptq"`` or ``"qat"``).
        fp32_onnx: an existing float32 export of this very ``model`` at this size (e.g. from
            :func:`export_onnx_fp32`) to quantize instead of exporting again.

    Returns:
        ``path``. Inputs/outputs are float32 like the float graph (``frames``, state names,
        ``logits``, ``<state>_out``): the int8 graph is a drop-in replacement.
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    height = height or info.resolution
    width = width or height
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fused = fused_copy(model)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="movinet-quant-") as tmp:
        fp32 = fp32_onnx or export_onnx(fused, Path(tmp) / "fp32.onnx", height, width)
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(fp32), str(prepped))
        names = list(fused.state_shapes(height, width))
        reader = _reader(stream_feeds(fused, batched(calibration_clips, batch_size),
                                      state_names=names))
        quantize_static(
            str(prepped), str(path), reader, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types) if op_types else None,
            per_channel=per_channel, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, method),
            # Dense outputs stay float: the logits keep their full range (a calibrated int8
            # range would clip confident logits) and the classifier's hidden layer feeds a
            # float activation anyway; it costs nothing measurable.
            extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]})
        # No CalibMaxIntermediateOutputs: in ORT 1.32 it *drops* the collected ranges at each
        # flush. MinMax keeps only two scalars per tensor per step, so memory stays small;
        # Percentile/Entropy keep whole activations (use a few dozen clips with them).
    if reader.count == 0:
        raise ValueError("no calibration clips")
    log.info("int8 (%s): %d calibration steps, %.1f s", source, reader.count,
             time.perf_counter() - start)
    return write_onnx_info(path, with_variant(
        info, "int8", "onnxruntime", quant_method=INT8_METHOD, quant_source=source,
        quant_ops=list(op_types or ["all"]), calibration_steps=reader.count,
        calibration_method=method, height=height, width=width))


# --------------------------------------------------------------------------- QAT


class FakeQuantize(nn.Module):
    """Per-tensor affine uint8 fake quantization with a moving min/max range.

    The range is observed in training mode (first batch sets it, then an exponential moving
    average), frozen in eval mode; gradients pass straight through inside the range.
    """

    def __init__(self, momentum: float = 0.05):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.detach().aminmax()
                lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)  # the range holds 0 exactly
                if torch.isinf(self.min_val):
                    self.min_val.copy_(lo)
                    self.max_val.copy_(hi)
                else:
                    self.min_val.lerp_(lo, self.momentum)
                    self.max_val.lerp_(hi, self.momentum)
        if torch.isinf(self.min_val):
            return x
        scale = ((self.max_val - self.min_val) / 255.0).clamp(min=1e-8).float()
        zero = torch.round(-self.min_val / scale).clamp(0, 255).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def fake_quantize_weight(w: Tensor) -> Tensor:
    """Per-output-channel symmetric int8 fake quantization (what ORT does to weights)."""
    amax = w.detach().abs().flatten(1).amax(dim=1).clamp(min=1e-8)
    scale = (amax / 127.0).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


class QATConvBN(nn.Module):
    """A :class:`ConvBN` trained with fake quantization: input, folded weight and output.

    BatchNorm is folded into the weights with its statistics frozen (its affine parameters still
    train through the fold), as the int8 graph folds it; ``inner`` keeps the original module,
    whose parameters are the ones being trained.
    """

    def __init__(self, inner: ConvBN):
        super().__init__()
        self.inner = inner
        self.quant_in = FakeQuantize()
        self.quant_out = FakeQuantize()

    def forward(self, x: Tensor) -> Tensor:
        inner, conv = self.inner, self.inner.conv
        x = self.quant_in(x)
        if not inner.static_pad:
            x = pad_same(x, inner.kernel, inner.stride)
        weight, bias = conv.weight, conv.bias
        bn = inner.bn
        if isinstance(bn, nn.BatchNorm2d):
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = weight * scale.view(-1, 1, 1, 1)
            shift = bn.bias - bn.running_mean * scale
            bias = shift if bias is None else bias * scale + shift
        y = F.conv2d(x, fake_quantize_weight(weight), bias, conv.stride, conv.padding,
                     conv.dilation, conv.groups)
        return inner.act(self.quant_out(y))


class QATLinear(nn.Module):
    """A dense layer trained with fake-quantized input, weight and output."""

    def __init__(self, inner: nn.Linear):
        super().__init__()
        self.inner = inner
        self.quant_in = FakeQuantize()
        self.quant_out = FakeQuantize()

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(self.quant_in(x), fake_quantize_weight(self.inner.weight), self.inner.bias)
        return self.quant_out(y)


def prepare_qat(model: MoViNet) -> MoViNet:
    """Wrap every convolution (ConvBN) and dense layer of ``model`` for QAT, in place.

    BatchNorm statistics freeze (see :class:`QATConvBN`); the model must not be fused.
    """
    if model.fused:
        raise ValueError("QAT needs the unfused model (BatchNorm is folded during training)")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvBN):
                setattr(parent, name, QATConvBN(child))
            elif isinstance(child, nn.Linear) and not isinstance(parent, (QATLinear,)):
                setattr(parent, name, QATLinear(child))
    return model


def strip_qat(model: MoViNet) -> MoViNet:
    """Undo :func:`prepare_qat` in place: the float model with the fine-tuned weights."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (QATConvBN, QATLinear)):
                setattr(parent, name, child.inner)
    return model


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


def train_epochs(model: MoViNet, epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]],
                 epochs: int, lr: float, weight_decay: float = 1e-4,
                 freeze_bn: bool = False,
                 on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """A small single-process fine-tuning loop (AdamW, cosine decay, cross-entropy).

    Args:
        model: the model to train (e.g. after :func:`prepare_qat`).
        epoch_batches: ``epoch -> iterable of (clips [B, 3, T, H, W] uint8/float, labels [B])``.
        epochs, lr, weight_decay: the schedule.
        freeze_bn: keep BatchNorm statistics fixed (QAT does).
        on_epoch: called with ``(epoch, mean loss)`` after each epoch.

    Returns:
        the mean training loss per epoch.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses = []
    steps_done, total_steps = 0, None
    for epoch in range(epochs):
        model.train()
        if freeze_bn:
            _freeze_bn(model)
        batches = list(epoch_batches(epoch))
        if total_steps is None:
            total_steps = max(1, len(batches) * epochs)
        epoch_loss = []
        for clips, labels in batches:
            for group in opt.param_groups:  # cosine decay over all steps
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * steps_done / total_steps))
            logits, _ = model(to_float_clip(clips))
            loss = F.cross_entropy(logits, torch.as_tensor(labels))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps_done += 1
            epoch_loss.append(loss.item())
        losses.append(float(np.mean(epoch_loss)) if epoch_loss else float("nan"))
        if on_epoch:
            on_epoch(epoch, losses[-1])
    model.eval()
    return losses


def quantize_aware_finetune(model: MoViNet,
                            epoch_batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]],
                            epochs: int = 2, lr: float = 1e-4, **kwargs) -> MoViNet:
    """QAT: fine-tune a copy of ``model`` with fake quantization; returns the float model with
    the fine-tuned weights (convert it with :func:`quantize_int8`)."""
    qat = prepare_qat(copy.deepcopy(model))
    train_epochs(qat, epoch_batches, epochs, lr, freeze_bn=True, **kwargs)
    return strip_qat(qat).eval()


# --------------------------------------------------------------------------- evaluation


def predict(model, clips: Iterable[Tensor], batch_size: int = 8) -> Tensor:
    """Logits ``[N, C]`` of a stream model over clips ``[3, T, H, W]`` (whole clip each, from the
    zero state; ONNX models step frame by frame)."""
    out = []
    with torch.inference_mode():
        for video in batched(clips, batch_size):
            logits, _ = model(video, model.init_state(video.shape[0], *video.shape[-2:]))
            out.append(logits.float())
    return torch.cat(out)


def evaluate_top1(model, clips: Sequence[Tensor], labels: Sequence[int],
                  batch_size: int = 8) -> float:
    """Top-1 accuracy of a stream model on labelled clips."""
    logits = predict(model, clips, batch_size)
    return float((logits.argmax(1) == torch.as_tensor(labels)).float().mean())


def frames_per_second(model, height: int, width: int, batch: int = 1, steps: int = 20,
                      warmup: int = 3, repeats: int = 3) -> float:
    """Stream throughput: frames/s over ``batch`` streams fed one frame per call (best of
    ``repeats`` runs of ``steps`` calls, after ``warmup`` calls)."""
    state = model.init_state(batch, height, width)
    frame = torch.rand(batch, 3, 1, height, width)
    best = 0.0
    with torch.inference_mode():
        for _ in range(warmup):
            _, state = model(frame, state)
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                _, state = model(frame, state)
            best = max(best, batch * steps / (time.perf_counter() - start))
    return best


def file_size_mb(path: str | Path) -> float:
    return Path(path).stat().st_size / 1e6


__all__ = [
    "DEFAULT_OP_TYPES", "FakeQuantize", "INT8_METHOD", "QATConvBN", "QATLinear",
    "QUANT_FRIENDLY", "batched", "create_quantizable_model", "evaluate_top1",
    "export_onnx_fp32", "file_size_mb", "frames_per_second", "fused_copy", "predict",
    "prepare_qat", "quantize_aware_finetune", "quantize_int8", "save_fp16", "stream_feeds",
    "strip_qat", "train_epochs",
]
