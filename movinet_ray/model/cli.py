"""``movinet variants``: the model zoo at a glance."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("variants", help="list MoViNet variants and their native inputs")
    p.set_defaults(func=_variants)


def _variants(args) -> int:
    from .configs import VARIANTS

    print(f"{'variant':8} {'resolution':>10} {'fps':>5} {'frames':>7} {'layers':>7}")
    for name, spec in VARIANTS.items():
        print(f"{name:8} {spec.resolution:>10} {spec.fps:>5g} {spec.eval_frames:>7} "
              f"{spec.num_layers:>7}")
    return 0
