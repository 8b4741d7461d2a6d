"""The frame baseline: a fair 2D twin of A0 that cannot see motion, stored like any model."""

from __future__ import annotations

import torch

from movinet_ray.model import create_frame2d, create_model, frame2d_info, load_model, save_model


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_same_budget_as_a0_but_blind_to_frame_order():
    torch.manual_seed(0)
    frame = create_frame2d("a0", num_classes=4).eval()
    a0 = create_model("a0", "stream", num_classes=4)
    # A fair baseline: A0's layout without the temporal taps (2.17M vs 2.53M parameters).
    assert 0.8 < _params(frame) / _params(a0) < 1.0
    video = torch.rand(2, 3, 6, 48, 48)
    with torch.no_grad():
        logits, state = frame(video)
        shuffled, _ = frame(video[:, :, torch.randperm(6)])
        per_frame = torch.stack([frame(video[:, :, t:t + 1])[0] for t in range(6)]).mean(0)
    assert logits.shape == (2, 4) and state == {}
    # Logits are the mean of per-frame logits: frame order carries nothing.
    torch.testing.assert_close(shuffled, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(per_frame, logits, atol=1e-5, rtol=0)


def test_saves_and_loads_through_the_model_registry(tmp_path):
    torch.manual_seed(0)
    model = create_frame2d("a0", num_classes=3, dropout=0.1).eval()
    info = frame2d_info(model, ["a", "b", "c"], resolution=64, fps=5, frames=8)
    path = save_model(tmp_path / "f.pt", model, info)
    loaded, loaded_info = load_model(path)
    assert loaded_info.architecture == "frame2d" and loaded_info.class_names == ("a", "b", "c")
    assert loaded_info.config["dropout"] == 0.1 and not loaded_info.stateful
    video = torch.rand(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video)[0], model(video)[0])
    model.reset_classifier(7)
    assert model.num_classes == 7 and model(video)[0].shape == (1, 7)
