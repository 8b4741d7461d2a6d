"""The ``movinet`` command: one sub-command per job.

Each job module exposes ``register(subparsers)``, which adds its sub-command(s) and sets
``func`` on the parser; this file only wires them together (so jobs import lazily and a
broken optional part never hides the others' help).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that add sub-commands, in the order `movinet --help` lists them.
COMMAND_MODULES = (
    "movinet_ray.model.cli",
    "movinet_ray.model.quant_cli",
    "movinet_ray.data.cli",
    "movinet_ray.train.cli",
    "movinet_ray.label.cli",
    "movinet_ray.serve.run",
    "movinet_ray.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movinet",
        description="MoViNet video classification on Ray: train, label, serve, quantize.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
