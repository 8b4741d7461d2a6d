"""Fake quantization for QAT: the wrappers, their arithmetic and their removal."""

from __future__ import annotations

import torch
from torch import nn

from movinet_ray.config import ConfigError, load_config
from movinet_ray.model.layers import ConvBN
from movinet_ray.model.quantize import (FakeQuantize, QATConvBN, QATLinear,
                                        create_quantizable_model, fake_quantize_weight,
                                        prepare_qat, strip_qat)
from movinet_ray.model.quant_cli import load_job
from tests.model.conftest import randomize_

from .conftest import JOB_YAML


def test_fake_quantize_is_uint8_affine_with_straight_through_gradient():
    fq = FakeQuantize().train()
    x = torch.linspace(-1.0, 3.0, 1000, requires_grad=True)
    y = fq(x)
    assert fq.min_val.item() == -1.0 and fq.max_val.item() == 3.0
    scale = 4.0 / 255
    assert len(torch.unique(y.detach())) <= 256
    assert (y - x).abs().max().item() <= scale / 2 + 1e-6
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # inside the range: identity gradient
    fq.eval()
    assert abs(fq(torch.tensor([10.0])).item() - 3.0) <= scale  # frozen range: clipped


def test_weight_fake_quant_is_per_channel_symmetric():
    w = torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 0.1, 1.0, 10.0]).view(4, 1, 1, 1)
    q = fake_quantize_weight(w)
    for c in range(4):
        step = w[c].abs().max() / 127
        assert (q[c] - w[c]).abs().max() <= step / 2 + 1e-6 * step
        assert len(torch.unique(torch.round(q[c] / step))) <= 255


def test_prepare_and_strip_qat_roundtrip():
    model = randomize_(create_quantizable_model("a0", num_classes=4))
    convs = sum(isinstance(m, ConvBN) for m in model.modules())
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    keys = set(model.state_dict())
    video = torch.rand(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref, _ = model(video)
    prepare_qat(model)
    assert sum(isinstance(m, QATConvBN) for m in model.modules()) == convs
    assert sum(isinstance(m, QATLinear) for m in model.modules()) == linears
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        model(video)  # observe ranges
        model.eval()
        fake, _ = model(video)
    assert (fake - ref).abs().max() < 0.2 * ref.abs().max()   # quantization noise, not garbage
    assert (fake - ref).abs().max() > 0                         # ... but really quantized
    strip_qat(model)
    assert set(model.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(model(video)[0], ref)


def test_shipped_job_config_loads():
    job = load_job("quantize")
    cfg = load_config(job.QuantizeConfig, JOB_YAML)
    assert cfg.variants == tuple(job.VARIANTS)
    assert cfg.calibration.clips == 256 and cfg.op_types == ("Conv", "Gemm", "MatMul")
    try:
        load_config(job.QuantizeConfig, JOB_YAML, ["calibration.nope=1"])
    except ConfigError as e:
        assert "nope" in str(e)
    else:
        raise AssertionError("unknown key accepted")
