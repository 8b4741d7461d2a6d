"""Training job entrypoint for ``ray job submit`` (the same function as ``movinet train``).

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/train.py --config cluster/train_a0_synthetic.yaml [key=value ...]

Connects to the cluster the job runs on; workers need the MLflow tracking server
(``tracking.tracking_uri``) and ``run.storage_path`` to be reachable from every node.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# The repository root, so `python jobs/train.py` imports the working dir's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from movinet_ray.config import load_config  # noqa: E402
from movinet_ray.train import TrainConfig  # noqa: E402
from movinet_ray.train.job import main  # noqa: E402  (log the resolved config, train)

__all__ = ["main"]


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="training YAML (see docs/train.md)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    return load_config(TrainConfig, args.config, args.overrides)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = main(parse_args())
    print(f"model: {result.model_uri} (best val top-1 {result.best_val_top1:.3f})")
