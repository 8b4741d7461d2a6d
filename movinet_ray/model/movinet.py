"""The MoViNet network (A0-A5, base and stream) with explicit, batched stream state."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from .configs import CLASSIFIER_HIDDEN, MoViNetConfig
from .layers import (
    ClassifierHead,
    Clip,
    ConvBN,
    Head,
    MovinetBlock,
    StreamState,
    init_weights,
)

State = dict[str, Tensor]
FRAME_COUNT = "state_frame_count"
HEAD_POOL = "state_head_pool_buffer"


class MoViNet(nn.Module):
    """MoViNet classifier.

    ``forward(video, state=None) -> (logits, state)`` for every model:

    * ``video``: float ``[B, 3, T, H, W]``, RGB in [0, 1] (no mean/std), any T >= 1, any H, W.
    * ``state``: ``dict[str, Tensor]`` from :meth:`init_state` or a previous call; ``None``
      starts from zeros. Stream (causal) models return the state after the clip; feeding a video
      in any chunking gives the logits of the whole clip. Base (non-causal) models see each call
      as a whole clip and return ``{}``.
    * ``logits``: ``[B, num_classes]`` over all frames seen so far.

    Unlike the official design, the frame counter ``state_frame_count`` has a batch dimension:
    the streams of one batch may be at different positions (see :meth:`reset_state`).
    """

    def __init__(self, cfg: MoViNetConfig):
        super().__init__()
        self.cfg = cfg
        spec = cfg.spec
        eps, mom = cfg.bn_eps, cfg.bn_momentum
        self.stem = ConvBN(3, spec.stem, 3, 2, act=cfg.activation, bn_eps=eps, bn_momentum=mom)
        stages, cin, index = [], spec.stem, 0
        for i, stage in enumerate(spec.stages):
            layers = []
            for j, layer in enumerate(stage.layers):
                index += 1  # the official drop-path schedule: rate * i / N, i counted from 1
                layers.append(MovinetBlock(
                    cin, stage.out, layer.expand, layer.kernel, layer.stride, cfg,
                    drop_path=cfg.stochastic_depth * index / spec.num_layers,
                    name=f"state_block{i}_layer{j}"))
                cin = stage.out
            stages.append(nn.ModuleList(layers))
        self.blocks = nn.ModuleList(stages)
        self.head = Head(cin, spec.head, cfg.activation, cfg.causal, eps, mom)
        self.classifier = ClassifierHead(spec.head, CLASSIFIER_HIDDEN, cfg.num_classes,
                                         cfg.classifier_activation, cfg.dropout)
        self.fused = False
        init_weights(self)
        self._state_shapes: dict[tuple[int, int], dict[str, tuple[int, ...]]] = {}

    # ------------------------------------------------------------------ properties

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    @property
    def stateful(self) -> bool:
        return self.cfg.causal

    @property
    def num_features(self) -> int:
        return self.cfg.spec.head

    # ------------------------------------------------------------------ forward

    def forward(self, video: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        pooled, state = self.forward_features(video, state)
        return self.forward_head(pooled), state

    def forward_head(self, pooled: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooled features ``[B, P]`` -> logits ``[B, num_classes]`` (or the 2048-d pre-logits)."""
        return self.classifier(pooled, pre_logits=pre_logits)

    def forward_features(self, video: Tensor, state: State | None = None,
                         endpoints: dict[str, Tensor] | None = None) -> tuple[Tensor, State]:
        """Backbone: video -> pooled features ``[B, P]`` and the next state.

        ``endpoints``, if given, receives the stem, every block (as ``[B, T, H, W, C]``, the
        official layout and names, e.g. ``block1_layer2``) and the pooled ``head``.
        """
        b, t, h, w = self._check_video(video)
        frames = video.permute(0, 2, 3, 4, 1).reshape(b * t, h, w, 3).permute(0, 3, 1, 2)
        if self.stateful:
            if state is None:
                count = torch.zeros(b, dtype=torch.long, device=video.device)
            else:
                self._check_state(state, b, h, w)
                count = state[FRAME_COUNT]
        else:
            state, count = None, torch.zeros(b, dtype=torch.long, device=video.device)
        stream = StreamState(inputs=state, frame_count=count)

        clip = Clip(self.stem(frames), b, t)
        if endpoints is not None:
            endpoints["stem"] = clip.nthwc()
        for i, stage in enumerate(self.blocks):
            for j, block in enumerate(stage):
                clip = block(clip, stream)
                if endpoints is not None:
                    endpoints[f"block{i}_layer{j}"] = clip.nthwc()
        pooled = self.head(clip, stream, HEAD_POOL)
        if endpoints is not None:
            endpoints["head"] = pooled
        if not self.stateful:
            return pooled, {}
        stream.outputs[FRAME_COUNT] = count + t
        return pooled, stream.outputs

    # ------------------------------------------------------------------ state

    def state_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        """Per-stream shape of every state tensor (without the batch dim) for an input size.

        Stream buffers are ``[kt-1, H', W', C]`` (TF layout), pool sums ``[C]``, the frame
        counter ``[]``. Empty for base models.
        """
        key = (height, width)
        if key not in self._state_shapes:
            self._state_shapes[key] = self._compute_state_shapes(height, width)
        return self._state_shapes[key]

    def _compute_state_shapes(self, height: int, width: int) -> dict[str, tuple[int, ...]]:
        if not self.stateful:
            return {}
        cfg, spec = self.cfg, self.cfg.spec
        shapes: dict[str, tuple[int, ...]] = {}
        h, w = -(-height // 2), -(-width // 2)  # after the stride-2 stem
        for i, stage in enumerate(spec.stages):
            for j, layer in enumerate(stage.layers):
                name = f"state_block{i}_layer{j}"
                kt = layer.kernel[0]
                # (2+1)D buffers sit after the strided spatial conv; 3D ones before it.
                post_stride = cfg.conv_type != "3d"
                if layer.stride > 1 and post_stride:
                    h, w = -(-h // layer.stride), -(-w // layer.stride)
                if kt > 1:
                    shapes[f"{name}_stream_buffer"] = (kt - 1, h, w, layer.expand)
                if cfg.se_type in ("3d", "2plus3d"):
                    shapes[f"{name}_pool_buffer"] = (layer.expand,)
                if layer.stride > 1 and not post_stride:
                    h, w = -(-h // layer.stride), -(-w // layer.stride)
        shapes[HEAD_POOL] = (spec.head,)
        shapes[FRAME_COUNT] = ()
        return shapes

    def init_state(self, batch_size: int, height: int, width: int,
                   device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> State:
        """Zero state for ``batch_size`` new streams of ``height x width`` frames.

        Stream buffers take ``dtype`` (the activation dtype); running sums stay float32 and the
        frame counter int64, whatever the model precision.
        """
        state = {}
        for name, shape in self.state_shapes(height, width).items():
            if name == FRAME_COUNT:
                kind = torch.long
            elif name.endswith("_stream_buffer"):
                kind = dtype
            else:
                kind = torch.float32
            state[name] = torch.zeros((batch_size, *shape), dtype=kind, device=device)
        return state

    @staticmethod
    def reset_state(state: State, mask: Tensor) -> State:
        """Return ``state`` with the streams where the bool ``mask`` ``[B]`` is True at zero."""
        mask = torch.as_tensor(mask, dtype=torch.bool)
        out = {}
        for name, value in state.items():
            keep = ~mask.to(value.device).view(-1, *([1] * (value.dim() - 1)))
            out[name] = value * keep.to(value.dtype)
        return out

    # ------------------------------------------------------------------ utilities

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last layer for ``num_classes`` (fine-tuning); the 2048-d layer stays."""
        self.classifier.reset(num_classes)
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes)

    @torch.no_grad()
    def fuse_bn_(self) -> "MoViNet":
        """Fold every BatchNorm into its convolution, in place, for inference.

        The fused model gives the same outputs in eval mode with fewer passes over memory; it
        cannot train (its BatchNorm is gone).
        """
        self.eval()
        for module in self.modules():
            if module is not self and hasattr(module, "fuse_bn_"):
                module.fuse_bn_()
        self.fused = True
        return self

    def train(self, mode: bool = True) -> "MoViNet":
        if mode and getattr(self, "fused", False):
            raise RuntimeError("this model's BatchNorm was fused for inference; it cannot train")
        return super().train(mode)

    def _check_video(self, video: Tensor) -> tuple[int, int, int, int]:
        if not isinstance(video, Tensor):
            raise TypeError(f"video must be a torch.Tensor, got {type(video).__name__}")
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(
                f"video must be [B, 3, T, H, W] (RGB in [0, 1]), got shape {tuple(video.shape)}")
        if not video.is_floating_point():
            raise TypeError(f"video must be a float tensor in [0, 1], got {video.dtype}")
        b, _, t, h, w = video.shape
        if min(b, t, h, w) < 1:
            raise ValueError(f"video has an empty dimension: {tuple(video.shape)}")
        return b, t, h, w

    def _check_state(self, state: State, batch: int, height: int, width: int) -> None:
        expected = self.state_shapes(height, width)
        if state.keys() != expected.keys():
            missing = sorted(expected.keys() - state.keys())
            extra = sorted(state.keys() - expected.keys())
            raise ValueError(f"state does not belong to this model: missing {missing[:5]}, "
                             f"unexpected {extra[:5]}")
        for name, shape in expected.items():
            got = tuple(state[name].shape)
            if got != (batch, *shape):
                raise ValueError(
                    f"state {name!r} has shape {got}, expected {(batch, *shape)} for a batch of "
                    f"{batch} at {height}x{width} (init_state(batch, height, width) makes one)")


def create_model(variant: str = "a0", mode: str = "base", num_classes: int = 600,
                 **overrides) -> MoViNet:
    """Build a MoViNet with random weights.

    Args:
        variant: ``"a0"`` ... ``"a5"``.
        mode: ``"base"`` (whole clip, non-causal) or ``"stream"`` (causal, frame by frame).
        num_classes: size of the last layer (600 = Kinetics-600).
        **overrides: any :class:`MoViNetConfig` field, e.g. ``conv_type``, ``se_type``,
            ``activation``, ``gating_activation``, ``use_positional_encoding``, ``dropout``,
            ``stochastic_depth``, ``causal``.
    """
    cfg = MoViNetConfig.create(variant, mode, num_classes=num_classes, **overrides)
    return MoViNet(cfg)
