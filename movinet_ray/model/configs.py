"""MoViNet A0-A5 as data, and the typed build options.

The block table is the one the released checkpoints use (TF Model Garden
``official/projects/movinet/modeling/movinet.py`` BLOCK_SPECS), which differs from the paper's
printed tables. Base vs. stream is a set of option defaults, never a second table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["base", "stream"]
CONV_TYPES = ("3d", "2plus1d", "3d_2plus1d")
SE_TYPES = ("3d", "2d", "2plus3d", "none")
ACTIVATIONS = ("swish", "hard_swish", "relu6", "relu", "gelu", "sigmoid", "hard_sigmoid",
               "hard_sigmoid_keras", "hard_sigmoid_torch", "identity")


@dataclass(frozen=True)
class LayerSpec:
    """One inverted-bottleneck layer: expansion width, (kt, kh, kw) kernel, spatial stride."""

    expand: int
    kernel: tuple[int, int, int]
    stride: int = 1


@dataclass(frozen=True)
class StageSpec:
    """A stage: every layer projects to the same output width."""

    out: int
    layers: tuple[LayerSpec, ...]


@dataclass(frozen=True)
class VariantSpec:
    """Architecture and the input the published accuracy was measured at."""

    name: str
    stem: int
    head: int
    stages: tuple[StageSpec, ...]
    resolution: int
    fps: float
    eval_frames: int
    dropout: dict[str, float] = field(default_factory=lambda: {"base": 0.5, "stream": 0.5})
    positional_encoding: bool = False  # stream mode only (A3-A5)

    @property
    def num_layers(self) -> int:
        return sum(len(s.layers) for s in self.stages)


def _stage(out: int, *layers: str) -> StageSpec:
    """Parse ``"24/1x5x5/s2"`` (expand / kt x kh x kw / optional stride) into a stage."""
    specs = []
    for text in layers:
        parts = text.split("/")
        kt, kh, kw = (int(v) for v in parts[1].split("x"))
        stride = int(parts[2][1:]) if len(parts) > 2 else 1
        specs.append(LayerSpec(int(parts[0]), (kt, kh, kw), stride))
    return StageSpec(out, tuple(specs))


# Stem is always 1x3x3 / stride 2; the classifier's hidden width is 2048 for every variant.
# Input sizes in the comments are at each variant's native resolution.
VARIANTS: dict[str, VariantSpec] = {
    "a0": VariantSpec(
        "a0", stem=8, head=480, resolution=172, fps=5, eval_frames=50,
        dropout={"base": 0.2, "stream": 0.2},
        stages=(
            _stage(8, "24/1x5x5/s2"),                                        # 86 -> 43
            _stage(32, "80/3x3x3/s2", "80/3x3x3", "80/3x3x3"),               # 43 -> 22
            _stage(56, "184/5x3x3/s2", "112/3x3x3", "184/3x3x3"),            # 22 -> 11
            _stage(56, "184/5x3x3", "184/3x3x3", "184/3x3x3", "184/3x3x3"),  # 11
            _stage(104, "384/5x3x3/s2", "280/1x5x5", "280/1x5x5", "344/1x5x5"),  # 11 -> 6
        ),
    ),
    "a1": VariantSpec(
        "a1", stem=16, head=600, resolution=172, fps=5, eval_frames=50,
        dropout={"base": 0.5, "stream": 0.2},
        stages=(
            _stage(16, "40/1x5x5/s2", "40/3x3x3"),
            _stage(40, "96/3x3x3/s2", "120/3x3x3", "96/3x3x3", "96/3x3x3"),
            _stage(64, "216/5x3x3/s2", "128/3x3x3", "216/3x3x3", "168/3x3x3", "216/3x3x3"),
            _stage(64, "216/5x3x3", "216/3x3x3", "216/3x3x3", "128/3x3x3", "128/1x5x5",
                   "216/3x3x3"),
            _stage(136, "456/5x3x3/s2", "360/1x5x5", "360/1x5x5", "360/1x5x5", "456/1x5x5",
                   "456/3x3x3", "544/1x3x3"),
        ),
    ),
    "a2": VariantSpec(
        "a2", stem=16, head=640, resolution=224, fps=5, eval_frames=50,
        stages=(
            _stage(16, "40/1x5x5/s2", "40/3x3x3", "64/3x3x3"),
            _stage(40, "96/3x3x3/s2", "120/3x3x3", "96/3x3x3", "96/3x3x3", "120/3x3x3"),
            _stage(72, "240/5x3x3/s2", "160/3x3x3", "240/3x3x3", "192/3x3x3", "240/3x3x3"),
            _stage(72, "240/5x3x3", "240/3x3x3", "240/3x3x3", "240/3x3x3", "144/1x5x5",
                   "240/3x3x3"),
            _stage(144, "480/5x3x3/s2", "384/1x5x5", "384/1x5x5", "480/1x5x5", "480/1x5x5",
                   "480/3x3x3", "576/1x3x3"),
        ),
    ),
    "a3": VariantSpec(
        "a3", stem=16, head=744, resolution=256, fps=12, eval_frames=120,
        positional_encoding=True,
        stages=(
            _stage(16, "40/1x5x5/s2", "40/3x3x3", "64/3x3x3", "40/3x3x3"),
            _stage(48, "112/3x3x3/s2", "144/3x3x3", "112/3x3x3", "112/1x5x5", "144/3x3x3",
                   "144/3x3x3"),
            _stage(80, "240/5x3x3/s2", "152/3x3x3", "240/3x3x3", "192/3x3x3", "240/3x3x3"),
            # 80 -> 88 without a stride: projection skip, no pool.
            _stage(88, "264/5x3x3", "264/3x3x3", "264/3x3x3", "264/3x3x3", "160/1x5x5",
                   "264/3x3x3", "264/3x3x3", "264/3x3x3"),
            _stage(168, "560/5x3x3/s2", "448/1x5x5", "448/1x5x5", "560/1x5x5", "560/1x5x5",
                   "560/3x3x3", "448/1x5x5", "448/1x5x5", "560/3x3x3", "672/1x3x3"),
        ),
    ),
    "a4": VariantSpec(
        "a4", stem=24, head=856, resolution=290, fps=8, eval_frames=80,
        positional_encoding=True,
        stages=(
            _stage(24, "64/1x5x5/s2", "64/3x3x3", "96/3x3x3", "64/3x3x3", "96/3x3x3",
                   "64/3x3x3"),
            _stage(56, "168/3x3x3/s2", "168/3x3x3", "136/3x3x3", "136/3x3x3", "168/3x3x3",
                   "168/3x3x3", "168/3x3x3", "136/1x5x5", "136/3x3x3"),
            _stage(96, "320/5x3x3/s2", "160/3x3x3", "320/3x3x3", "192/3x3x3", "320/3x3x3",
                   "160/3x3x3", "320/3x3x3", "256/3x3x3", "320/3x3x3"),
            _stage(96, "320/5x3x3", "320/3x3x3", "320/3x3x3", "320/3x3x3", "192/1x5x5",
                   "320/3x3x3", "320/3x3x3", "192/3x3x3", "320/3x3x3", "320/3x3x3"),
            _stage(192, "640/5x3x3/s2", "512/1x5x5", "512/1x5x5", "640/1x5x5", "640/1x5x5",
                   "640/3x3x3", "512/1x5x5", "512/1x5x5", "640/1x5x5", "768/1x5x5",
                   "640/1x5x5", "640/3x3x3", "768/3x3x3"),
        ),
    ),
    "a5": VariantSpec(
        "a5", stem=24, head=992, resolution=320, fps=12, eval_frames=120,
        positional_encoding=True,
        stages=(
            _stage(24, "64/1x5x5/s2", "64/1x5x5", "96/3x3x3", "64/3x3x3", "96/3x3x3",
                   "64/3x3x3"),
            _stage(64, "192/5x3x3/s2", "152/3x3x3", "152/3x3x3", "152/3x3x3", "192/3x3x3",
                   "192/3x3x3", "192/3x3x3", "152/3x3x3", "152/3x3x3", "192/3x3x3",
                   "192/3x3x3"),
            _stage(112, "376/5x3x3/s2", "224/3x3x3", "376/3x3x3", "376/3x3x3", "296/3x3x3",
                   "376/3x3x3", "224/3x3x3", "376/3x3x3", "376/3x3x3", "296/3x3x3",
                   "376/3x3x3", "376/3x3x3", "376/3x3x3"),
            # 112 -> 120 without a stride: projection skip, no pool.
            _stage(120, "376/5x3x3", "376/3x3x3", "376/3x3x3", "376/3x3x3", "224/1x5x5",
                   "376/3x3x3", "376/3x3x3", "224/3x3x3", "376/3x3x3", "376/3x3x3",
                   "376/3x3x3"),
            _stage(224, "744/5x3x3/s2", "744/3x3x3", "600/1x5x5", "600/1x5x5", "744/1x5x5",
                   "744/1x5x5", "744/3x3x3", "896/1x5x5", "600/1x5x5", "600/1x5x5",
                   "896/1x5x5", "744/1x5x5", "744/3x3x3", "896/1x5x5", "600/1x5x5",
                   "600/1x5x5", "744/1x5x5", "744/3x3x3"),
        ),
    ),
}

CLASSIFIER_HIDDEN = 2048


@dataclass(frozen=True)
class MoViNetConfig:
    """Every option that changes the network; ``MoViNetConfig.create`` fills per-mode defaults.

    ``gating_activation="hard_sigmoid"`` is the Model Garden function relu6(x+3)*0.16667 that
    the current TF source (and our parity fixtures) use; ``hard_sigmoid_keras`` is Keras 2's
    clip(0.2x+0.5, 0, 1), which the 2021 TF-Hub stream exports were built with.
    """

    variant: str = "a0"
    mode: Mode = "base"
    num_classes: int = 600
    causal: bool = False
    conv_type: str = "3d"
    se_type: str = "3d"
    activation: str = "swish"
    gating_activation: str = "sigmoid"
    classifier_activation: str = "swish"
    use_positional_encoding: bool = False
    dropout: float = 0.2
    stochastic_depth: float = 0.0
    # Initial ReZero scale of every block's residual branch. 0 (official) starts each block as
    # its shortcut, and the shortcuts see one frame at a time: a network trained from scratch
    # starts blind to motion until the scales grow. Loaded weights overwrite it.
    rezero_init: float = 0.0
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01  # PyTorch convention: Keras momentum 0.99

    @classmethod
    def create(cls, variant: str = "a0", mode: Mode = "base", **overrides) -> "MoViNetConfig":
        """Official defaults for ``(variant, mode)``, then ``overrides`` (validated)."""
        variant = variant.lower()
        if variant not in VARIANTS:
            raise ValueError(f"unknown MoViNet variant {variant!r}; choose from {sorted(VARIANTS)}")
        if mode not in ("base", "stream"):
            raise ValueError(f"mode must be 'base' or 'stream', got {mode!r}")
        spec = VARIANTS[variant]
        stream = mode == "stream"
        defaults = dict(
            variant=variant, mode=mode,
            causal=stream,
            conv_type="2plus1d" if stream else "3d",
            se_type="2plus3d" if stream else "3d",
            activation="hard_swish" if stream else "swish",
            gating_activation="hard_sigmoid" if stream else "sigmoid",
            use_positional_encoding=stream and spec.positional_encoding,
            dropout=spec.dropout[mode],
        )
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown MoViNet option(s): {sorted(unknown)}")
        cfg = cls(**{**defaults, **overrides})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.conv_type not in CONV_TYPES:
            raise ValueError(f"conv_type must be one of {CONV_TYPES}, got {self.conv_type!r}")
        if self.se_type not in SE_TYPES:
            raise ValueError(f"se_type must be one of {SE_TYPES}, got {self.se_type!r}")
        for name in ("activation", "gating_activation", "classifier_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(f"{name} must be one of {ACTIVATIONS}, got {getattr(self, name)!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.stochastic_depth < 1.0:
            raise ValueError("dropout and stochastic_depth must be in [0, 1)")

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]

    @property
    def stateful(self) -> bool:
        """Causal models carry state between calls; non-causal (base) models do not."""
        return self.causal

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MoViNetConfig":
        cfg = cls(**data)
        cfg.validate()
        return cfg
