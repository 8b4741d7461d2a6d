"""MoViNet A0-A5 in PyTorch: configs, layers, the network, TF weight conversion."""

from .configs import VARIANTS, MoViNetConfig, VariantSpec
from .movinet import MoViNet, State, create_model

__all__ = ["VARIANTS", "MoViNet", "MoViNetConfig", "State", "VariantSpec", "create_model"]
