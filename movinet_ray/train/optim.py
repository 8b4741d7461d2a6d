"""Optimizer, learning-rate schedule and what trains (frozen backbone, backbone LR factor)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(backbone, classifier)`` parameters: the classifier is ``model.classifier`` (the
    2048-d layer and the logits) in every architecture we train."""
    head_ids = {id(p) for p in model.classifier.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return backbone, list(model.classifier.parameters())


def freeze_backbone_(model: nn.Module) -> None:
    """Stop gradients to everything but the classifier."""
    backbone, _ = split_parameters(model)
    for p in backbone:
        p.requires_grad_(False)


def set_train_mode(model: nn.Module, freeze_backbone: bool) -> None:
    """``model.train()``, except that a frozen backbone keeps its BatchNorm statistics
    (as Keras does for non-trainable layers and the official fine-tuning notebook relies on)."""
    model.train()
    if freeze_backbone:
        for name, module in model.named_children():
            if name != "classifier":
                module.eval()


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters in groups by learning-rate factor and weight decay.

    Weight decay applies to weight matrices and kernels only, not to biases, BatchNorm or
    the ReZero / positional-encoding scalars (the official L2 regulariser covers kernels).
    """
    backbone, head = split_parameters(model)
    groups = []
    for params, mult in ((backbone, cfg.model.backbone_lr_mult), (head, 1.0)):
        params = [p for p in params if p.requires_grad]
        if mult == 0 or not params:
            continue
        decay = [p for p in params if p.dim() > 1]
        no_decay = [p for p in params if p.dim() <= 1]
        for ps, wd in ((decay, cfg.optim.weight_decay), (no_decay, 0.0)):
            if ps:
                groups.append({"params": ps, "lr": cfg.optim.lr * mult, "weight_decay": wd})
    if not groups:
        raise ValueError("nothing to train: the backbone is frozen and the classifier has no "
                         "parameters, or every learning rate is 0")
    return groups


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = param_groups(model, cfg)
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr)
    if o.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=o.lr, alpha=o.rmsprop_alpha, eps=o.rmsprop_eps,
                                   momentum=o.momentum)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)


def lr_factor(step: int, warmup: int, total: int, schedule: str = "cosine") -> float:
    """Factor on the base LR for optimizer step ``step`` (0-based): linear warm-up from
    ``1/warmup`` to 1 over ``warmup`` steps, then cosine decay to 0 at ``total`` (or 1
    throughout, for ``schedule="constant"``)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    warmup, total, schedule = cfg.optim.warmup_steps, cfg.train.steps, cfg.optim.schedule
    return torch.optim.lr_scheduler.LambdaLR(optimizer,
                                             lambda s: lr_factor(s, warmup, total, schedule))
