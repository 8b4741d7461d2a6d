"""Classification metrics from sums that add up across workers.

Each worker evaluates its shard into a :class:`EvalSums` (a confusion matrix, top-k hits, a
loss sum); the sums are all-reduced, and every metric is derived from the totals, so the
result is exact however the validation clips were spread over workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EvalSums:
    """Additive evaluation state for ``num_classes`` classes."""

    confusion: torch.Tensor  # [C, C] int64, rows = true class
    top5: int = 0
    loss: float = 0.0

    @classmethod
    def zeros(cls, num_classes: int) -> "EvalSums":
        return cls(torch.zeros(num_classes, num_classes, dtype=torch.int64))

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``logits`` ``[N, C]`` (one row per video), ``labels`` ``[N]``."""
        logits, labels = logits.float().cpu(), labels.cpu()
        c = self.confusion.shape[0]
        pred = logits.argmax(dim=1)
        self.confusion += torch.bincount(labels * c + pred, minlength=c * c).view(c, c)
        k = min(5, c)
        self.top5 += int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())
        self.loss += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))

    def packed(self) -> torch.Tensor:
        """One float64 vector, for a single all-reduce."""
        return torch.cat([self.confusion.flatten().double(),
                          torch.tensor([self.top5, self.loss], dtype=torch.float64)])

    @classmethod
    def unpacked(cls, vector: torch.Tensor, num_classes: int) -> "EvalSums":
        n = num_classes * num_classes
        confusion = vector[:n].round().long().view(num_classes, num_classes)
        return cls(confusion, int(round(float(vector[n]))), float(vector[n + 1]))


def summarize(sums: EvalSums) -> dict:
    """Top-1/top-5/loss/mean class recall, per-class precision/recall/F1, the matrix.

    Returns a JSON-ready dict: ``top1, top5, loss, mean_class_recall, videos`` (numbers),
    ``per_class`` (list of ``{precision, recall, f1, support}``) and ``confusion_matrix``.
    """
    cm = sums.confusion.double()
    n = float(cm.sum())
    tp = cm.diag()
    support, predicted = cm.sum(dim=1), cm.sum(dim=0)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12),
                     torch.zeros_like(tp))
    present = support > 0
    return {
        "top1": float(tp.sum() / n) if n else 0.0,
        "top5": sums.top5 / n if n else 0.0,
        "loss": sums.loss / n if n else 0.0,
        "mean_class_recall": float(recall[present].mean()) if present.any() else 0.0,
        "videos": int(n),
        "per_class": [{"precision": float(p), "recall": float(r), "f1": float(f),
                       "support": int(s)}
                      for p, r, f, s in zip(precision, recall, f1, support)],
        "confusion_matrix": sums.confusion.tolist(),
    }
