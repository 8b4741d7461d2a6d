"""The labelling job's output: Parquet parts written atomically, and what resumes from them.

Layout under ``out``::

    label.json                       settings that shape the results (checked on resume)
    summary.json                     the last run's summary
    videos/part-<run>-<seq>.parquet  one row per video (VIDEO_SCHEMA)
    timeline/part-<run>-<seq>.parquet one row per video per chunk (TIMELINE_SCHEMA)

One batch of videos becomes one part in each folder, under the same name. A part is written
to a hidden temporary name and renamed (on object stores, where a PUT is atomic, written
directly), timeline first, then videos: **a video is labelled once its row is in
``videos/``** - the commit point. A crash leaves at most hidden temporaries and timeline parts
without a videos part; :meth:`LabelStore.prepare` deletes both before a run, so the rerun
writes those videos once. Readers (pyarrow, Ray, pandas) skip hidden files.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..data import storage

log = logging.getLogger(__name__)

_TOPK_FIELDS = [
    pa.field("label", pa.string()),        # top-1 class, or "unknown" under min_score
    pa.field("score", pa.float32()),       # top-1 probability
    pa.field("top_labels", pa.list_(pa.string())),
    pa.field("top_scores", pa.list_(pa.float32())),
    pa.field("top_indices", pa.list_(pa.int32())),
]
CHUNK_FIELDS = [
    pa.field("chunk", pa.int32()),
    pa.field("start_frame", pa.int64()),   # [start_frame, end_frame) of the resampled stream
    pa.field("end_frame", pa.int64()),
    pa.field("start_s", pa.float64()),     # the same range in seconds (frame / fps)
    pa.field("end_s", pa.float64()),
    *_TOPK_FIELDS,                         # prediction over the prefix [0, end_frame)
]
TIMELINE_SCHEMA = pa.schema([pa.field("video_id", pa.string()), *CHUNK_FIELDS])
# What a labelling actor returns per video (the driver adds the model and the time).
RESULT_SCHEMA = pa.schema([
    pa.field("video_id", pa.string()),
    pa.field("path", pa.string()),
    pa.field("status", pa.string()),       # "ok" | "error"
    pa.field("error", pa.string()),        # the reason when status == "error"
    *_TOPK_FIELDS,                         # over the whole video; null on error
    pa.field("frames", pa.int64()),        # frames the model saw (at fps)
    pa.field("fps", pa.float64()),
    pa.field("duration_s", pa.float64()),  # the file's duration (container metadata)
    pa.field("timeline", pa.list_(pa.struct(CHUNK_FIELDS))),
])
VIDEO_SCHEMA = pa.schema([
    *[f for f in RESULT_SCHEMA if f.name != "timeline"],
    pa.field("model_uri", pa.string()),
    pa.field("model_version", pa.string()),
    pa.field("labelled_at", pa.timestamp("ms", tz="UTC")),
])
SETTINGS_FILE = "label.json"
SUMMARY_FILE = "summary.json"


class SettingsMismatch(ValueError):
    """``out`` holds labels made with other settings; mixing them would be silently wrong."""


class LabelStore:
    """Reads and writes one labelling output folder (local path or URI)."""

    def __init__(self, out: str):
        self.out = str(out)
        self.fs, self.root = storage.filesystem_for(self.out)
        self.root = self.root.rstrip("/")
        self._local = isinstance(self.fs, pafs.LocalFileSystem)
        self._run = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self._seq = 0

    @property
    def videos_dir(self) -> str:
        return storage.join(self.out, "videos")

    @property
    def timeline_dir(self) -> str:
        return storage.join(self.out, "timeline")

    # ------------------------------------------------------------------ before a run

    def prepare(self, settings: dict, retry_errors: bool = False) -> set[str]:
        """Check ``settings`` against earlier runs, clear crash leftovers, and return the
        ``video_id``s already labelled (``retry_errors``: errored videos are dropped from the
        output and not counted as labelled).

        Raises:
            SettingsMismatch: ``out`` was labelled with different settings.
        """
        for sub in ("videos", "timeline"):
            self.fs.create_dir(f"{self.root}/{sub}", recursive=True)
        self._check_settings(settings)
        videos = self._parts("videos")
        for name in self._hidden("videos") + self._hidden("timeline"):
            log.info("removing an unfinished write %s", name)
            self.fs.delete_file(name)
        for name in sorted(set(self._parts("timeline")) - set(videos)):
            log.info("removing timeline/%s: its videos part was never written (crashed run)",
                     name)
            self.fs.delete_file(f"{self.root}/timeline/{name}")
        done: set[str] = set()
        for name in videos:
            path = f"{self.root}/videos/{name}"
            table = pq.read_table(path, columns=["video_id", "status"], filesystem=self.fs)
            if retry_errors and pc.any(pc.equal(table["status"], "error")).as_py():
                self._drop_errors(path)
                table = table.filter(pc.not_equal(table["status"], "error"))
            ids = table["video_id"].to_pylist()
            repeated = done.intersection(ids)
            if repeated:  # cannot happen through this store; say so loudly if it ever does
                log.error("video_id(s) %s appear in more than one part of %s",
                          sorted(repeated)[:5], self.videos_dir)
            done.update(ids)
        return done

    def _check_settings(self, settings: dict) -> None:
        path = f"{self.root}/{SETTINGS_FILE}"
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            with self.fs.open_input_stream(path) as f:
                before = json.loads(f.read().decode())
            changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
            if changed:
                raise SettingsMismatch(
                    f"{self.out} holds labels made with other settings "
                    f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}); "
                    "label into a new --out")
            return
        self._write_bytes(path, json.dumps(settings, indent=1, sort_keys=True).encode())

    def _drop_errors(self, path: str) -> None:
        table = pq.read_table(path, filesystem=self.fs)
        kept = table.filter(pc.not_equal(table["status"], "error"))
        log.info("--retry-errors: %d errored video(s) of %s will be labelled again",
                 len(table) - len(kept), path.rsplit("/", 1)[-1])
        self._write_table(kept, path)

    # ------------------------------------------------------------------ during a run

    def write_part(self, results: pa.Table, model_uri: str, model_version: str | None
                   ) -> tuple[pa.Table, int]:
        """Write one batch of actor results (RESULT_SCHEMA) as a videos and a timeline part.

        Returns the videos rows written and the number of timeline rows.
        """
        name = f"part-{self._run}-{self._seq:05d}.parquet"
        self._seq += 1
        timeline = _explode_timeline(results)
        now = pa.scalar(int(time.time() * 1000), pa.timestamp("ms", tz="UTC"))
        videos = results.drop_columns(["timeline"])
        n = len(videos)
        videos = videos.append_column("model_uri", pa.array([model_uri] * n, pa.string()))
        videos = videos.append_column("model_version", pa.array([model_version] * n, pa.string()))
        videos = videos.append_column("labelled_at", pa.array([now.value] * n, now.type))
        videos = videos.cast(VIDEO_SCHEMA)
        self._write_table(timeline, f"{self.root}/timeline/{name}")
        self._write_table(videos, f"{self.root}/videos/{name}")  # the commit point
        return videos, len(timeline)

    def write_summary(self, summary: dict) -> None:
        self._write_bytes(f"{self.root}/{SUMMARY_FILE}",
                          json.dumps(summary, indent=1, default=str).encode())

    # ------------------------------------------------------------------ reading

    def read_videos(self, columns: list[str] | None = None) -> pa.Table:
        """Every labelled video (VIDEO_SCHEMA)."""
        return self._read("videos", VIDEO_SCHEMA, columns)

    def read_timeline(self, video_id: str | None = None) -> pa.Table:
        """Timeline rows (of one video, sorted by chunk, when ``video_id`` is given)."""
        table = self._read("timeline", TIMELINE_SCHEMA, None, video_id)
        return table.sort_by([("video_id", "ascending"), ("chunk", "ascending")])

    def _read(self, sub: str, schema: pa.Schema, columns, video_id=None) -> pa.Table:
        import pyarrow.dataset as ds

        files = [f"{self.root}/{sub}/{n}" for n in self._parts(sub)]
        data = ds.dataset(files, schema=schema, format="parquet", filesystem=self.fs)
        filt = None if video_id is None else ds.field("video_id") == video_id
        return data.to_table(columns=columns, filter=filt)

    # ------------------------------------------------------------------ files

    def _parts(self, sub: str) -> list[str]:
        return sorted(n for n in self._names(sub) if n.startswith("part-")
                      and n.endswith(".parquet"))

    def _hidden(self, sub: str) -> list[str]:
        return [f"{self.root}/{sub}/{n}" for n in self._names(sub) if n.startswith(".")]

    def _names(self, sub: str) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{sub}",
                                                        allow_not_found=True))
        return [i.base_name for i in infos if i.type == pafs.FileType.File]

    def _write_table(self, table: pa.Table, path: str) -> None:
        self._atomic(path, lambda f: pq.write_table(table, f))

    def _write_bytes(self, path: str, data: bytes) -> None:
        self._atomic(path, lambda f: f.write(data))

    def _atomic(self, path: str, write) -> None:
        """Write ``path`` whole or not at all: a hidden temporary renamed into place locally;
        object stores make a PUT visible only once it completes."""
        if not self._local:
            with self.fs.open_output_stream(path) as f:
                write(f)
            return
        folder, name = path.rsplit("/", 1)
        tmp = f"{folder}/.{name}.{secrets.token_hex(4)}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as f:
                write(f)
            self.fs.move(tmp, path)
        except BaseException:
            if self.fs.get_file_info(tmp).type == pafs.FileType.File:
                self.fs.delete_file(tmp)
            raise


def _explode_timeline(results: pa.Table) -> pa.Table:
    """RESULT_SCHEMA's nested ``timeline`` as TIMELINE_SCHEMA rows."""
    lists = results["timeline"].combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(lists), 0)
    ids = pc.take(results["video_id"], pa.array(
        [i for i, n in enumerate(lengths.to_pylist()) for _ in range(n)], pa.int64()))
    flat = pc.list_flatten(lists)
    columns = {"video_id": ids, **{f.name: flat.field(f.name) for f in CHUNK_FIELDS}}
    return pa.table(columns, schema=TIMELINE_SCHEMA)


def rows_to_results(rows: Iterable[dict]) -> pa.Table:
    """Actor output rows (dicts in RESULT_SCHEMA) as a table."""
    return pa.Table.from_pylist(list(rows), schema=RESULT_SCHEMA)
