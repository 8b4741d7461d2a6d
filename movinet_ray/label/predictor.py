"""The labelling actor: a callable class for ``Dataset.map_batches`` (model loaded once)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pyarrow as pa
import torch

from .labeller import DecodeSpec, StreamLabeller, VideoPrediction
from .output import rows_to_results

log = logging.getLogger(__name__)

UNKNOWN = "unknown"


@dataclass(frozen=True)
class TopK:
    """Logits -> the ``k`` most probable classes (softmax) and the label.

    The label is the top-1 class, or ``unknown`` when its probability is under ``min_score``.
    """

    class_names: tuple[str, ...]
    k: int
    min_score: float = 0.0

    def __call__(self, logits: torch.Tensor) -> list[dict]:
        """``[N, C]`` logits -> N dicts with label, score, top_labels/scores/indices."""
        probs = torch.softmax(logits.float(), dim=-1)
        scores, indices = probs.topk(min(self.k, probs.shape[-1]), dim=-1)
        out = []
        for s, i in zip(scores.tolist(), indices.tolist()):
            out.append({"label": self.class_names[i[0]] if s[0] >= self.min_score else UNKNOWN,
                        "score": s[0], "top_labels": [self.class_names[j] for j in i],
                        "top_scores": s, "top_indices": i})
        return out

    def one(self, logits: torch.Tensor) -> dict:
        """``[C]`` logits -> one dict (a chunk's timeline entry)."""
        return self(logits[None])[0]


def result_row(video: VideoPrediction, topk: TopK) -> dict:
    """One video's output row (RESULT_SCHEMA) with its timeline nested (the chunks'
    predictions are ``topk.one`` dicts: the labeller's ``summarize``)."""
    row = {"video_id": video.video_id, "path": video.path, "status": video.status,
           "error": video.error, "frames": video.frames, "fps": video.fps,
           "duration_s": video.duration_s, "timeline": []}
    if video.status != "ok":
        return row
    row.update(topk.one(video.logits))
    row["timeline"] = [
        {"chunk": c.index, "start_frame": c.start_frame, "end_frame": c.end_frame,
         "start_s": c.start_s, "end_s": c.end_s, **c.prediction} for c in video.chunks]
    return row


class LabelPredictor:
    """Labels a batch of videos (``video_id``, ``path``) on one actor.

    The model arrives once per actor (an object-store reference, so workers on any node get
    it without seeing the driver's files); each call runs the batch's videos through a
    :class:`StreamLabeller` and returns one row per video (RESULT_SCHEMA).

    Args:
        model: the stream model or an ``ObjectRef`` to it.
        decode: chunking, frame rate, crop size.
        topk: class names, k and the ``unknown`` threshold.
        capacity: videos in lockstep.
        threads: torch threads (the CPUs reserved for this actor).
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, model, decode: DecodeSpec, topk: TopK, capacity: int, threads: int,
                 device: str = "cpu"):
        import ray

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        torch.set_num_threads(threads)
        self.topk = topk
        self.labeller = StreamLabeller(model.to(device).eval(), decode, capacity, device,
                                       summarize=topk.one)

    def __call__(self, batch: pa.Table) -> pa.Table:
        videos = zip(batch["video_id"].to_pylist(), batch["path"].to_pylist())
        lab = self.labeller
        start, model_s, wait_s = time.perf_counter(), lab.model_seconds, lab.decode_wait_seconds
        rows = [result_row(v, self.topk) for v in lab.run(videos)]
        log.info("labelled %d videos, %d frames in %.2f s: model %.2f s, waiting for decoding "
                 "%.2f s", len(rows), sum(r["frames"] for r in rows),
                 time.perf_counter() - start, lab.model_seconds - model_s,
                 lab.decode_wait_seconds - wait_s)
        return rows_to_results(rows)
