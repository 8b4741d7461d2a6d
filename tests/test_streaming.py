"""The multi-stream engine gives every stream its own whole-clip answer."""

from __future__ import annotations

import pytest
import torch

from movinet_ray.model import create_model
from movinet_ray.streaming import EngineFull, StreamEngine
from tests.model.conftest import randomize_

TOL = 1e-4
H = W = 40


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(create_model("a0", "stream", num_classes=9), seed=11)


def _videos(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, n, H, W), generator=g, dtype=torch.uint8) for n in lengths]


def _whole(model, video_u8):
    with torch.no_grad():
        return model(video_u8[None].float() / 255.0)[0][0]


def test_refilled_slots_chunks_and_prefixes(model):
    """7 videos through 3 slots, fed in uneven chunks; refill as soon as a slot frees up."""
    lengths = [9, 3, 14, 5, 1, 7, 4]
    videos = _videos(lengths)
    chunk = 4
    engine = StreamEngine(model, capacity=3, height=H, width=W)
    queue = list(range(len(videos)))
    cursor: dict[int, int] = {}
    finals, chunk_logits = {}, {}
    while queue or engine.active:
        while queue and engine.free_slots:
            vid = queue.pop(0)
            engine.open(vid)
            cursor[vid] = 0
        for vid in list(cursor):
            if vid in engine and engine.pending_frames(vid) == 0 and cursor[vid] < lengths[vid]:
                lo = cursor[vid]
                hi = min(lo + chunk, lengths[vid])
                engine.feed(vid, videos[vid][:, lo:hi], tag=(lo, hi))
                cursor[vid] = hi
                if hi == lengths[vid]:
                    engine.close(vid)
        for res in engine.step():
            if res.chunk is not None:
                chunk_logits[(res.key, res.chunk)] = (res.logits, res.frames_seen)
            if res.finished:
                finals[res.key] = res
                del cursor[res.key]
    assert sorted(finals) == list(range(len(videos)))
    for vid, video in enumerate(videos):
        assert finals[vid].frames_seen == lengths[vid]
        torch.testing.assert_close(finals[vid].logits, _whole(model, video), atol=TOL, rtol=0)
    # Every chunk is reported once, with the logits of the prefix up to its end.
    assert len(chunk_logits) == sum(-(-n // chunk) for n in lengths)
    for (vid, (lo, hi)), (logits, seen) in chunk_logits.items():
        assert seen == hi
        torch.testing.assert_close(logits, _whole(model, videos[vid][:, :hi]), atol=TOL, rtol=0)


def test_interleaved_single_frames_like_live_sessions(model):
    """Sessions send one frame at a time at different moments; idle slots are left alone."""
    videos = _videos([6, 6, 6], seed=1)
    engine = StreamEngine(model, capacity=4, height=H, width=W)
    for key in "abc":
        engine.open(key)
    sent = {"a": 0, "b": 0, "c": 0}
    last = {}
    schedule = ["a", "b", "a", "c", "a", "b", "c", "c", "a", "b", "b", "c", "a", "b", "c", "a",
                "b", "c"]
    for n, key in enumerate(schedule):
        i = "abc".index(key)
        engine.feed(key, videos[i][:, sent[key]:sent[key] + 1])
        sent[key] += 1
        if n % 3 == 2:  # frames pile up between steps: some steps see 2 queued for one session
            for res in engine.run_until_idle():
                last[res.key] = res
    for key in "abc":
        torch.testing.assert_close(last[key].logits, _whole(model, videos["abc".index(key)]),
                                   atol=TOL, rtol=0)


def test_errors_and_slot_reuse(model):
    engine = StreamEngine(model, capacity=1, height=H, width=W)
    engine.open("x")
    with pytest.raises(EngineFull):
        engine.open("y")
    with pytest.raises(ValueError, match="40x40"):
        engine.feed("x", torch.zeros(3, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[3, T, H, W\]"):
        engine.feed("x", torch.zeros(1, H, W))
    with pytest.raises(KeyError, match="no open stream"):
        engine.feed("nope", torch.zeros(3, 1, H, W))
    engine.feed("x", _videos([3])[0])
    engine.step()
    engine.discard("x")  # client went away mid-stream
    assert engine.free_slots == 1
    video = _videos([5], seed=3)[0]
    engine.open("z")  # the reused slot starts from zero, not from x's state
    engine.feed("z", video)
    engine.close("z")
    with pytest.raises(ValueError, match="closed"):
        engine.feed("z", video)
    (result,) = engine.run_until_idle()
    assert result.finished and result.frames_seen == 5
    torch.testing.assert_close(result.logits, _whole(model, video), atol=TOL, rtol=0)


def test_empty_stream_finishes_without_logits(model):
    engine = StreamEngine(model, capacity=2, height=H, width=W)
    engine.open("empty")
    engine.close("empty")
    (result,) = engine.step()
    assert result.finished and result.logits is None and result.frames_seen == 0
    assert engine.free_slots == 2
