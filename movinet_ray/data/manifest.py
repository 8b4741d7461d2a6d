"""Manifests: the table of videos a job reads, with its class list; importers.

A manifest is a Parquet (or CSV) table with the columns ``path`` (local path or URI;
relative paths are relative to the manifest's folder), ``label`` (class name; null for
unlabelled videos), and optionally ``split``, ``start_s``, ``end_s`` (a segment of the file)
and ``video_id`` (default: derived from the path, :func:`default_video_id`). Other columns
are kept as they are.

The class list is stored twice: in the Parquet schema metadata (key ``movinet_ray.classes``)
and in a sidecar ``<manifest stem>.classes.json`` (the only place for CSV manifests).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import storage
from .sampling import stable_hash

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv",
                  ".flv", ".3gp")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validate": "val", "validation": "val", "test": "test", "testing": "test"}
METADATA_KEY = b"movinet_ray.classes"
_TYPES = {"path": pa.string(), "label": pa.string(), "split": pa.string(),
          "start_s": pa.float64(), "end_s": pa.float64(), "video_id": pa.string()}


@dataclass(frozen=True)
class ClassList:
    """Class names in index order (index = position)."""

    names: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate class names in {self.names}")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.names)})

    @classmethod
    def from_labels(cls, labels: Iterable[str | None]) -> ClassList:
        """The sorted distinct non-null labels."""
        return cls(tuple(sorted({str(x) for x in labels if x is not None})))

    def index(self, name: str) -> int:
        """Index of class ``name``; KeyError naming the known classes if absent."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown class {name!r}; known: {list(self.names)}") from None

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __getitem__(self, i: int) -> str:
        return self.names[i]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def to_json(self) -> str:
        return json.dumps({"classes": list(self.names)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ClassList:
        """Accepts ``{"classes": [...]}`` or a bare JSON list."""
        data = json.loads(text)
        names = data["classes"] if isinstance(data, dict) else data
        return cls(tuple(names))


def default_video_id(path: str) -> str:
    """``<file stem>-<8 hex digits of a hash of the full path>``: deterministic, readable,
    and unique even when two folders hold files of the same name."""
    stem = PurePosixPath(str(path).replace("\\", "/")).stem
    return f"{stem}-{stable_hash(str(path)) & 0xFFFFFFFF:08x}"


@dataclass(frozen=True)
class Manifest:
    """A table of videos (see the module docstring) and its class list.

    Build with :meth:`from_rows` or :meth:`from_table`, which normalise the columns.
    """

    table: pa.Table
    classes: ClassList

    @classmethod
    def from_table(cls, table: pa.Table, classes: ClassList | Sequence[str] | None = None,
                   base: str | None = None) -> Manifest:
        """Normalise ``table``: typed known columns, ``video_id`` filled in, relative paths
        resolved against ``base``; ``classes`` default to the sorted labels.

        Raises:
            ValueError: no ``path`` column, or a label that is not in ``classes``.
        """
        if "path" not in table.column_names:
            raise ValueError(f"a manifest needs a 'path' column, got {table.column_names}")
        table = table.replace_schema_metadata(None)
        if "label" not in table.column_names:
            table = table.append_column("label", pa.nulls(len(table), pa.string()))
        for name, typ in _TYPES.items():
            if name in table.column_names and table.schema.field(name).type != typ:
                table = table.set_column(table.column_names.index(name), name,
                                         pc.cast(table[name], typ))
        written = table["path"].to_pylist()
        if any(p is None for p in written):
            raise ValueError("a manifest path is null")
        # ids from the paths as written, so a relocated relative manifest keeps its ids
        ids = [default_video_id(p) for p in written]
        paths = [storage.resolve(p, base) for p in written]
        table = table.set_column(table.column_names.index("path"), "path",
                                 pa.array(paths, pa.string()))
        if "video_id" in table.column_names:
            given = table["video_id"].to_pylist()
            ids = [g if g is not None else d for g, d in zip(given, ids)]
            table = table.drop_columns(["video_id"])
        table = table.append_column("video_id", pa.array(ids, pa.string()))
        if classes is None:
            classes = ClassList.from_labels(table["label"].to_pylist())
        elif not isinstance(classes, ClassList):
            classes = ClassList(tuple(classes))
        unknown = sorted({x for x in table["label"].to_pylist()
                          if x is not None and x not in classes})
        if unknown:
            raise ValueError(f"labels {unknown[:10]} are not in the class list {classes.names}")
        return cls(table, classes)

    @classmethod
    def from_rows(cls, rows: Sequence[dict], classes: ClassList | Sequence[str] | None = None,
                  base: str | None = None) -> Manifest:
        if not rows:
            raise ValueError("a manifest needs at least one row")
        keys = list(dict.fromkeys(k for row in rows for k in row))  # union, first-seen order
        table = pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows])
        return cls.from_table(table, classes, base)

    def __len__(self) -> int:
        return len(self.table)

    def rows(self) -> list[dict]:
        return self.table.to_pylist()

    @property
    def splits(self) -> list[str]:
        if "split" not in self.table.column_names:
            return []
        return sorted({s for s in self.table["split"].to_pylist() if s is not None})

    def split(self, name: str | None) -> Manifest:
        """The rows of split ``name`` (None: all rows), same class list."""
        if name is None:
            return self
        if "split" not in self.table.column_names:
            raise ValueError(f"manifest has no 'split' column (asked for {name!r})")
        return Manifest(self.table.filter(pc.equal(self.table["split"], name)), self.classes)

    def label_indices(self) -> list[int | None]:
        return [None if x is None else self.classes.index(x)
                for x in self.table["label"].to_pylist()]

    def filter_video_ids(self, keep: set[str]) -> Manifest:
        mask = pa.array([v in keep for v in self.table["video_id"].to_pylist()], pa.bool_())
        return Manifest(self.table.filter(mask), self.classes)


