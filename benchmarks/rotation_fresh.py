"""Is the rotation direction learnable from scratch at all? Fresh clips, one process, no Ray.

`rotation_probe.py` trains on the 400 rotating videos of the dataset; a model that stays at
chance there might only lack data. This script removes that doubt: every training clip is
rendered fresh by the synthetic generator (`render_frames`, no encoding, never repeated), in
the demo's clean format (square, no distractors, noise 2), and the classes are the rotation
pair beside the left/right pair as a control that needs the same kind of feature (a
direction of motion) without the rotation's "which way round" conjunction:

    python benchmarks/rotation_fresh.py                     # A0-stream, 64 px, 8 frames at 2 fps
    python benchmarks/rotation_fresh.py --model c3d         # a plain 3D CNN
    python benchmarks/rotation_fresh.py --model a0-base     # A0 with centred (non-causal) convs
    python benchmarks/rotation_fresh.py --model a1-stream   # A1: 16 channels where A0 has 8
    python benchmarks/rotation_fresh.py --model c3d-late    # the 3D CNN, first 2 layers 1x3x3
    python benchmarks/rotation_fresh.py --model c3d-dw      # 1x3x3 stem, then depthwise-separable
    python benchmarks/rotation_fresh.py --model c3d-ib      # c3d-dw's layers as residual blocks
    python benchmarks/rotation_fresh.py --model c3d-se      # c3d-ib with squeeze-excitation
    python benchmarks/rotation_fresh.py --model c3d-hs      # c3d-se with hard-swish, as MoViNet
    python benchmarks/rotation_fresh.py --model c3d-a0front # c3d-hs with A0's first two layers
    python benchmarks/rotation_fresh.py --model c3d-a0front-narrow  # ... and A0's 32 channels
    python benchmarks/rotation_fresh.py --set causal=false  # one MoViNetConfig option changed
    python benchmarks/rotation_fresh.py --head swap         # A0 with the 3D CNNs' linear head
    python benchmarks/rotation_fresh.py --stages 3          # A0's first three block stages only
    python benchmarks/rotation_fresh.py --init torch        # A0 initialised as the 3D CNNs are
    python benchmarks/rotation_fresh.py --deep-rezero 0     # A0's stages 3-5 start as shortcuts
    python benchmarks/rotation_fresh.py --aux-stage 2       # A0 + a training-only head after stage 2
    python benchmarks/rotation_fresh.py --aux-stage 2 --main-from 1501  # grown: stages 1-2 first

``--model c3d`` is a control outside MoViNet: four dense 3x3x3 convolutions with BatchNorm,
no depthwise or (2+1)D factorisation, so a result that holds for both is about the task,
not about A0. Validation is 400 fresh clips (fixed seed); the per-class recall shows
whether each pair's direction was learned. The defaults are where the control learns in one
process: 2 fps (an object moves 3-6 px a frame; a rotation turns 45-90 degrees, which the
clock hand shows unambiguously) and 32 clips a step; at 5 fps with 16 clips neither model
learned even left/right (A0 in 3000 steps, the plain 3D CNN in 1500), the slow start
docs/train.md describes; with 32 clips A0 learns it there by step 750. Writes
benchmarks/results/rotation_fresh_<model>_<resolution>px_<fps>fps_<steps>[_radius<min>-<max>]
[_<conv-type>][_head-swap][_stages<n>][_aux<n>-<weight>][_main-from<step>][_init-torch][_deep-rezero<s>][_<optimizer>][_lr<lr>][_batch<n>][_wd<decay>][_<key>-<value>...]
[_seed<n>].json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, write_results  # noqa: E402

CLASSES = ("move_left", "move_right", "rotate_cw", "rotate_ccw")


def render_batch(n: int, rng: np.random.Generator, size: int, fps: int, frames: int):
    """``n`` fresh clips ``[n, 3, T, size, size]`` in [0, 1] with uniformly drawn labels."""
    from movinet_ray.data.synthetic import render_frames, sample_spec

    clips, labels = [], []
    for _ in range(n):
        label = int(rng.integers(len(CLASSES)))
        spec = sample_spec(CLASSES[label], rng, size=(size, size), fps=fps,
                           seconds=frames / fps, distractors=0, noise=2)
        video = np.stack(list(render_frames(spec))[:frames])  # [T, H, W, 3]
        clips.append(torch.from_numpy(video).permute(3, 0, 1, 2))
        labels.append(label)
    return torch.stack(clips).float() / 255, torch.tensor(labels)


class DepthwiseConv3d(nn.Module):
    """A depthwise 3D conv (centred padding) as one depthwise 2D conv per temporal tap: the
    same result as ``nn.Conv3d(groups=channels)``, whose CPU kernel is ~50x slower."""

    def __init__(self, channels: int, kernel, stride):
        super().__init__()
        kt, kh, kw = (kernel,) * 3 if isinstance(kernel, int) else kernel
        self.stride = (1, 1) if stride == 1 else tuple(stride[1:])
        self.weight = nn.Parameter(torch.empty(channels, 1, kt, kh, kw))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv3d's default init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        kt, kh, kw = self.weight.shape[2:]
        x = F.pad(x, (0, 0, 0, 0, kt // 2, kt // 2))
        out = 0
        for k in range(kt):
            frames = x[:, :, k:k + t].transpose(1, 2).reshape(b * t, c, h, w)
            out = out + F.conv2d(frames, self.weight[:, :, k], stride=self.stride,
                                 padding=(kh // 2, kw // 2), groups=c)
        return out.reshape(b, t, c, *out.shape[-2:]).transpose(1, 2)


class SqueezeExcitation3d(nn.Module):
    """MoViNet-base's squeeze-excitation: the channels' mean over the whole clip, through a
    bottleneck (a quarter of the channels, ``act``), gates every channel with a sigmoid."""

    def __init__(self, channels: int, act=nn.ReLU):
        super().__init__()
        hidden = max(8, channels // 4)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Conv3d(channels, hidden, 1),
                                  act(), nn.Conv3d(hidden, channels, 1),
                                  nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    """MoViNet's block in miniature: a 1x1x1 conv + BN + ``act``, a depthwise 3x3x3 conv + BN
    + ``act`` (then squeeze-excitation if ``se``), then a *linear* 1x1x1 projection + BN, added to
    the input times a ReZero scale that starts at 1 (the demo recipe's ``rezero_init``).
    The expansion width is ``cout`` unless ``expand`` is given.
    Where the shape changes, the input reaches the sum through an average pool and a 1x1x1
    conv + BN, as in MoViNet."""

    def __init__(self, cin: int, cout: int, stride, se: bool = False, act=nn.ReLU,
                 expand: int | None = None, kernel=3):
        super().__init__()
        expand = expand or cout
        self.branch = nn.Sequential(
            nn.Conv3d(cin, expand, 1, bias=False), nn.BatchNorm3d(expand), act(),
            DepthwiseConv3d(expand, kernel, stride), nn.BatchNorm3d(expand), act(),
            *([SqueezeExcitation3d(expand, act)] if se else []),
            nn.Conv3d(expand, cout, 1, bias=False), nn.BatchNorm3d(cout))
        skip = [] if stride == 1 else [nn.AvgPool3d((1, 2, 2))]
        if cin != cout:
            skip += [nn.Conv3d(cin, cout, 1, bias=False), nn.BatchNorm3d(cout)]
        self.skip = nn.Sequential(*skip)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.scale * self.branch(x)


class A0Head(nn.Module):
    """MoViNet-A0's head on any features: a 1x1x1 projection to 480 channels + BN + ``act``,
    the global average pool, then the package's classifier (dense 2048 + swish, the class
    layer) with its from-scratch init."""

    def __init__(self, cin: int, num_classes: int, act=nn.Hardswish):
        from movinet_ray.model.configs import CLASSIFIER_HIDDEN
        from movinet_ray.model.layers import ClassifierHead, init_weights

        super().__init__()
        self.project = nn.Sequential(nn.Conv3d(cin, 480, 1, bias=False), nn.BatchNorm3d(480),
                                     act())
        self.classifier = ClassifierHead(480, CLASSIFIER_HIDDEN, num_classes, "swish", 0.0)
        init_weights(self.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.project(x).mean((2, 3, 4)))


class LinearClassifier(nn.Module):
    """A MoViNet classifier replaced by one linear layer on the pooled features (the 3D CNNs'
    head), called as :class:`movinet_ray.model.layers.ClassifierHead` is."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, pooled: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return pooled if pre_logits else self.fc(pooled)


