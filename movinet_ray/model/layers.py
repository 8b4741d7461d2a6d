"""MoViNet building blocks.

Layout: inside the network a video is a batch of frames ``[B*T, C, H, W]`` in channels-last
memory (depthwise convolutions run about 2x faster that way on CPU), with ``B`` and ``T`` carried
in a :class:`Clip`. Temporal operations view the same memory as ``[B, T, H, W, C]`` - the
TensorFlow layout - so stream buffers have exactly the official shapes.

Stateful layers read and write a flat ``dict[str, Tensor]`` of named states (see
:class:`StreamState`); nothing is kept on the modules between calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------- activations


class HardSigmoidTF(nn.Module):
    """Model Garden ``activations.hard_sigmoid``: relu6(x + 3) * 0.16667 (not exactly 1/6)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x + 3.0) * 0.16667


class HardSigmoidKeras(nn.Module):
    """Keras 2 ``hard_sigmoid``: clip(0.2 x + 0.5, 0, 1), used by the 2021 TF-Hub exports."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


_ACTIVATIONS = {
    "swish": nn.SiLU,
    "hard_swish": nn.Hardswish,
    "relu6": nn.ReLU6,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": HardSigmoidTF,
    "hard_sigmoid_keras": HardSigmoidKeras,
    "hard_sigmoid_torch": nn.Hardsigmoid,
    "identity": nn.Identity,
}


def make_activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor`` (at least ``divisor``), never more than 10% down."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after): the extra pixel goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Zero-pad frames ``[N, C, H, W]`` so a 'valid' conv/pool gives TF 'SAME' output.

    Pads in the ``[N, H, W, C]`` view: ``F.pad`` returns a contiguous tensor, which for NCHW
    would silently drop channels-last and send every later conv to a slow kernel.
    """
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    nhwc = F.pad(x.permute(0, 2, 3, 1), (0, 0, left, right, top, bottom))
    return nhwc.permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- clip and state


@dataclass
class Clip:
    """Frames ``[B*T, C, H, W]`` (channels-last) plus the batch and time sizes they fold."""

    x: Tensor
    batch: int
    time: int

    def with_x(self, x: Tensor) -> "Clip":
        return Clip(x, self.batch, self.time)

    def nthwc(self) -> Tensor:
        """View as ``[B, T, H, W, C]`` (no copy for channels-last frames)."""
        n, c, h, w = self.x.shape
        return self.x.permute(0, 2, 3, 1).reshape(self.batch, self.time, h, w, c)


def frames_from_nthwc(x: Tensor) -> Tensor:
    """``[B, T, H, W, C]`` -> channels-last frames ``[B*T, C, H, W]`` (a view when contiguous)."""
    b, t, h, w, c = x.shape
    return x.reshape(b * t, h, w, c).permute(0, 3, 1, 2)


@dataclass
class StreamState:
    """The state flowing through one forward call.

    ``inputs`` is the state the caller passed (``None`` = start from zeros, as the official
    causal models do when trained without external states); ``outputs`` collects the next state.
    ``frame_count`` ``[B]`` counts frames seen before this call, per stream, so the streams of a
    batch may be at different positions.
    """

    inputs: dict[str, Tensor] | None
    frame_count: Tensor
    outputs: dict[str, Tensor] = field(default_factory=dict)

    def get(self, name: str) -> Tensor | None:
        return None if self.inputs is None else self.inputs[name]


# --------------------------------------------------------------------------- convolutions