def classes_sidecar(path: str) -> str:
    """``dir/name.parquet`` -> ``dir/name.classes.json``."""
    text = str(path)
    base, _ = posixpath.splitext(text) if storage.is_uri(text) else os.path.splitext(text)
    return base + ".classes.json"


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> str:
    """Write ``manifest`` to ``path`` (``.parquet`` or ``.csv``, local or URI) and its class
    list sidecar. Paths are written as they are in the table. Returns the path."""
    text = str(path)
    table = manifest.table.replace_schema_metadata(
        {METADATA_KEY: manifest.classes.to_json().encode()})
    fs, inner = storage.filesystem_for(text)
    if not storage.is_uri(text):
        os.makedirs(os.path.dirname(os.path.abspath(text)), exist_ok=True)
    if text.endswith(".parquet"):
        pq.write_table(table, inner, filesystem=fs)
    elif text.endswith(".csv"):
        with fs.open_output_stream(inner) as out:
            pacsv.write_csv(table, out)
    else:
        raise ValueError(f"manifest path must end with .parquet or .csv: {text}")
    storage.write_text(classes_sidecar(text), manifest.classes.to_json())
    return text


def read_manifest(path: str | os.PathLike,
                  classes: ClassList | Sequence[str] | None = None) -> Manifest:
    """Read a manifest written by :func:`write_manifest` (or by hand).

    The class list comes from ``classes`` if given, else the Parquet metadata, else the
    sidecar, else the sorted labels. Relative video paths resolve against the manifest's
    folder.
    """
    text = str(path)
    fs, inner = storage.filesystem_for(text)
    if text.endswith(".parquet"):
        table = pq.read_table(inner, filesystem=fs)
    elif text.endswith(".csv"):
        with fs.open_input_stream(inner) as f:
            table = pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(
                column_types={k: v for k, v in _TYPES.items()}, strings_can_be_null=True))
    else:
        raise ValueError(f"manifest path must end with .parquet or .csv: {text}")
    if classes is None:
        meta = table.schema.metadata or {}
        if METADATA_KEY in meta:
            classes = ClassList.from_json(meta[METADATA_KEY].decode())
        elif storage.exists(classes_sidecar(text)):
            classes = ClassList.from_json(storage.read_text(classes_sidecar(text)))
    return Manifest.from_table(table, classes, base=storage.parent(text))


