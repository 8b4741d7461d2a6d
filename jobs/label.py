"""Bulk labelling job: ``python jobs/label.py --config jobs/label.yaml [key=value ...]``.

On a cluster: ``ray job submit --working-dir . -- python jobs/label.py --config
jobs/label.yaml input=s3://bucket/videos out=s3://bucket/labels model=models:/movinet@prod``.
The same job as ``movinet label``; see docs/label.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from movinet_ray.config import load_config
from movinet_ray.ray_init import init_ray
from movinet_ray.label import LabelConfig, run_label

log = logging.getLogger("jobs.label")


def main(cfg: LabelConfig) -> dict:
    """Join (or start) Ray, label ``cfg.input`` into ``cfg.out``, return the summary."""
    cfg.check_runnable()
    log.info("label config: %s", dataclasses.asdict(cfg))
    init_ray(cfg.ray_address)
    return run_label(cfg)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML with LabelConfig fields")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(main(load_config(LabelConfig, args.config, args.overrides)), indent=1))
