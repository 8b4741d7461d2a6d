"""The frame baseline: a MoViNet variant without time, classifying every frame on its own.

It exists so users can measure, on their own data, what motion adds over appearance. To be a
fair baseline it is the same network minus the temporal axis: the stem, every stage's widths,
depths, expansion widths, spatial kernels and strides come from the MoViNet variant table
(:data:`~movinet_ray.model.configs.VARIANTS`), with 2D depthwise convolutions, per-frame
squeeze-excitation, the same head width and the same 2048-d classifier; only the temporal
kernel taps (a small share of the weights) are gone. Each frame gets its own logits; the
clip's logits are their mean over time, so no layer ever compares two frames.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import ModelInfo, register_architecture
from .configs import ACTIVATIONS, CLASSIFIER_HIDDEN, VARIANTS
from .layers import ClassifierHead, ConvBN, init_weights, make_activation, make_divisible


@dataclass(frozen=True)
class Frame2DConfig:
    """``variant`` names the MoViNet whose spatial layout the baseline copies."""

    variant: str = "a0"
    num_classes: int = 600
    activation: str = "hard_swish"
    dropout: float = 0.2
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose from {sorted(VARIANTS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}")
        if self.num_classes < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("num_classes must be >= 1 and dropout in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _SE2d(nn.Module):
    """Per-frame squeeze-excitation (spatial mean only: no information crosses frames)."""

    def __init__(self, channels: int, hidden: int, act: str):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = make_activation("hard_sigmoid")

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class _Block2d(nn.Module):
    """Inverted bottleneck on frames: expand -> depthwise kh x kw -> SE -> project (+ skip)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int,
                 cfg: Frame2DConfig):
        super().__init__()
        eps, mom, act = cfg.bn_eps, cfg.bn_momentum, cfg.activation
        self.expansion = ConvBN(cin, expand, 1, act=act, bn_eps=eps, bn_momentum=mom)
        self.depthwise = ConvBN(expand, expand, kernel, stride, groups=expand, act=act,
                                bn_eps=eps, bn_momentum=mom)
        # SE hidden width of the stream models' '2plus3d' SE (0.25 x twice the channels).
        self.se = _SE2d(expand, make_divisible(0.5 * expand, 8), act)
        self.projection = ConvBN(expand, cout, 1, act=None, bn_eps=eps, bn_momentum=mom)
        self.residual = cin == cout and stride == 1

    def forward(self, x: Tensor) -> Tensor:
        y = self.projection(self.se(self.depthwise(self.expansion(x))))
        return x + y if self.residual else y


class Frame2D(nn.Module):
    """Frame classifier with the video-model convention.

    ``forward(video, state=None) -> (logits, {})``: ``video`` is float ``[B, 3, T, H, W]`` in
    [0, 1]; ``logits`` ``[B, num_classes]`` are the mean of the ``T`` per-frame logits.
    ``state`` is accepted for interface parity and ignored (the model is not stateful).
    """

    stateful = False

    def __init__(self, cfg: Frame2DConfig):
        super().__init__()
        self.cfg = cfg
        spec = VARIANTS[cfg.variant]
        eps, mom = cfg.bn_eps, cfg.bn_momentum
        self.stem = ConvBN(3, spec.stem, 3, 2, act=cfg.activation, bn_eps=eps, bn_momentum=mom)
        blocks, cin = [], spec.stem
        for stage in spec.stages:
            for layer in stage.layers:
                blocks.append(_Block2d(cin, stage.out, layer.expand, layer.kernel[1],
                                       layer.stride, cfg))
                cin = stage.out
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(cin, spec.head, 1, act=cfg.activation, bn_eps=eps, bn_momentum=mom)
        self.classifier = ClassifierHead(spec.head, CLASSIFIER_HIDDEN, cfg.num_classes,
                                         cfg.activation, cfg.dropout)
        init_weights(self)

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    @property
    def num_features(self) -> int:
        return VARIANTS[self.cfg.variant].head

    def forward(self, video: Tensor, state: dict | None = None) -> tuple[Tensor, dict]:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be [B, 3, T, H, W], got shape {tuple(video.shape)}")
        b, _, t, h, w = video.shape
        frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)
        x = self.head(self.blocks(self.stem(frames.contiguous(memory_format=torch.channels_last))))
        logits = self.classifier(x.mean(dim=(2, 3)))
        return logits.view(b, t, -1).mean(dim=1), {}

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last layer for ``num_classes`` (fine-tuning)."""
        self.classifier.reset(num_classes)
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes)


def create_frame2d(variant: str = "a0", num_classes: int = 600, **overrides) -> Frame2D:
    """The frame baseline shaped like MoViNet ``variant`` (random weights)."""
    return Frame2D(Frame2DConfig(variant=variant, num_classes=num_classes, **overrides))


def frame2d_info(model: Frame2D, class_names, resolution: int, fps: float | None,
                 frames: int, source: str = "random", **extra) -> ModelInfo:
    """The :class:`ModelInfo` of a frame baseline (``load_model`` rebuilds it by name)."""
    return ModelInfo("frame2d", model.cfg.to_dict(), tuple(class_names), resolution, fps,
                     frames, source, dict(extra))


register_architecture("frame2d", lambda config: Frame2D(Frame2DConfig(**config)))
