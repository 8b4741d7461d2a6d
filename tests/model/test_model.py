"""MoViNet properties that hold for any weights: stream == clip, batched state, options."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from movinet_ray.model import VARIANTS, MoViNetConfig, create_model
from movinet_ray.model.layers import HardSigmoidKeras, HardSigmoidTF, same_padding

from .conftest import randomize_

TOL = 1e-4

# Trainable parameters of the official models, computed from BLOCK_SPECS independently of this
# code (shared/docs/movinet-spec.md section 3.1), in millions, rounded as published there.
PUBLISHED_PARAMS_M = {
    "base": {"a0": 3.11, "a1": 4.69, "a2": 5.25, "a3": 7.40, "a4": 11.35, "a5": 18.65},
    "stream": {"a0": 3.75, "a1": 6.45, "a2": 7.33, "a3": 10.99, "a4": 18.14, "a5": 31.50},
}


@pytest.mark.parametrize("mode", ["base", "stream"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parameter_count(variant, mode):
    model = create_model(variant, mode)
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 2) == PUBLISHED_PARAMS_M[mode][variant]


def assert_state_close(ours, ref, name):
    """States are activations: compare relative to the tensor's own scale."""
    scale = max(1.0, ref.abs().max().item()) if ref.is_floating_point() else 1.0
    torch.testing.assert_close(ours, ref, atol=TOL * scale, rtol=0, msg=name)


def _video(b, t, h, w, seed=0):
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_stream_equals_clip_every_variant(variant):
    """Frame by frame, and in uneven chunks, a stream model reproduces the whole-clip logits."""
    model = randomize_(create_model(variant, "stream", num_classes=10), seed=1)
    video = _video(2, 6, 48, 40)
    with torch.no_grad():
        whole, whole_state = model(video)
        state = model.init_state(2, 48, 40)
        for i in range(6):
            per_frame, state = model(video[:, :, i:i + 1], state)
        state2 = None
        for lo, hi in ((0, 1), (1, 4), (4, 6)):
            chunked, state2 = model(video[:, :, lo:hi], state2)
        forgot, _ = model(video[:, :, 4:6])  # negative control: the state matters
    assert whole.abs().max() > 1e-2
    assert (forgot - whole).abs().max() > 100 * TOL
    torch.testing.assert_close(per_frame, whole, atol=TOL, rtol=0)
    torch.testing.assert_close(chunked, whole, atol=TOL, rtol=0)
    for name in whole_state:
        assert_state_close(state[name], whole_state[name], name)


def test_batched_streams_at_different_positions():
    """Videos of different lengths share one batch; a slot restarts with reset_state."""
    model = randomize_(create_model("a0", "stream", num_classes=7), seed=2)
    videos = [_video(1, n, 40, 40, seed=n)[0] for n in (7, 4, 5, 3)]
    with torch.no_grad():
        expected = [model(v[None])[0][0] for v in videos]
    queues = [[0, 2], [1, 3], []]  # slot -> videos it plays in turn; slot 2 idles on zeros
    position = [0, 0, 0]
    current = [q.pop(0) if q else None for q in queues]
    state = model.init_state(3, 40, 40)
    results = {}
    with torch.no_grad():
        while any(c is not None for c in current):
            frames = torch.zeros(3, 3, 1, 40, 40)
            for slot, vid in enumerate(current):
                if vid is not None:
                    frames[slot, :, 0] = videos[vid][:, position[slot]]
            logits, state = model(frames, state)
            ended = torch.zeros(3, dtype=torch.bool)
            for slot, vid in enumerate(current):
                if vid is None:
                    continue
                position[slot] += 1
                if position[slot] == videos[vid].shape[1]:
                    results[vid] = logits[slot]
                    ended[slot] = True
                    current[slot] = queues[slot].pop(0) if queues[slot] else None
                    position[slot] = 0
            state = model.reset_state(state, ended)
    assert sorted(results) == [0, 1, 2, 3]
    for vid, logits in results.items():
        torch.testing.assert_close(logits, expected[vid], atol=TOL, rtol=0)


def test_reset_state_zeroes_only_masked_rows():
    model = randomize_(create_model("a0", "stream"))
    with torch.no_grad():
        _, state = model(_video(3, 3, 32, 32))
    reset = model.reset_state(state, torch.tensor([False, True, False]))
    assert reset["state_frame_count"].tolist() == [3, 0, 3]
    for name, value in reset.items():
        assert torch.count_nonzero(value[1]) == 0, name
        torch.testing.assert_close(value[0], state[name][0])
        torch.testing.assert_close(value[2], state[name][2])


