"""Live sessions over WebSocket: exact per-frame answers, batching across sessions, bad input
isolated to its session, session limits and idle timeouts."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
import torch

from .serve_helpers import (
    CLASSES,
    TOL,
    Session,
    encode,
    frames_rgb,
    scores,
    stream_probs,
)

pytestmark = pytest.mark.slow
K = len(CLASSES)


async def _stream(url: str, frames: np.ndarray, fmt: str, delay: float = 0.0, every: int = 1,
                  burst: bool = False) -> tuple[list[dict], dict]:
    """Send ``frames`` in one session, each after the previous answer or (``burst``) all at
    once; returns (predictions, end message)."""
    await asyncio.sleep(delay)
    async with Session(url) as s:
        height, width = frames.shape[1:3]
        ready = await s.start(format=fmt, width=width, height=height, top_k=K, every=every)
        assert ready["type"] == "ready" and ready["every"] == every and ready["top_k"] == K
        preds = []
        for i, frame in enumerate(frames):
            await s.ws.send(encode(frame, fmt))
            if (i + 1) % every == 0 and not burst:
                preds.append(await s.recv())
        await s.ws.send(json.dumps({"type": "stop"}))
        if burst:
            preds = [await s.recv() for _ in range(len(frames) // every)]
        end = await s.recv()
        assert await s.closed() == (1000, "stop")
    return preds, end


def test_session_matches_offline_every_frame_and_every_n(ws_url, ref_model):
    frames = frames_rgb(7, seed=3)
    expected = stream_probs(ref_model, frames)
    assert (expected[1:] - expected[:-1]).abs().max() > 0.01  # answers change frame to frame
    preds, end = asyncio.run(_stream(f"{ws_url}/v1/stream", frames, "rgb"))
    assert [p["frame"] for p in preds] == list(range(7))
    assert [p["frames"] for p in preds] == list(range(1, 8))
    for p, exp in zip(preds, expected):
        assert p["type"] == "prediction" and p["latency_ms"] > 0
        torch.testing.assert_close(scores(p["top_k"]), exp, atol=TOL, rtol=0)
    assert end["type"] == "end" and end["frames"] == 7
    torch.testing.assert_close(scores(end["top_k"]), expected[-1], atol=TOL, rtol=0)

    # every=3: answers after frames 3 and 6; stop flushes the 7th frame into the final answer.
    # All frames and the stop are sent at once: queued frames catch up in few model calls.
    preds, end = asyncio.run(_stream(f"{ws_url}/v1/stream", frames, "png", every=3,
                                     burst=True))
    assert [p["frame"] for p in preds] == [2, 5]
    torch.testing.assert_close(scores(preds[0]["top_k"]), expected[2], atol=TOL, rtol=0)
    torch.testing.assert_close(scores(preds[1]["top_k"]), expected[5], atol=TOL, rtol=0)
    assert end["frames"] == 7
    torch.testing.assert_close(scores(end["top_k"]), expected[6], atol=TOL, rtol=0)


def test_eight_interleaved_sessions_are_batched_and_exact(serve_url, ws_url, ref_model):
    """8 sessions (raw RGB and PNG, different sizes, lengths and start times, paced or all
    frames at once) together: every per-frame answer equals the model run offline on that
    session alone, and the replica's model calls carried several sessions."""
    videos = [frames_rgb(6 + i % 3, height=48 + 8 * (i % 3), width=64 + 12 * (i % 4), seed=10 + i)
              for i in range(8)]
    before = httpx.get(f"{serve_url}/v1/stats").json()

    async def run_all():
        return await asyncio.gather(*[
            _stream(f"{ws_url}/v1/stream", v, "rgb" if i % 2 else "png", delay=0.005 * i,
                    burst=i % 4 == 3)
            for i, v in enumerate(videos)])

    results = asyncio.run(run_all())
    after = httpx.get(f"{serve_url}/v1/stats").json()
    for video, (preds, end) in zip(videos, results):
        expected = stream_probs(ref_model, video)
        assert len(preds) == len(video) == end["frames"]
        for p, exp in zip(preds, expected):
            torch.testing.assert_close(scores(p["top_k"]), exp, atol=TOL, rtol=0)
    calls = {int(k): v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    print("model calls by streams per call:", calls)
    batched = sum(v * k for k, v in calls.items() if k > 1)
    assert batched >= sum(len(v) for v in videos) // 2, calls  # most frames shared a call
    assert max(k for k, v in calls.items() if v > 0) >= 4, calls
    assert after["frames_streamed"] - before["frames_streamed"] == sum(len(v) for v in videos)
    assert after["sessions_active"] == 0


BAD_SESSIONS = [
    # (name, start fields or raw first message, frame to send, expected code, reason part)
    ("frame before start", None, b"\0" * 100, 1008, "send a start message"),
    ("not JSON", "hello", None, 1008, "JSON objects"),
    ("unknown format", {"format": "gif", "width": 80, "height": 60}, None, 1008,
     "format must be one of"),
    ("missing width", {"format": "rgb", "height": 60}, None, 1008, "width is required"),
    ("unknown field", {"format": "rgb", "width": 80, "height": 60, "fps": 5}, None, 1008,
     "unknown field(s) ['fps']"),
    ("top_k too large", {"format": "rgb", "width": 80, "height": 60, "top_k": 99}, None, 1008,
     "top_k must be an integer in [1, 9]"),
    ("float32 frame", {"format": "rgb", "width": 80, "height": 60},
     np.zeros((60, 80, 3), np.float32).tobytes(), 1003, "not float32"),
    ("short rgb frame", {"format": "rgb", "width": 80, "height": 60}, b"\0" * (80 * 60 * 3 - 3),
     1003, "expected 80*60*3 = 14400"),
    ("wrong size", {"format": "png", "width": 80, "height": 60},
     encode(frames_rgb(1, 48, 64)[0], "png"), 1003, "frame is 64x48, the session declared 80x60"),
    ("png sent as jpeg", {"format": "jpeg", "width": 80, "height": 60},
     encode(frames_rgb(1)[0], "png"), 1003, "frame is PNG, the session declared jpeg"),
    ("garbage jpeg", {"format": "jpeg", "width": 80, "height": 60}, b"\xff\xd8garbage" * 50,
     1003, "not a jpeg image"),
    ("oversized png", {"format": "png", "width": 8, "height": 8}, b"\x89PNG" + b"\0" * 70000,
     1009, "needs at most"),
    ("text after start", {"format": "rgb", "width": 80, "height": 60}, '{"type": "pause"}',
     1008, "got type 'pause'"),
]


async def _bad_session(url: str, first, frame) -> tuple[int, str]:
    async with Session(url) as s:
        if first is not None:
            await s.ws.send(first if isinstance(first, str) else
                            json.dumps({"type": "start", **first}))
            if not isinstance(first, str) and frame is not None:
                assert (await s.recv())["type"] == "ready"
        if frame is not None:
            await s.ws.send(frame)
        return await s.closed()


def test_bad_input_closes_only_its_session(serve_url, ws_url, ref_model, tmp_path):
    """A healthy session keeps streaming (and stays exact) while bad sessions and bad uploads
    hit the same replica; each bad one gets its own close code / 4xx with a reason."""
    url = f"{ws_url}/v1/stream"
    frames = frames_rgb(12, seed=21)
    expected = stream_probs(ref_model, frames)

    async def healthy():
        async with Session(url) as s:
            await s.start(format="rgb", width=80, height=60, top_k=K)
            out = []
            for frame in frames:
                out.append(await s.send_frame(frame.tobytes()))
                await asyncio.sleep(0.05)
            return out

    async def bad_ones():
        closes = {}
        for name, first, frame, _, _ in BAD_SESSIONS:
            closes[name] = await _bad_session(url, first, frame)
        async with httpx.AsyncClient(base_url=serve_url) as client:
            uploads = [await client.post("/v1/classify", files={"video": ("x.mp4", data)})
                       for data in (b"not a video", b"\0" * 2_000_000)]
        return closes, uploads

    async def both():
        return await asyncio.gather(healthy(), bad_ones())

    preds, (closes, uploads) = asyncio.run(both())
    for name, _, _, code, reason in BAD_SESSIONS:
        assert closes[name][0] == code, (name, closes[name])
        assert reason in closes[name][1], (name, closes[name])
    assert [u.status_code for u in uploads] == [422, 413]
    assert len(preds) == 12
    for p, exp in zip(preds, expected):
        torch.testing.assert_close(scores(p["top_k"]), exp, atol=TOL, rtol=0)
    assert httpx.get(f"{serve_url}/v1/stats").json()["sessions_active"] == 0


def test_session_limit_and_idle_timeout(serve_url, ws_url):
    """The /limits app has 2 slots and a 1.5 s idle timeout."""
    url = f"{ws_url}/limits/v1/stream"
    frame = frames_rgb(1)[0].tobytes()

    async def scenario():
        async with Session(url) as a, Session(url) as b:
            for s in (a, b):
                assert (await s.start(format="rgb", width=80, height=60))["type"] == "ready"
            assert (await b.send_frame(frame))["frames"] == 1  # b is not idle yet
            async with Session(url) as c:
                refused = await c.closed()
            await a.ws.send(json.dumps({"type": "stop"}))
            assert (await a.recv())["type"] == "end"
            assert (await a.closed())[0] == 1000
            async with Session(url) as d:  # a's slot is free again
                assert (await d.start(format="rgb", width=80, height=60))["type"] == "ready"
                assert (await d.send_frame(frame))["frames"] == 1
                idle_from = time.monotonic()
                idle = await d.closed()
                waited = time.monotonic() - idle_from
            assert (await b.closed())[0] == 4408
        return refused, idle, waited

    refused, idle, waited = asyncio.run(scenario())
    assert refused[0] == 1013 and "replica full: all 2 session slots in use" in refused[1]
    assert idle == (4408, "idle for 1.5 s: session closed")
    assert 1.4 <= waited < 5.0
    stats = httpx.get(f"{serve_url}/limits/v1/stats").json()
    assert stats["sessions_active"] == 0 and stats["sessions_refused"] >= 1