class ConvBN(nn.Module):
    """k x k convolution on frames with TF 'SAME' padding, then optional BatchNorm and activation.

    Used for every convolution without a temporal extent (stem, pointwise, spatial depthwise).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 bias: bool = False, norm: bool = True, act: str | None = None,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Stride 1 with an odd kernel pads symmetrically: let the conv do it (no copy).
        self.static_pad = stride == 1 and kernel % 2 == 1
        pad = kernel // 2 if self.static_pad else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=pad, groups=groups,
                              bias=bias or not norm)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum) if norm else nn.Identity()
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        if not self.static_pad:
            x = pad_same(x, self.kernel, self.stride)
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse_bn_(self) -> None:
        """Fold BatchNorm into the conv (inference only)."""
        if isinstance(self.bn, nn.Identity):
            return
        scale, shift = _bn_scale_shift(self.bn)
        conv = self.conv
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros_like(shift))
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias.copy_(conv.bias * scale + shift)
        self.bn = nn.Identity()


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def temporal_window(x: Tensor, kernel: int, causal: bool, state: StreamState,
                    name: str) -> Tensor:
    """Pad ``x`` ``[B, T, H, W, C]`` in time for a 'valid' temporal conv of size ``kernel``.

    Causal: ``kernel-1`` frames from the stream buffer (zeros at the start) go in front, and the
    last ``kernel-1`` frames become the new buffer - so any chunking of a video gives the same
    result. Non-causal: symmetric zero padding, no state.
    """
    if kernel == 1:
        return x
    if not causal:
        p = (kernel - 1) // 2
        return F.pad(x, (0, 0, 0, 0, 0, 0, p, kernel - 1 - p))
    buffer = state.get(name)
    if buffer is None:
        buffer = x.new_zeros((x.shape[0], kernel - 1) + x.shape[2:])
    full = torch.cat([buffer, x], dim=1)
    state.outputs[name] = full[:, -(kernel - 1):]
    return full


class _DepthwiseTemporalBN(nn.Module):
    """Shared by the temporal depthwise convolutions: a Conv3d-layout weight
    ``[C, 1, kt, kh, kw]``, a bias that appears when BatchNorm is fused, BN, activation."""

    def __init__(self, channels: int, kernel: tuple[int, int, int], causal: bool,
                 act: str | None, bn_eps: float, bn_momentum: float):
        super().__init__()
        self.kt, self.causal = kernel[0], causal
        self.weight = nn.Parameter(torch.empty(channels, 1, *kernel))
        self.bias: nn.Parameter | None = None
        self.bn = nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum)
        self.act = make_activation(act)
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")

    def _finish(self, out: Tensor) -> Tensor:
        """``[B, T, H, W, C]`` sum of taps -> bias, BN, activation on channels-last frames."""
        if self.bias is not None:
            out = out + self.bias
        return self.act(self.bn(frames_from_nthwc(out.contiguous())))

    @torch.no_grad()
    def fuse_bn_(self) -> None:
        if isinstance(self.bn, nn.Identity):
            return
        scale, shift = _bn_scale_shift(self.bn)
        self.weight.mul_(scale.view(-1, 1, 1, 1, 1))
        self.bias = nn.Parameter(shift.clone())
        self.bn = nn.Identity()


class TemporalConvBN(_DepthwiseTemporalBN):
    """Depthwise (kt x 1 x 1) convolution, then BatchNorm and activation: the '(2+1)D' time half.

    The stream buffer holds the last kt-1 frames *after* the spatial half (post-stride), as in
    the official (2+1)D stream models.
    """

    def __init__(self, channels: int, kernel: int, causal: bool, act: str | None,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01):
        super().__init__(channels, (kernel, 1, 1), causal, act, bn_eps, bn_momentum)

    def forward(self, clip: Clip, state: StreamState, name: str) -> Tensor:
        full = temporal_window(clip.nthwc(), self.kt, self.causal, state, name)
        t = clip.time
        taps = self.weight.view(-1, self.kt).t()  # [kt, C], broadcast over the last dim
        out = full[:, 0:t] * taps[0]
        for k in range(1, self.kt):
            out = out + full[:, k:k + t] * taps[k]
        return self._finish(out)


class DepthwiseConv3dBN(_DepthwiseTemporalBN):
    """Full (kt x kh x kw) depthwise convolution ('3d' conv type), BatchNorm, activation.

    Computed as one grouped 2D convolution producing the kt temporal taps of every frame, then a
    shifted sum over time: the same arithmetic as a 3D convolution, ~2x faster on CPU than
    ``conv3d`` with channels-last frames. Causal mode buffers the last kt-1 *input* frames
    (pre-stride), as the official 3D stream models do.
    """

    def __init__(self, channels: int, kernel: tuple[int, int, int], stride: int, causal: bool,
                 act: str | None, bn_eps: float = 1e-3, bn_momentum: float = 0.01):
        if kernel[1] != kernel[2]:
            raise ValueError(f"square spatial kernels only, got {kernel}")
        super().__init__(channels, kernel, causal, act, bn_eps, bn_momentum)
        self.kernel, self.stride = kernel[1], stride

    def forward(self, clip: Clip, state: StreamState, name: str) -> Tensor:
        full = temporal_window(clip.nthwc(), self.kt, self.causal, state, name)
        b, t_full = full.shape[:2]
        c = self.weight.shape[0]
        frames = pad_same(frames_from_nthwc(full.contiguous()), self.kernel, self.stride)
        # Grouped 2D conv: output channel c*kt + k is tap k of channel c.
        w2d = self.weight.reshape(c * self.kt, 1, self.kernel, self.kernel)
        taps = F.conv2d(frames, w2d, stride=self.stride, groups=c)
        h, w = taps.shape[-2:]
        taps = taps.permute(0, 2, 3, 1).reshape(b, t_full, h, w, c, self.kt)
        t = clip.time
        out = taps[:, 0:t, ..., 0]
        for k in range(1, self.kt):
            out = out + taps[:, k:k + t, ..., k]
        return self._finish(out)


class FeatureConv(nn.Module):
    """The block's depthwise feature convolution in the configured conv type.

    '2plus1d' and '3d_2plus1d' are the same arithmetic (spatial conv + BN + act, then temporal
    conv + BN + act); they differ only in how TensorFlow stores the kernels. Kernels with kt=1
    are purely spatial in every conv type.
    """

    def __init__(self, channels: int, kernel: tuple[int, int, int], stride: int, conv_type: str,
                 causal: bool, act: str, bn_eps: float, bn_momentum: float):
        super().__init__()
        kt, kh, _ = kernel
        self.stateful = causal and kt > 1
        self.spatial: ConvBN | None = None
        self.temporal: TemporalConvBN | None = None
        self.conv3d: DepthwiseConv3dBN | None = None
        if kt > 1 and conv_type == "3d":
            self.conv3d = DepthwiseConv3dBN(channels, kernel, stride, causal, act, bn_eps,
                                            bn_momentum)
        else:
            self.spatial = ConvBN(channels, channels, kh, stride, groups=channels, act=act,
                                  bn_eps=bn_eps, bn_momentum=bn_momentum)
            if kt > 1:
                self.temporal = TemporalConvBN(channels, kt, causal, act, bn_eps, bn_momentum)

    def forward(self, clip: Clip, state: StreamState, name: str) -> Clip:
        if self.conv3d is not None:
            return clip.with_x(self.conv3d(clip, state, name))
        clip = clip.with_x(self.spatial(clip.x))
        if self.temporal is not None:
            clip = clip.with_x(self.temporal(clip, state, name))
        return clip


# --------------------------------------------------------------------------- pooling


def spatial_mean(clip: Clip) -> Tensor:
    """Per-frame spatial mean ``[B, T, C]``, at least float32 (running sums stay exact when the
    network runs in fp16/bf16)."""
    dtype = torch.promote_types(clip.x.dtype, torch.float32)
    return clip.x.mean(dim=(2, 3), dtype=dtype).view(clip.batch, clip.time, -1)


def cumulative_mean(m: Tensor, state: StreamState, name: str) -> Tensor:
    """Causal running mean over all frames seen so far, per frame: ``[B, T, C]``.

    The carried sum lives in ``state[name]``; divisors use each stream's own frame count.
    """
    carry = state.get(name)
    csum = torch.cumsum(m, dim=1)
    if carry is not None:
        csum = csum + carry.unsqueeze(1)
    state.outputs[name] = csum[:, -1]
    steps = torch.arange(1, m.shape[1] + 1, device=m.device, dtype=m.dtype)
    divisor = state.frame_count.to(m.dtype).unsqueeze(1) + steps
    return csum / divisor.unsqueeze(-1)


def positional_encoding(positions: Tensor, channels: int) -> Tensor:
    """Sinusoids of frame positions ``[B, T]`` -> ``[B, T, channels]``, laid out [sin | cos].

    Matches the official layer: angle_i = p / 10000^(2*floor(i/2)/D), sin of the even columns
    and cos of the odd ones, concatenated (not interleaved).
    """
    idx = torch.arange(channels, device=positions.device)
    power = (2 * (idx // 2)).to(torch.float32) / channels
    angles = 1.0 / torch.pow(torch.tensor(10_000.0, device=positions.device), power)
    radians = positions.to(torch.float32).unsqueeze(-1) * angles
    return torch.cat([torch.sin(radians[..., 0::2]), torch.cos(radians[..., 1::2])], dim=-1)


class SqueezeExcitation(nn.Module):
    """Squeeze-excitation with causal (cumulative) pooling for stream models.

    se_type '3d': global mean over the clip (causal: running mean to each frame);
    '2d': per-frame spatial mean; '2plus3d': [3d pooled | per-frame], so 2x channels in.
    """

    def __init__(self, channels: int, hidden: int, se_type: str, causal: bool,
                 positional_encoding: bool, act: str, gating: str):
        super().__init__()
        self.se_type, self.causal = se_type, causal
        cin = channels * (2 if se_type == "2plus3d" else 1)
        self.pos_scale = nn.Parameter(torch.zeros(())) if positional_encoding else None
        self.reduce = nn.Linear(cin, hidden)
        self.act = make_activation(act)
        self.expand = nn.Linear(hidden, channels)
        self.gate = make_activation(gating)

    @property
    def stateful(self) -> bool:
        return self.causal and self.se_type in ("3d", "2plus3d")

    def forward(self, clip: Clip, state: StreamState, name: str) -> Clip:
        m = spatial_mean(clip)  # [B, T, C]
        if self.se_type == "2d":
            pooled = m
        else:
            if self.causal:
                p3d = cumulative_mean(m, state, name)
            else:
                p3d = m.mean(dim=1, keepdim=True).expand_as(m)
            pooled = torch.cat([p3d, m], dim=-1) if self.se_type == "2plus3d" else p3d
        if self.pos_scale is not None:
            steps = torch.arange(clip.time, device=m.device)
            positions = state.frame_count.unsqueeze(1) + steps
            pooled = pooled + self.pos_scale * positional_encoding(positions, pooled.shape[-1])
        gate = self.gate(self.expand(self.act(self.reduce(pooled.to(clip.x.dtype)))))
        return clip.with_x(clip.x * gate.reshape(-1, gate.shape[-1], 1, 1))


class SkipBranch(nn.Module):
    """Shortcut when shapes change: 3x3/2 'SAME' average pool (if strided), 1x1 conv + BN."""

    def __init__(self, cin: int, cout: int, stride: int, bn_eps: float, bn_momentum: float):
        super().__init__()
        self.stride = stride
        self.projection = ConvBN(cin, cout, 1, norm=True, bn_eps=bn_eps, bn_momentum=bn_momentum)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = avg_pool_same(x, 3, self.stride)
        return self.projection(x)


def avg_pool_same(x: Tensor, kernel: int, stride: int) -> Tensor:
    """TF 'SAME' average pooling: padded cells are excluded from each window's divisor."""
    summed = F.avg_pool2d(pad_same(x, kernel, stride), kernel, stride, divisor_override=1)
    ones = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
    count = F.avg_pool2d(pad_same(ones, kernel, stride), kernel, stride, divisor_override=1)
    return summed / count