def test_state_survives_save_load_and_another_process(tmp_path):
    """Half a clip here, the other half in a fresh Python process, from the saved state."""
    model = randomize_(create_model("a0", "stream", num_classes=5), seed=3)
    video = _video(1, 6, 40, 40)
    with torch.no_grad():
        whole, _ = model(video)
        _, state = model(video[:, :, :3])
    torch.save({"weights": model.state_dict(), "state": state, "video": video},
               tmp_path / "half.pt")
    script = textwrap.dedent(f"""
        import torch
        from movinet_ray.model import create_model
        blob = torch.load({str(tmp_path / 'half.pt')!r})
        model = create_model("a0", "stream", num_classes=5).eval()
        model.load_state_dict(blob["weights"])
        with torch.no_grad():
            logits, _ = model(blob["video"][:, :, 3:], blob["state"])
        torch.save(logits, {str(tmp_path / 'out.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), whole, atol=TOL, rtol=0)


@pytest.mark.parametrize("overrides", [
    dict(conv_type="3d"),                       # 3D causal convs, buffer before the stride
    dict(conv_type="3d_2plus1d"),
    dict(se_type="2d"),
    dict(se_type="3d", use_positional_encoding=True),
    dict(se_type="none", activation="relu6"),  # the quantization-friendly variant
    dict(activation="swish", gating_activation="hard_sigmoid_keras"),
])
def test_stream_equals_clip_for_options(overrides):
    model = randomize_(create_model("a1", "stream", num_classes=4, **overrides), seed=4)
    video = _video(2, 5, 36, 44)
    with torch.no_grad():
        whole, _ = model(video)
        state = None
        for i in range(5):
            last, state = model(video[:, :, i:i + 1], state)
    torch.testing.assert_close(last, whole, atol=TOL, rtol=0)


def test_causal_off_is_not_streamable_and_uses_future_frames():
    """A base model sees the whole clip: changing a late frame changes early features."""
    model = randomize_(create_model("a0", "base", num_classes=3))
    video = _video(1, 6, 32, 32)
    changed = video.clone()
    changed[:, :, -1] = 0
    with torch.no_grad():
        a, state = model(video)
        b, _ = model(changed)
    assert state == {}
    assert (a - b).abs().max() > 1e-4
    stream = randomize_(create_model("a0", "stream", causal=False, num_classes=3))
    assert stream.init_state(1, 32, 32) == {}


def test_fused_batchnorm_gives_same_outputs():
    model = randomize_(create_model("a0", "stream", num_classes=6), seed=5)
    for overrides in ({}, {"conv_type": "3d"}):
        model = randomize_(create_model("a0", "stream", num_classes=6, **overrides), seed=5)
        video = _video(2, 4, 40, 40)
        with torch.no_grad():
            ref, ref_state = model(video)
            model.fuse_bn_()
            out, out_state = model(video)
        torch.testing.assert_close(out, ref, atol=TOL, rtol=0)
        for name in ref_state:
            assert_state_close(out_state[name], ref_state[name], name)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        with pytest.raises(RuntimeError, match="fused"):
            model.train()


def test_bad_inputs_are_clear_errors():
    model = create_model("a0", "stream")
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        model(torch.rand(1, 8, 3, 32, 32))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 2, 32, 32, dtype=torch.uint8))
    state = model.init_state(2, 32, 32)
    with pytest.raises(ValueError, match="expected .*init_state"):
        model(torch.rand(1, 3, 1, 32, 32), state)  # batch 1 vs a state for 2
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(2, 3, 1, 64, 64), state)  # another resolution
    with pytest.raises(ValueError, match="does not belong"):
        model(torch.rand(2, 3, 1, 32, 32), {"x": torch.zeros(2)})
    with pytest.raises(ValueError, match="unknown MoViNet variant"):
        create_model("a9")
    with pytest.raises(TypeError, match="unknown MoViNet option"):
        create_model("a0", colour="blue")
    with pytest.raises(ValueError, match="conv_type"):
        create_model("a0", conv_type="4d")


def test_mode_defaults_follow_the_official_models():
    base = MoViNetConfig.create("a3", "base")
    stream = MoViNetConfig.create("a3", "stream")
    assert (base.causal, base.conv_type, base.se_type, base.activation, base.gating_activation,
            base.use_positional_encoding) == (False, "3d", "3d", "swish", "sigmoid", False)
    assert (stream.causal, stream.conv_type, stream.se_type, stream.activation,
            stream.gating_activation, stream.use_positional_encoding) == (
        True, "2plus1d", "2plus3d", "hard_swish", "hard_sigmoid", True)
    assert not MoViNetConfig.create("a2", "stream").use_positional_encoding
    assert MoViNetConfig.create("a0", "stream").dropout == 0.2
    assert MoViNetConfig.create("a2", "stream").dropout == 0.5


def test_three_hard_sigmoids():
    x = torch.tensor([-4.0, -1.0, 0.0, 1.0, 2.5, 4.0])
    tf_garden = HardSigmoidTF()(x)
    keras2 = HardSigmoidKeras()(x)
    torch_exact = torch.nn.Hardsigmoid()(x)
    torch.testing.assert_close(tf_garden, torch.tensor([0, 2, 3, 4, 5.5, 6]) * 0.16667)
    torch.testing.assert_close(keras2, torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0, 1.0]))
    torch.testing.assert_close(torch_exact, torch.tensor([0, 2, 3, 4, 5.5, 6]) / 6)
    assert (tf_garden - torch_exact).abs().max() > 0  # 0.16667 is not 1/6


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (172, 3, 2, (0, 1)), (86, 5, 2, (1, 2)), (43, 3, 2, (1, 1)), (22, 3, 2, (0, 1)),
    (11, 3, 2, (1, 1)), (145, 5, 2, (2, 2)), (22, 3, 1, (1, 1)),
])
def test_tf_same_padding_table(size, kernel, stride, expected):
    """The stride-2 paddings of the spec's resolution table (extra pixel bottom/right)."""
    assert same_padding(size, kernel, stride) == expected


def test_reset_classifier_keeps_backbone():
    model = randomize_(create_model("a0", "stream"))
    video = _video(1, 2, 32, 32)
    with torch.no_grad():
        before, _ = model.forward_features(video)
        model.reset_classifier(3)
        after, _ = model.forward_features(video)
        logits, _ = model(video)
    torch.testing.assert_close(before, after)
    assert logits.shape == (1, 3) and model.num_classes == 3
