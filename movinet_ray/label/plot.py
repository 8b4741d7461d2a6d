"""One video's class scores over time, from the ``timeline/`` output (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .output import LabelStore


def timeline_series(out: str, video_id: str, max_classes: int = 5
                    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(end_s per chunk, {class: probability per chunk})`` for the ``max_classes`` classes
    that score highest anywhere in the video.

    Each value is the prediction over the video up to that time. Only the top-k of each chunk
    is stored, so a class outside a chunk's top-k is NaN there (its probability is at most
    that chunk's k-th score).

    Raises:
        KeyError: ``video_id`` has no timeline rows in ``out``.
    """
    rows = LabelStore(out).read_timeline(video_id).to_pylist()
    if not rows:
        raise KeyError(f"no timeline rows for video_id {video_id!r} in {out}")
    best: dict[str, float] = {}
    for row in rows:
        for label, score in zip(row["top_labels"], row["top_scores"]):
            best[label] = max(best.get(label, 0.0), score)
    classes = sorted(best, key=lambda c: -best[c])[:max_classes]
    series = {c: np.full(len(rows), np.nan) for c in classes}
    for i, row in enumerate(rows):
        for label, score in zip(row["top_labels"], row["top_scores"]):
            if label in series:
                series[label][i] = score
    return np.array([r["end_s"] for r in rows]), series


def plot_timeline(out: str, video_id: str, png: str | Path, max_classes: int = 5) -> Path:
    """Draw :func:`timeline_series` to ``png`` (matplotlib's Agg canvas, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times, series = timeline_series(out, video_id, max_classes)
    fig = Figure(figsize=(9, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, scores in series.items():
        ax.plot(times, scores, marker="o", markersize=3, label=label)
    ax.set_xlabel("time (s): prediction over the video up to here")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_xlim(0, max(times[-1], 1e-3))
    ax.set_title(f"{video_id}: top classes over time")
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    return png
