"""Quantized variants of a *trained* model keep its accuracy (numbers from the job run)."""

from __future__ import annotations

from .quant_helpers import CLASSES

CHANCE = 1 / len(CLASSES)
# int8 may lose at most this much top-1 against fp32 on the 48 validation clips (2 clips);
# the target is <= 2 points on real data, where 2 points is many clips.
INT8_MARGIN = 0.05


def test_tiny_model_learns_motion(trained):
    assert trained.losses[-1] < 0.5 * trained.losses[0]
    assert trained.top1 >= 0.85 > CHANCE + 0.5, trained.top1


def test_int8_ptq_and_qat_keep_accuracy(job, trained):
    rows = job.rows
    fp32 = rows["fp32"]["val_top1"]
    assert abs(fp32 - trained.top1) < 1e-3  # the job evaluated the same clips (rounded)
    for name in ("int8", "int8-qat"):
        top1 = rows[name]["val_top1"]
        assert top1 >= fp32 - INT8_MARGIN, (name, top1, fp32)
        assert top1 >= CHANCE + 0.45, (name, top1)
        assert rows[name]["precision"] == "int8" and rows[name]["runtime"] == "onnxruntime"
        assert abs(rows[name]["top1_delta_pts"] - 100 * (top1 - fp32)) < 0.01


def test_float_variants_match_fp32(job):
    rows = job.rows
    for name in ("fp16", "onnx"):
        assert rows[name]["val_top1"] == rows["fp32"]["val_top1"], name


def test_sizes(job):
    rows = job.rows
    fp32 = rows["fp32"]["size_mb"]
    assert 0.45 * fp32 < rows["fp16"]["size_mb"] < 0.55 * fp32
    assert 0.9 * fp32 < rows["onnx"]["size_mb"] < 1.1 * fp32      # BN folded, same weights
    for name in ("int8", "int8-qat"):
        assert 0.2 * fp32 < rows[name]["size_mb"] < 0.35 * fp32   # int8 weights + scales
