"""Our checkpoint file: weights plus what they were trained for.

A checkpoint is one ``torch.save`` file holding the architecture, its config, the state dict,
and a :class:`ModelInfo` (class names, expected input size and frame rate, provenance). Every
job loads models through :func:`load_model`, so labels and input sizes travel with the weights
instead of being re-typed by users.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .configs import VARIANTS, MoViNetConfig
from .movinet import MoViNet

FORMAT = "movinet-ray/1"


@dataclass(frozen=True)
class ModelInfo:
    """What a set of weights expects and predicts.

    ``resolution`` is the square crop side the weights were trained at, ``fps`` the frame rate
    of their clips (None = the source rate), ``frames`` the training clip length.
    """

    architecture: str
    config: dict[str, Any]
    class_names: tuple[str, ...]
    resolution: int
    fps: float | None
    frames: int
    source: str = "random"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def stateful(self) -> bool:
        return bool(self.config.get("causal", False))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["class_names"] = list(self.class_names)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelInfo":
        data = dict(data)
        data["class_names"] = tuple(data["class_names"])
        return cls(**data)


def _build_movinet(config: dict[str, Any]) -> nn.Module:
    return MoViNet(MoViNetConfig.from_dict(config))


# Architectures a checkpoint may name; other modules (e.g. the frame baseline) add theirs.
ARCHITECTURES: dict[str, Callable[[dict[str, Any]], nn.Module]] = {"movinet": _build_movinet}


def register_architecture(name: str, builder: Callable[[dict[str, Any]], nn.Module]) -> None:
    ARCHITECTURES[name] = builder


def model_info(model: nn.Module, class_names, resolution: int | None = None,
               fps: float | None = None, frames: int | None = None, source: str = "random",
               **extra) -> ModelInfo:
    """Describe a MoViNet (defaults: the variant's native resolution, fps and clip length)."""
    cfg: MoViNetConfig = model.cfg
    spec = VARIANTS[cfg.variant]
    return ModelInfo("movinet", cfg.to_dict(), tuple(class_names),
                     resolution or spec.resolution, fps if fps is not None else spec.fps,
                     frames or spec.eval_frames, source, dict(extra))


def save_model(path: str | Path, model: nn.Module, info: ModelInfo) -> Path:
    """Write ``model``'s weights and ``info`` to ``path`` (a single file)."""
    if info.num_classes != _num_classes(model):
        raise ValueError(f"{info.num_classes} class names for a model with "
                         f"{_num_classes(model)} outputs")
    if getattr(model, "fused", False):
        raise ValueError("save the model before fuse_bn_(): fused weights cannot train or reload")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "info": info.to_dict(), "state_dict": state}, path)
    return path


def load_model(path: str | Path, device: torch.device | str = "cpu"
               ) -> tuple[nn.Module, ModelInfo]:
    """Rebuild a model from :func:`save_model` output; returns ``(model in eval mode, info)``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a movinet-ray checkpoint (format {FORMAT!r}); "
                         "official TF weights load with `movinet convert` first")
    info = ModelInfo.from_dict(blob["info"])
    try:
        builder = ARCHITECTURES[info.architecture]
    except KeyError:
        raise ValueError(f"{path}: unknown architecture {info.architecture!r}") from None
    model = builder(info.config)
    model.load_state_dict(blob["state_dict"])
    if info.num_classes != _num_classes(model):
        raise ValueError(f"{path}: {info.num_classes} class names but "
                         f"{_num_classes(model)} outputs")
    return model.to(device).eval(), info


def kinetics600_labels() -> list[str]:
    """The 600 Kinetics-600 class names in the official models' output order."""
    text = resources.files(__package__).joinpath("kinetics_600_labels.txt").read_text()
    return [line for line in text.splitlines() if line]


def load_kinetics600(path: str | Path, variant: str, mode: str = "stream",
                     **overrides) -> tuple[MoViNet, ModelInfo]:
    """An official Kinetics-600 MoViNet from its TF checkpoint (or ``.npz``) and the labels."""
    from .convert import load_tf_weights

    model = MoViNet(MoViNetConfig.create(variant, mode, num_classes=600, **overrides))
    load_tf_weights(model, path)
    info = model_info(model, kinetics600_labels(), source=f"kinetics600:{path}")
    return model.eval(), info


def _num_classes(model: nn.Module) -> int:
    if hasattr(model, "num_classes"):
        return int(model.num_classes)
    raise ValueError(f"{type(model).__name__} does not say how many classes it predicts")
