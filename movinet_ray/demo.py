"""``movinet demo``: the project end to end on an embedded default."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on generated data")
    p.add_argument("--out", default="demo_out", help="working folder")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from .model import create_model

    torch.manual_seed(0)
    model = create_model("a0", "stream").eval()
    res = 172
    video = torch.rand(1, 3, 20, res, res)
    start = time.perf_counter()
    with torch.inference_mode():
        whole, _ = model(video)
        state = model.init_state(1, res, res)
        for t in range(video.shape[2]):
            logits, state = model(video[:, :, t:t + 1], state)
    seconds = time.perf_counter() - start
    diff = (logits - whole).abs().max().item()
    print(f"A0-stream, {video.shape[2]} frames at {res}x{res}: frame by frame == whole clip "
          f"(max |diff| {diff:.2e}); {seconds:.2f} s for both passes")
    return 0 if diff < 1e-4 else 1