# --------------------------------------------------------------------------- block


class MovinetBlock(nn.Module):
    """Inverted bottleneck: expand -> depthwise feature conv -> SE -> project, ReZero residual."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: tuple[int, int, int],
                 stride: int, cfg, drop_path: float, name: str):
        super().__init__()
        self.name = name  # state prefix, e.g. "state_block1_layer0"
        eps, mom = cfg.bn_eps, cfg.bn_momentum
        self.drop_path = drop_path
        self.expansion = ConvBN(cin, expand, 1, act=cfg.activation, bn_eps=eps, bn_momentum=mom)
        self.feature = FeatureConv(expand, kernel, stride, cfg.conv_type, cfg.causal,
                                   cfg.activation, eps, mom)
        self.se: SqueezeExcitation | None = None
        if cfg.se_type != "none":
            hidden = make_divisible(0.25 * expand * (2 if cfg.se_type == "2plus3d" else 1), 8)
            self.se = SqueezeExcitation(expand, hidden, cfg.se_type, cfg.causal,
                                        cfg.use_positional_encoding and cfg.causal,
                                        cfg.activation, cfg.gating_activation)
        self.projection = ConvBN(expand, cout, 1, act=None, bn_eps=eps, bn_momentum=mom)
        self.rezero = nn.Parameter(torch.full((), float(cfg.rezero_init)))
        self.skip = SkipBranch(cin, cout, stride, eps, mom) if (cin != cout or stride > 1) else None

    def forward(self, clip: Clip, state: StreamState) -> Clip:
        shortcut = clip.x if self.skip is None else self.skip(clip.x)
        branch = clip.with_x(self.expansion(clip.x))
        branch = self.feature(branch, state, f"{self.name}_stream_buffer")
        if self.se is not None:
            branch = self.se(branch, state, f"{self.name}_pool_buffer")
        x = self.projection(branch.x) * self.rezero
        if self.training and self.drop_path > 0:
            x = _drop_path(x, self.drop_path, clip.batch)
        return clip.with_x(x + shortcut)


def _drop_path(x: Tensor, rate: float, batch: int) -> Tensor:
    """Stochastic depth: drop the residual branch per video (all of its frames together)."""
    keep = 1.0 - rate
    mask = torch.empty(batch, 1, 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return (x.view(batch, -1, *x.shape[1:]) * (mask / keep)).view_as(x)


# --------------------------------------------------------------------------- head


class Head(nn.Module):
    """1x1 projection + BN + act, then the (running) global average pool -> ``[B, P]``."""

    def __init__(self, cin: int, project: int, act: str, causal: bool, bn_eps: float,
                 bn_momentum: float):
        super().__init__()
        self.causal = causal
        self.project = ConvBN(cin, project, 1, act=act, bn_eps=bn_eps, bn_momentum=bn_momentum)

    def forward(self, clip: Clip, state: StreamState, name: str = "state_head_pool_buffer"
                ) -> Tensor:
        m = spatial_mean(clip.with_x(self.project(clip.x)))  # [B, T, P]
        if not self.causal:
            return m.mean(dim=1).to(clip.x.dtype)
        # A stream model's logits after every call reflect all frames seen so far.
        carry = state.get(name)
        total = m.sum(dim=1) if carry is None else carry + m.sum(dim=1)
        state.outputs[name] = total
        count = state.frame_count.to(total.dtype) + clip.time
        return (total / count.unsqueeze(1)).to(clip.x.dtype)


class ClassifierHead(nn.Module):
    """Dense 2048 + act, dropout, then the class logits (the official ``ClassifierHead``)."""

    def __init__(self, cin: int, hidden: int, num_classes: int, act: str, dropout: float):
        super().__init__()
        self.hidden = nn.Linear(cin, hidden)
        self.act = make_activation(act)
        self.dropout = nn.Dropout(dropout)
        self.fc = self._new_fc(num_classes)

    def _new_fc(self, num_classes: int) -> nn.Linear:
        fc = nn.Linear(self.hidden.out_features, num_classes).to(self.hidden.weight.device)
        nn.init.normal_(fc.weight, std=0.01)
        nn.init.zeros_(fc.bias)
        return fc

    def reset(self, num_classes: int) -> None:
        """A fresh last layer for ``num_classes`` (fine-tuning); the hidden layer stays."""
        self.fc = self._new_fc(num_classes)

    def forward(self, pooled: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(self.act(self.hidden(pooled)))
        return x if pre_logits else self.fc(x)


def init_weights(module: nn.Module) -> None:
    """He-normal convs and dense layers, unit BN (the official from-scratch init).

    ReZero scales (``rezero_init``) and positional-encoding scalars (0) are set where they
    are created.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():  # after the loop above, which visits parents first
        if isinstance(m, ClassifierHead):
            nn.init.normal_(m.fc.weight, std=0.01)
            nn.init.zeros_(m.fc.bias)
