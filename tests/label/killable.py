"""A labelling actor that says where it is, for the actor-death test."""

from __future__ import annotations

import os
import time
from pathlib import Path

from movinet_ray.label.output import rows_to_results
from movinet_ray.label.predictor import LabelPredictor, result_row


def marked_predictor(folder: Path, pause_on: str) -> type[LabelPredictor]:
    """A LabelPredictor that writes ``<first video of the batch>.<pid>`` into ``folder`` when it
    starts a batch. On the first attempt at the batch holding ``pause_on`` it writes
    ``folder/paused`` (its pid) once its first video is done - the batch's other videos are
    open in the engine, mid-stream - and waits there to be killed.

    A class made in a function: cloudpickle ships it to the actors by value, ``folder`` with it.
    """

    class MarkedPredictor(LabelPredictor):
        def __call__(self, batch):
            ids = batch["video_id"].to_pylist()
            key = ids[0].replace("/", "_")
            first_attempt = not list(folder.glob(f"{key}.*"))
            (folder / f"{key}.{os.getpid()}").write_text(",".join(ids))
            rows = []
            for video in self.labeller.run(zip(ids, batch["path"].to_pylist())):
                rows.append(result_row(video, self.topk))
                if first_attempt and pause_on in ids and len(rows) == 1:
                    (folder / "paused").write_text(str(os.getpid()))
                    time.sleep(60)  # killed here
            return rows_to_results(rows)

    return MarkedPredictor
