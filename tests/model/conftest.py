from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from movinet_ray.model import MoViNet
from tests.conftest import tf_fixture_dir

FIXTURES = ("a0_base", "a0_stream", "a2_stream", "a3_stream")
STREAM_FIXTURES = tuple(f for f in FIXTURES if f.endswith("_stream"))


def randomize_(model: MoViNet, seed: int = 0) -> MoViNet:
    """Make every part of a random-init model matter, with activations of order 1.

    Fresh MoViNets have ReZero = 0 (each block is the identity), which would make stream==clip
    tests vacuous. ReZero/PE scalars become U(0.2, 0.5), BN affine parameters random, and BN
    statistics are calibrated on a random 8-frame clip (as the official fixtures do), so even
    A5's 59 residual layers keep activations of order 10 instead of amplifying float32 rounding
    into chaos.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 0:  # rezero, pos_scale
                p.copy_(torch.rand((), generator=g) * 0.3 + 0.2)
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in bns:
            m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.8 + 0.6)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.momentum = 1.0  # running stats := this batch's stats
        model.train()
        # 8 frames: every 5-tap causal window fills, as in any real clip.
        model(torch.rand(2, 3, 8, 48, 48, generator=g))
        for m in bns:  # no perturbation after calibration: it compounds over ~240 BNs in A5
            m.momentum = model.cfg.bn_momentum
    return model.eval()


@pytest.fixture(autouse=True)
def _seed_torch():
    """create_model draws its init from the global RNG: make every test deterministic."""
    torch.manual_seed(0)


class TFFixture:
    def __init__(self, name: str):
        self.name = name
        self.dir = tf_fixture_dir(name)
        self.meta = json.loads((self.dir / "meta.json").read_text())
        with np.load(self.dir / "io.npz") as io:
            self.io = {k: io[k] for k in io.files}

    @property
    def clip(self) -> torch.Tensor:
        """The fixture input as ``[B, 3, T, H, W]``."""
        return torch.from_numpy(self.io["clip"]).permute(0, 4, 1, 2, 3).contiguous()


@pytest.fixture(params=FIXTURES)
def tf_fixture(request) -> TFFixture:
    return TFFixture(request.param)


@pytest.fixture(params=STREAM_FIXTURES)
def tf_stream_fixture(request) -> TFFixture:
    return TFFixture(request.param)
