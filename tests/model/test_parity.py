"""Parity with the official TensorFlow MoViNets (tf-models-official 2.20, seeded random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from movinet_ray.model import create_model
from movinet_ray.model.convert import WeightConversionError, load_tf_weights, read_tf_variables
from movinet_ray.model.tf_checkpoint import read_checkpoint

from .conftest import TFFixture

TOL = 1e-4


def _build(fx: TFFixture):
    model = create_model(fx.meta["variant"], fx.meta["mode"]).eval()
    return load_tf_weights(model, fx.dir / "weights.npz")


def test_whole_clip_logits_and_endpoints(tf_fixture: TFFixture):
    model = _build(tf_fixture)
    endpoints: dict = {}
    with torch.no_grad():
        pooled, _ = model.forward_features(tf_fixture.clip, None, endpoints)
        logits = model.forward_head(pooled)
    np.testing.assert_allclose(logits.numpy(), tf_fixture.io["logits"], atol=TOL, rtol=0)
    names = [k.split("/", 1)[1] for k in tf_fixture.io if k.startswith("endpoint/")]
    for name in names:
        ref = tf_fixture.io[f"endpoint/{name}"]
        ours = endpoints[name].numpy().reshape(ref.shape)
        # Deep block activations reach |x| ~ 17; compare relative to their scale.
        np.testing.assert_allclose(ours, ref, atol=TOL * max(1.0, np.abs(ref).max()), rtol=0,
                                   err_msg=f"endpoint {name}")


def test_stream_frame_by_frame_matches_tf(tf_stream_fixture: TFFixture):
    tf_fixture = tf_stream_fixture
    model = _build(tf_fixture)
    clip = tf_fixture.clip
    b, _, t, h, w = clip.shape
    state = model.init_state(b, h, w)
    per_frame = []
    with torch.no_grad():
        for i in range(t):
            logits, state = model(clip[:, :, i:i + 1], state)
            per_frame.append(logits)
    per_frame = torch.stack(per_frame, dim=1).numpy()
    np.testing.assert_allclose(per_frame, tf_fixture.io["logits_per_frame"], atol=TOL, rtol=0)
    np.testing.assert_allclose(per_frame[:, -1], tf_fixture.io["logits_whole_clip"], atol=TOL,
                               rtol=0)
    # The final state equals TF's, tensor by tensor (same names and layout; pooled sums are
    # [B, C] here vs TF's [B, 1, 1, 1, C]; TF keeps one frame counter per layer, we keep one).
    for key, ref in tf_fixture.io.items():
        if not key.startswith("final_state/"):
            continue
        name = key.split("/", 1)[1]
        if name.endswith("frame_count"):
            np.testing.assert_array_equal(state["state_frame_count"].numpy(), ref)
            continue
        ours = state[name].numpy().reshape(ref.shape)
        np.testing.assert_allclose(ours, ref, atol=TOL * max(1.0, np.abs(ref).max()), rtol=0,
                                   err_msg=name)


def test_stream_two_chunks_matches_tf(tf_stream_fixture: TFFixture):
    tf_fixture = tf_stream_fixture
    model = _build(tf_fixture)
    clip = tf_fixture.clip
    half = clip.shape[2] // 2
    with torch.no_grad():
        first, state = model(clip[:, :, :half])
        second, _ = model(clip[:, :, half:], state)
    np.testing.assert_allclose(first.numpy(), tf_fixture.io["logits_two_chunks_first_half"],
                               atol=TOL, rtol=0)
    np.testing.assert_allclose(second.numpy(), tf_fixture.io["logits_whole_clip"], atol=TOL,
                               rtol=0)


def test_parameter_counts_match_official(tf_fixture: TFFixture):
    model = create_model(tf_fixture.meta["variant"], tf_fixture.meta["mode"])
    trainable = sum(p.numel() for p in model.parameters())
    with_stats = trainable + sum(b.numel() for n, b in model.named_buffers()
                                 if not n.endswith("num_batches_tracked"))
    assert trainable == tf_fixture.meta["num_trainable_params"]
    assert with_stats == tf_fixture.meta["num_model_params_incl_bn_stats"]


@pytest.mark.parametrize("name", ["a0_base", "a0_stream"])
def test_tf_checkpoint_folder_loads_bit_exact(name):
    fx = TFFixture(name)
    ckpt = fx.dir / "ckpt"
    assert ckpt.exists(), f"{name} should ship a TF checkpoint folder"
    from_ckpt = read_checkpoint(ckpt)
    with np.load(fx.dir / "weights.npz") as npz:
        assert set(from_ckpt) == set(npz.files)
        for key in npz.files:
            assert from_ckpt[key].dtype == npz[key].dtype
            np.testing.assert_array_equal(from_ckpt[key], npz[key])
    # The three spellings of a checkpoint location all load into the same model.
    for location in (ckpt, ckpt / "ckpt-1", ckpt / "ckpt-1.index"):
        model = create_model(fx.meta["variant"], fx.meta["mode"]).eval()
        load_tf_weights(model, location)
        with torch.no_grad():
            logits, _ = model(fx.clip)
        np.testing.assert_allclose(logits.numpy(), fx.io["logits"], atol=TOL, rtol=0)


def test_backbone_key_layout_loads():
    """Training checkpoints store the backbone as its own object: keys 'backbone/...'."""
    fx = TFFixture("a0_stream")
    variables = read_tf_variables(fx.dir / "weights.npz")
    prefix = "model/layer_with_weights-0/"
    renamed = {("backbone/" + k[len(prefix):] if k.startswith(prefix) else k): v
               for k, v in variables.items()}
    assert sum(k.startswith("backbone/") for k in renamed) > 300
    model = load_tf_weights(create_model("a0", "stream").eval(), renamed)
    with torch.no_grad():
        logits, _ = model(fx.clip)
    np.testing.assert_allclose(logits.numpy(), fx.io["logits"], atol=TOL, rtol=0)


def test_wrong_mode_or_variant_is_a_clear_error():
    fx = TFFixture("a0_stream")
    with pytest.raises(WeightConversionError, match="shape mismatch|do not match"):
        load_tf_weights(create_model("a0", "base"), fx.dir / "weights.npz")
    with pytest.raises(WeightConversionError, match="do not match|shape mismatch") as err:
        load_tf_weights(create_model("a1", "stream"), fx.dir / "weights.npz")
    assert "layer_with_weights" in str(err.value) or "blocks." in str(err.value)


def test_unused_variable_is_reported():
    fx = TFFixture("a0_base")
    variables = read_tf_variables(fx.dir / "weights.npz")
    variables["model/layer_with_weights-0/layer_with_weights-3/_extra/kernel"] = np.zeros(3)
    with pytest.raises(WeightConversionError, match="_extra/kernel"):
        load_tf_weights(create_model("a0", "base"), variables)
    del variables["model/layer_with_weights-0/layer_with_weights-3/_extra/kernel"]
    missing = {k: v for k, v in variables.items() if "rezero" not in k}
    with pytest.raises(WeightConversionError, match="rezero"):
        load_tf_weights(create_model("a0", "base"), missing)


def test_released_archive_loads(tmp_path):
    """The official weights ship as movinet_<variant>_<mode>.tar.gz around a checkpoint folder."""
    import tarfile

    fx = TFFixture("a0_base")
    archive = tmp_path / "movinet_a0_base.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fx.dir / "ckpt", arcname="movinet_a0_base")
    model = load_tf_weights(create_model("a0", "base").eval(), archive)
    with torch.no_grad():
        logits, _ = model(fx.clip)
    np.testing.assert_allclose(logits.numpy(), fx.io["logits"], atol=TOL, rtol=0)