# --------------------------------------------------------------------------- importers


def import_folder(root: str | os.PathLike,
                  classes: ClassList | Sequence[str] | None = None) -> Manifest:
    """A Kinetics-style folder tree: ``root/<class>/<video>`` or
    ``root/<split>/<class>/<video>`` (split folders: train, val/valid/validation, test).

    ``video_id`` is the path below ``root`` without the suffix (e.g. ``train/jump/0001``).
    """
    text = str(root)
    files = storage.list_files(text, VIDEO_SUFFIXES)
    if not files:
        raise ValueError(f"no video files under {text}")
    rels = [_relative(f, text) for f in files]
    has_split = all(len(r) >= 3 and r[0].lower() in SPLIT_ALIASES for r in rels)
    rows = []
    for path, rel in zip(files, rels):
        if has_split:
            split, label = SPLIT_ALIASES[rel[0].lower()], rel[1]
        elif len(rel) >= 2:
            split, label = None, rel[0]
        else:
            raise ValueError(f"{path}: expected root/<class>/<video> or "
                             "root/<split>/<class>/<video>")
        vid = "/".join(rel)
        rows.append({"path": path, "label": label, "split": split,
                     "video_id": vid[: -len(PurePosixPath(vid).suffix) or None]})
    if not has_split:
        for r in rows:
            del r["split"]
    return Manifest.from_rows(rows, classes)


def _relative(path: str, root: str) -> list[str]:
    if storage.is_uri(root):
        rel = posixpath.relpath(path, root.rstrip("/"))
    else:
        rel = os.path.relpath(path, root)
    return rel.replace(os.sep, "/").split("/")


def kinetics_file_stem(youtube_id: str, start: int, end: int) -> str:
    """The Kinetics download naming scheme: ``<youtube_id>_<start:06d>_<end:06d>``."""
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def import_kinetics_csv(csv_path: str | os.PathLike, root: str | os.PathLike,
                        classes: ClassList | Sequence[str] | None = None,
                        split: str | None = None) -> tuple[Manifest, list[str]]:
    """A Kinetics annotation CSV (``label,youtube_id,time_start,time_end,split``; ``label``
    may be absent, e.g. test sets) and the trimmed clips below ``root`` named
    ``<youtube_id>_<start:06d>_<end:06d>.<ext>``, in any sub-folders (e.g. per class).

    The files are the trimmed clips, so ``start_s``/``end_s`` are not set; ``video_id`` is
    the file stem. ``split`` overrides the CSV's split column (or fills it in).

    Returns:
        (manifest of the rows whose file exists, the stems of the rows without a file).
    """
    text = storage.read_text(csv_path)
    reader = csv.DictReader(io.StringIO(text))
    missing_cols = {"youtube_id", "time_start", "time_end"} - set(reader.fieldnames or ())
    if missing_cols:
        raise ValueError(f"{csv_path}: missing column(s) {sorted(missing_cols)}")
    found = {}
    for f in storage.list_files(root, VIDEO_SUFFIXES):
        found.setdefault(PurePosixPath(f.replace("\\", "/")).stem, f)
    rows, missing = [], []
    for rec in reader:
        stem = kinetics_file_stem(rec["youtube_id"], float(rec["time_start"]),
                                  float(rec["time_end"]))
        path = found.get(stem)
        if path is None:
            missing.append(stem)
            continue
        row_split = split or rec.get("split")
        rows.append({"path": path, "label": rec.get("label") or None,
                     "split": SPLIT_ALIASES.get((row_split or "").lower(), row_split),
                     "video_id": stem})
    if missing:
        log.warning("%d of %d rows of %s have no file under %s", len(missing),
                    len(missing) + len(rows), csv_path, root)
    if not rows:
        raise ValueError(f"no video of {csv_path} was found under {root}")
    return Manifest.from_rows(rows, classes), missing