def torch_default_init_(model: nn.Module) -> None:
    """PyTorch's default initialisation for every convolution and dense layer of a MoViNet
    (its depthwise temporal kernels are bare parameters: the same rule, by hand)."""
    from movinet_ray.model.layers import _DepthwiseTemporalBN

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()
        elif isinstance(m, _DepthwiseTemporalBN):
            nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5)


class C3D(nn.Module):
    """Four dense conv + BN + ReLU layers, global average pool, linear. The first
    ``spatial_layers`` are 1x3x3 (space only), the rest 3x3x3. ``depthwise`` splits every
    layer after the first as MobileNets and MoViNets do: a 1x1x1 conv mixes channels, then a
    depthwise conv filters each channel alone in space and time (both followed by BN + ReLU).
    ``residual`` makes those layers :class:`InvertedResidual` blocks instead (with
    squeeze-excitation if ``se``). ``act`` is every activation's class (ReLU, or MoViNet's
    Hardswish). ``a0_head`` puts :class:`A0Head` where the global pool and linear layer are.
    ``a0_front`` replaces the first two layers by A0's: an 8-channel 1x3x3 stem and its first
    block (expansion 24, a 1x5x5 depthwise conv, 8 channels out), both stride 2 and space
    only, so time is first mixed on the 16x16 map (at 64 px) from 8 channels."""

    def __init__(self, num_classes: int, width: int = 24, spatial_layers: int = 0,
                 depthwise: bool = False, residual: bool = False, se: bool = False,
                 act=nn.ReLU, a0_head: bool = False, a0_front: bool = False):
        super().__init__()
        layers, cin = [], 3
        if a0_front:
            layers += [nn.Conv3d(3, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
                                 bias=False), nn.BatchNorm3d(8), act(),
                       InvertedResidual(8, 8, (1, 2, 2), se, act, expand=24, kernel=(1, 5, 5))]
            cin = 8
        for i, (cout, stride) in enumerate(((width, (1, 2, 2)), (2 * width, (1, 2, 2)),
                                            (4 * width, (1, 2, 2)), (4 * width, 1))):
            if a0_front and i < 2:
                continue
            kernel, pad = ((1, 3, 3), (0, 1, 1)) if i < spatial_layers else (3, 1)
            separable = depthwise and i > 0  # the stem stays dense, as in MobileNets
            if separable and residual:
                layers.append(InvertedResidual(cin, cout, stride, se, act))
                cin = cout
                continue
            if separable:
                layers += [nn.Conv3d(cin, cout, 1, bias=False), nn.BatchNorm3d(cout), act()]
            conv = (DepthwiseConv3d(cout, kernel, stride) if separable else
                    nn.Conv3d(cin, cout, kernel, stride=stride, padding=pad, bias=False))
            layers += [conv, nn.BatchNorm3d(cout), act()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.a0_head = A0Head(cin, num_classes, act) if a0_head else None
        self.head = None if a0_head else nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor):
        x = self.features(x)
        return (self.a0_head(x) if self.a0_head else self.head(x.mean((2, 3, 4)))), None


