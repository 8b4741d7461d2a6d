"""MoViNet A0-A5 in PyTorch: configs, layers, the network, checkpoints, TF weight conversion."""

from .checkpoint import (
    ModelInfo,
    kinetics600_labels,
    load_kinetics600,
    load_model,
    model_info,
    save_model,
)
from .configs import VARIANTS, MoViNetConfig, VariantSpec
from .convert import WeightConversionError, load_tf_weights
from .frame2d import Frame2D, Frame2DConfig, create_frame2d, frame2d_info
from .movinet import MoViNet, State, create_model

__all__ = [
    "VARIANTS", "Frame2D", "Frame2DConfig", "ModelInfo", "MoViNet", "MoViNetConfig", "State",
    "VariantSpec", "WeightConversionError", "create_frame2d", "create_model", "frame2d_info",
    "kinetics600_labels", "load_kinetics600", "load_model", "load_tf_weights", "model_info",
    "save_model",
]
