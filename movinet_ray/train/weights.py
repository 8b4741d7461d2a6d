"""Where training starts: random weights, official Kinetics-600 weights, or an earlier model.

Resolved once on the driver (a bad ``--init`` fails before any worker starts); the workers get
the architecture config and the state dict through the object store.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..config import ConfigError
from ..model import ModelInfo, create_frame2d, create_model, load_kinetics600
from ..model.checkpoint import ARCHITECTURES
from ..model.quantize import QUANT_FRIENDLY
from .config import ModelSection

log = logging.getLogger(__name__)


def init_uri(init: str) -> str:
    """``run:<id>`` -> ``runs:/<id>/model`` (where the training job logs its model)."""
    return f"runs:/{init[len('run:'):]}/model" if init.startswith("run:") else init


def _overrides(section: ModelSection) -> dict:
    return {k: getattr(section, k) for k in ("dropout", "stochastic_depth", "bn_momentum")
            if getattr(section, k) is not None}


def _fresh(section: ModelSection, num_classes: int) -> nn.Module:
    if section.architecture == "frame2d":
        overrides = {k: v for k, v in _overrides(section).items() if k != "stochastic_depth"}
        return create_frame2d(section.variant, num_classes, **overrides)
    overrides = _overrides(section)
    if section.rezero_init is not None:  # only a fresh network's init; loaded weights win
        overrides["rezero_init"] = section.rezero_init
    if section.quantization_friendly:
        overrides.update(QUANT_FRIENDLY)
    return create_model(section.variant, section.mode, num_classes, **overrides)


def initial_model(section: ModelSection, class_names: tuple[str, ...], seed: int = 0,
                  tracking_uri: str | None = None) -> tuple[nn.Module, str]:
    """The model training starts from, and where its weights came from.

    The classifier is replaced (``reset_classifier``) when the starting weights predict other
    classes than ``class_names`` (count, names or order differ).

    Raises:
        ConfigError: the init source holds another architecture than ``section.name``.
    """
    torch.manual_seed(seed)
    init = section.init
    if init == "random":
        return _fresh(section, len(class_names)), "random"
    if init.startswith("kinetics600:"):
        if section.architecture != "movinet":
            raise ConfigError("kinetics600 weights exist for MoViNets only, not the frame "
                              "baseline")
        if section.quantization_friendly:
            raise ConfigError("kinetics600 weights have squeeze-excitation and hard-swish; "
                              "model.quantization_friendly starts from random weights or an "
                              "earlier quantization-friendly model")
        loaded, info = load_kinetics600(init[len("kinetics600:"):], section.variant,
                                        section.mode)
    else:
        from ..tracking import resolve_model

        loaded, info = resolve_model(init_uri(init), tracking_uri=tracking_uri)
        _check_same_model(section, info, init)
    if tuple(info.class_names) != tuple(class_names):
        log.info("init %s predicts %d classes, the manifest has %d (or other names): new "
                 "classifier", init, info.num_classes, len(class_names))
        loaded.reset_classifier(len(class_names))
    # Rebuild with this run's dropout / drop-path / BN options; shapes do not change.
    config = {**info.config, "num_classes": len(class_names), **_overrides(section)}
    if info.architecture == "frame2d":
        config.pop("stochastic_depth", None)
    model = ARCHITECTURES[info.architecture](config)
    model.load_state_dict(loaded.state_dict())
    return model, init


def _check_same_model(section: ModelSection, info: ModelInfo, init: str) -> None:
    got_arch = info.architecture
    got = (got_arch, info.config.get("variant"), info.config.get("mode"))
    want = (section.architecture, section.variant, section.mode)
    if got_arch == "frame2d":
        got = got[:2] + (None,)
    if got != want:
        raise ConfigError(f"model.init {init} is a {got[0]} {got[1]}"
                          f"{'-' + got[2] if got[2] else ''}, but model.name is "
                          f"{section.name!r}; continue from the same model type")
    if got_arch == "movinet":
        friendly = all(info.config.get(k) == v for k, v in QUANT_FRIENDLY.items())
        if friendly != section.quantization_friendly:
            raise ConfigError(f"model.init {init} is {'' if friendly else 'not '}"
                              "quantization-friendly (ReLU6, no SE), but "
                              f"model.quantization_friendly is {section.quantization_friendly}; "
                              "continue from the same model type")
