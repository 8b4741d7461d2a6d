"""Distributed fine-tuning on Ray Train, tracked in MLflow. See ``docs/train.md``.

```python
from movinet_ray.config import load_config
from movinet_ray.train import TrainConfig, main
result = main(load_config(TrainConfig, "cluster/train_a0_synthetic.yaml", ["train.steps=50"]))
result.model_uri   # models:/movinet-a0-stream@candidate
```

Names load lazily: importing this package (e.g. for ``movinet --help``) does not import Ray.
"""

from __future__ import annotations

import importlib

from .config import TrainConfig

_LAZY = {"TrainResult": "job", "main": "job", "train": "job", "demo_train": "demo"}

__all__ = ["TrainConfig", "TrainResult", "demo_train", "main", "train"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
