"""`movinet export`: ONNX and torch.export stream steps equal the eager model."""

from __future__ import annotations

import json

import torch

from movinet_ray import cli
from movinet_ray.model import model_info, save_model
from movinet_ray.model.export import StreamStep
from movinet_ray.model.quant_cli import PT2_INFO
from movinet_ray.model.quantize import create_quantizable_model
from movinet_ray.model.runtime import OnnxStreamModel
from tests.model.conftest import randomize_

RES = 32
TOL = 1e-4


def _checkpoint(tmp_path):
    model = randomize_(create_quantizable_model("a0", num_classes=5), seed=3)
    info = model_info(model, [f"c{i}" for i in range(5)], resolution=RES, fps=5, frames=8)
    return model, save_model(tmp_path / "m.pt", model, info)


def test_export_onnx_streams_like_eager(tmp_path):
    model, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    assert cli.main(["export", "--model", str(ckpt), "--out", str(out)]) == 0
    onnx = OnnxStreamModel(out)
    assert onnx.info.class_names == tuple(f"c{i}" for i in range(5))
    assert onnx.info.extra["precision"] == "fp32" and onnx.frame_size == (RES, RES)
    video = torch.rand(3, 3, 5, RES, RES)  # batch 3: the export was traced with batch 2
    state_o = onnx.init_state(3, RES, RES)
    state_e = model.init_state(3, RES, RES)
    with torch.inference_mode():
        for t in range(video.shape[2]):  # frame by frame, threading each runtime's own state
            frame = video[:, :, t:t + 1]
            lo, state_o = onnx(frame, state_o)
            le, state_e = model(frame, state_e)
            torch.testing.assert_close(lo, le, atol=TOL, rtol=0)
        for name, value in state_e.items():
            torch.testing.assert_close(state_o[name].to(value.dtype), value, atol=TOL, rtol=0)
        whole, _ = model(video)
    torch.testing.assert_close(onnx(video)[0], whole, atol=TOL, rtol=0)


def test_export_pt2_streams_like_eager(tmp_path):
    model, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "m.pt2"
    assert cli.main(["export", "--model", str(ckpt), "--format", "pt2", "--out", str(out)]) == 0
    extra = {PT2_INFO: ""}
    program = torch.export.load(str(out), extra_files=extra)
    meta = json.loads(extra[PT2_INFO])
    assert meta["resolution"] == RES and meta["extra"]["runtime"] == "torch.export"
    names = meta["extra"]["state_names"]
    step = program.module()
    video = torch.rand(3, 3, 3, RES, RES)
    state = model.init_state(3, RES, RES)
    values = [state[n] for n in names]
    with torch.inference_mode():
        for t in range(video.shape[2]):
            out_p = step(video[:, :, t:t + 1], *values)
            out_e = StreamStep(model, RES, RES)(video[:, :, t:t + 1], *values)
            torch.testing.assert_close(out_p[0], out_e[0], atol=TOL, rtol=0)
            values = list(out_p[1:])
