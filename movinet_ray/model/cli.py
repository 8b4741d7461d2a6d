"""``movinet variants`` and ``movinet convert``: the model zoo and official weights."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("variants", help="list MoViNet variants and their native inputs")
    p.set_defaults(func=_variants)

    p = sub.add_parser(
        "convert", help="convert an official TF MoViNet checkpoint (Kinetics-600) to ours",
        description="Reads a TensorFlow checkpoint (folder, prefix or .index; no TensorFlow "
                    "needed) or a .npz of its variables, checks that every tensor maps, and "
                    "writes a movinet-ray checkpoint with the Kinetics-600 class names.")
    p.add_argument("--tf-checkpoint", required=True,
                   help="checkpoint folder, prefix, .index, released .tar.gz, or .npz")
    p.add_argument("--variant", required=True, choices=["a0", "a1", "a2", "a3", "a4", "a5"])
    p.add_argument("--mode", default="stream", choices=["base", "stream"])
    p.add_argument("--gating-activation", default=None,
                   help="override the SE gate (e.g. hard_sigmoid_keras for 2021 TF-Hub exports)")
    p.add_argument("--out", required=True, help="output .pt file")
    p.set_defaults(func=_convert)


def _variants(args) -> int:
    from .configs import VARIANTS

    print(f"{'variant':8} {'resolution':>10} {'fps':>5} {'frames':>7} {'layers':>7}")
    for name, spec in VARIANTS.items():
        print(f"{name:8} {spec.resolution:>10} {spec.fps:>5g} {spec.eval_frames:>7} "
              f"{spec.num_layers:>7}")
    return 0


def _convert(args) -> int:
    from .checkpoint import load_kinetics600, save_model

    overrides = {}
    if args.gating_activation:
        overrides["gating_activation"] = args.gating_activation
    model, info = load_kinetics600(args.tf_checkpoint, args.variant, args.mode, **overrides)
    save_model(args.out, model, info)
    params = sum(p.numel() for p in model.parameters())
    log.info("converted %s %s (%.2fM parameters, %d classes) -> %s", args.variant, args.mode,
             params / 1e6, info.num_classes, args.out)
    print(args.out)
    return 0