# The 3D CNN controls, each one step closer to A0 than the one before (from c3d-dw on).
C3D_VARIANTS = {
    "c3d": {},
    "c3d-late": dict(spatial_layers=2),  # time first mixed on the 16x16 map (at 64 px)
    "c3d-dw": dict(spatial_layers=1, depthwise=True),  # a 1x3x3 stem, depthwise-separable
    "c3d-ib": dict(spatial_layers=1, depthwise=True, residual=True),
    "c3d-se": dict(spatial_layers=1, depthwise=True, residual=True, se=True),
    "c3d-hs": dict(spatial_layers=1, depthwise=True, residual=True, se=True, act=nn.Hardswish),
    "c3d-a0front": dict(spatial_layers=1, depthwise=True, residual=True, se=True,
                        act=nn.Hardswish, a0_front=True),
    "c3d-a0front-narrow": dict(spatial_layers=1, depthwise=True, residual=True, se=True,
                               act=nn.Hardswish, a0_front=True, width=8),  # A0's 32 channels
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="a0-stream",
                   choices=("a0-stream", "a0-base", "a1-stream", "a1-base", *C3D_VARIANTS),
                   help="a MoViNet variant-mode (a1: A0's layout twice as wide early on) or a "
                        "plain 3D CNN (c3d-dw: a 1x3x3 stem, then depthwise-separable 3x3x3; "
                        "c3d-ib: those layers as residual blocks with a linear projection; "
                        "c3d-se: c3d-ib with squeeze-excitation; c3d-hs: c3d-se with hard-swish; "
                        "c3d-a0front: c3d-hs with A0's 8-channel, space-only first two layers)")
    p.add_argument("--conv-type", choices=("3d", "2plus1d"), default=None,
                   help="MoViNet's temporal convolutions: 3x3x3 depthwise (3d) or a 1x3x3 then a "
                        "3x1x1 depthwise (2plus1d); default: the mode's (base 3d, stream 2plus1d)")
    p.add_argument("--head", choices=("native", "swap"), default="native",
                   help="swap: the MoViNets get the 3D CNNs' head (one linear layer on the "
                        "pooled features) and the 3D CNNs get A0's (480 projection, 2048 dense)")
    p.add_argument("--init", choices=("native", "torch"), default="native",
                   help="torch: every MoViNet convolution and dense layer re-initialised as "
                        "PyTorch does by default (Kaiming-uniform, a=sqrt(5): weights ~2.4x "
                        "smaller than MoViNet's He-normal), as the 3D CNNs are")
    p.add_argument("--deep-rezero", type=float, default=None, metavar="SCALE",
                   help="MoViNets: the initial ReZero scale of every block after the second "
                        "stage (A0: the 56- and 104-channel stages), the recipe's 1 elsewhere")
    p.add_argument("--stages", type=int, default=None,
                   help="MoViNets: keep only the first N of the variant's five block stages "
                        "(the head follows the last kept one)")
    p.add_argument("--aux-stage", type=int, default=None,
                   help="MoViNets: deep supervision, a second A0 head on the output of block "
                        "stage N trained beside the main one (its loss times --aux-weight) and "
                        "dropped at inference; the evaluation reports the main head")
    p.add_argument("--aux-weight", type=float, default=1.0)
    p.add_argument("--main-from", type=int, default=1, metavar="STEP",
                   help="with --aux-stage: the main head's loss counts from this step on; "
                        "before it only the shallow network under the aux head trains (the "
                        "network grows)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a MoViNetConfig option for the MoViNet models, e.g. se_type=3d, "
                        "causal=true (repeatable)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--fps", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--optimizer", choices=("adamw", "rmsprop"), default="adamw",
                   help="rmsprop: the official MoViNet recipe's (rho 0.9, momentum 0.9, "
                        "epsilon 1.0; its LR 1.8 at batch 1024 is 0.056 at 32)")
    p.add_argument("--weight-decay", type=float, default=0.05,
                   help="AdamW's decoupled decay, or RMSprop's L2 term (the official 3e-5; "
                        "0.05 as L2 is far too strong)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--radius", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="the main object's radius range, a fraction of the shorter side "
                        "(default: the generator's RADIUS, 0.10 0.22)")
    args = p.parse_args()
    if args.radius:  # the generator reads this module constant each time it renders
        from movinet_ray.data import synthetic
        synthetic.RADIUS = tuple(args.radius)

    from movinet_ray.config import apply_overrides
    from movinet_ray.model import create_model

    options = apply_overrides({}, args.set)  # KEY=VALUE, values parsed as YAML scalars

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    fmt = dict(size=args.resolution, fps=args.fps, frames=args.frames)
    val_x, val_y = render_batch(400, np.random.default_rng(10_000 + args.seed), **fmt)
    if args.model in C3D_VARIANTS:
        model = C3D(len(CLASSES), **C3D_VARIANTS[args.model], a0_head=args.head == "swap")
    else:  # the demo recipe's model settings (train/demo.py, motion_config)
        recipe = dict(bn_momentum=0.1, dropout=0.0, rezero_init=1.0,
                      **({"conv_type": args.conv_type} if args.conv_type else {}))
        variant, mode = args.model.split("-")
        if args.stages:  # a shorter network, registered as a variant of its own
            from movinet_ray.model.configs import VARIANTS
            spec = VARIANTS[variant]
            variant = f"{variant}s{args.stages}"
            VARIANTS[variant] = dataclasses.replace(spec, name=variant,
                                                    stages=spec.stages[:args.stages])
        model = create_model(variant, mode, num_classes=len(CLASSES),
                             **{**recipe, **options})
        if args.head == "swap":
            model.classifier = LinearClassifier(model.num_features, len(CLASSES))
        if args.init == "torch":
            torch_default_init_(model)
        if args.deep_rezero is not None:
            with torch.no_grad():
                for stage in model.blocks[2:]:
                    for block in stage:
                        block.rezero.fill_(args.deep_rezero)
    aux = aux_endpoint = None
    if args.aux_stage:
        stage = model.blocks[args.aux_stage - 1]
        aux_endpoint = f"block{args.aux_stage - 1}_layer{len(stage) - 1}"
        aux = A0Head(model.cfg.spec.stages[args.aux_stage - 1].out, len(CLASSES))
        model.add_module("aux_head", aux)  # one optimiser, one train()/eval() switch

    def forward(x: torch.Tensor):
        """The main head's logits and, with --aux-stage, the aux head's (else None)."""
        if aux is None:
            return model(x)[0], None
        endpoints: dict[str, torch.Tensor] = {}
        pooled, _ = model.forward_features(x, endpoints=endpoints)
        return (model.forward_head(pooled),
                aux(endpoints[aux_endpoint].permute(0, 4, 1, 2, 3)))

    if args.optimizer == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=args.lr, alpha=0.9, eps=1.0,
                                  momentum=0.9, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    curve, losses, start = [], [], time.perf_counter()
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:  # 15 warm-up steps, then constant (the demo's)
            group["lr"] = args.lr * min(1.0, step / 15)
        x, y = render_batch(args.batch, rng, **fmt)
        main_logits, aux_logits = forward(x)
        if aux is None:
            loss = F.cross_entropy(main_logits, y, label_smoothing=0.1)
        else:
            loss = args.aux_weight * F.cross_entropy(aux_logits, y, label_smoothing=0.1)
            if step >= args.main_from:
                loss = loss + F.cross_entropy(main_logits, y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                preds, aux_preds = [], []
                for i in range(0, len(val_y), 50):
                    main_logits, aux_logits = forward(val_x[i:i + 50])
                    preds.append(main_logits.argmax(1))
                    if aux_logits is not None:
                        aux_preds.append(aux_logits.argmax(1))
                pred = torch.cat(preds)
            model.train()
            recall = {c: round((pred[val_y == k] == k).float().mean().item(), 3)
                      for k, c in enumerate(CLASSES)}
            if aux is not None:  # does the shallow head see the direction the main one misses?
                aux_pred = torch.cat(aux_preds)
                recall["aux_top1"] = round((aux_pred == val_y).float().mean().item(), 3)
                for k in (2, 3):  # the rotation pair
                    recall[f"aux_{CLASSES[k]}"] = round(
                        (aux_pred[val_y == k] == k).float().mean().item(), 3)
            curve.append({"step": step, "train_loss": round(statistics.mean(
                losses[-args.eval_every:]), 4), "val_top1": round(
                (pred == val_y).float().mean().item(), 3), **recall,
                "seconds": round(time.perf_counter() - start)})
            print(curve[-1], flush=True)
    print(f"\n{args.model}, {args.resolution} px, {args.frames} frames at {args.fps} fps, "
          f"batch {args.batch}, {args.optimizer} lr {args.lr:g}, fresh clips")
    print(markdown_table(curve, ["step", "train_loss", "val_top1", *CLASSES,
                                 *(["aux_top1", "aux_rotate_cw", "aux_rotate_ccw"]
                                   if aux is not None else []), "seconds"]))
    suffix = f"_radius{args.radius[0]:g}-{args.radius[1]:g}" if args.radius else ""
    suffix += f"_{args.conv_type}" if args.conv_type else ""
    suffix += "_head-swap" if args.head == "swap" else ""
    suffix += f"_stages{args.stages}" if args.stages else ""
    suffix += f"_aux{args.aux_stage}-{args.aux_weight:g}" if args.aux_stage else ""
    suffix += f"_main-from{args.main_from}" if args.aux_stage and args.main_from > 1 else ""
    suffix += "_init-torch" if args.init == "torch" else ""
    suffix += f"_deep-rezero{args.deep_rezero:g}" if args.deep_rezero is not None else ""
    suffix += f"_{args.optimizer}" if args.optimizer != "adamw" else ""
    suffix += f"_lr{args.lr:g}" if args.lr != p.get_default("lr") else ""
    suffix += f"_batch{args.batch}" if args.batch != p.get_default("batch") else ""
    suffix += (f"_wd{args.weight_decay:g}"
               if args.weight_decay != p.get_default("weight_decay") else "")
    suffix += "".join(f"_{k}-{v}" for k, v in options.items())
    suffix += f"_seed{args.seed}" if args.seed else ""
    path = write_results(f"rotation_fresh_{args.model}_{args.resolution}px_{args.fps}fps_"
                         f"{args.steps}{suffix}",
                         {"args": vars(args), "classes": CLASSES, "curve": curve})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
