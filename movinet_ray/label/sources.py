"""What to label: a folder, a glob or a manifest, as a table of ``video_id`` and ``path``."""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
import re
from pathlib import PurePosixPath

import pyarrow as pa

from ..data import read_manifest, storage
from ..data.manifest import VIDEO_SUFFIXES

_GLOB_CHARS = re.compile(r"[*?\[]")


def list_videos(source: str) -> pa.Table:
    """The videos named by ``source``, as a table ``video_id, path`` sorted by ``video_id``.

    * ``*.parquet`` / ``*.csv``: a manifest (``path``, optional ``video_id``; relative paths
      resolve against the manifest's folder, ids default to ``<stem>-<hash of path>``).
    * a pattern with ``*``, ``?`` or ``[`` (``**`` matches across folders): the matching
      files; ids are the paths below the pattern's fixed prefix, without the suffix.
    * a folder: every video file below it (by suffix); ids are the paths below the folder,
      without the suffix (``cats/0001``).

    Raises:
        ValueError: nothing found, or two videos with the same ``video_id``.
    """
    text = str(source)
    if text.lower().endswith((".parquet", ".csv")):
        table = read_manifest(text).table.select(["video_id", "path"])
    elif _GLOB_CHARS.search(text):
        table = _from_glob(text)
    else:
        files = storage.list_files(text, VIDEO_SUFFIXES)
        table = _table(files, text)
    if len(table) == 0:
        raise ValueError(f"no videos found at {text}")
    ids = table["video_id"].to_pylist()
    if len(set(ids)) != len(ids):
        seen, dups = set(), []
        for v in ids:
            if v in seen:
                dups.append(v)
            seen.add(v)
        raise ValueError(f"{text}: video_id must be unique, repeated: {sorted(set(dups))[:10]}")
    return table.sort_by("video_id")


def _from_glob(pattern: str) -> pa.Table:
    root = _fixed_prefix(pattern)
    if storage.is_uri(pattern):
        candidates = storage.list_files(root, ("",))
        # fnmatch's '*' crosses '/', so '**/' also matches zero folders like glob's.
        regex = re.compile(fnmatch.translate(pattern.replace("**/", "*")))
        files = [f for f in candidates if regex.match(f)]
    else:
        files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    return _table(files, root)


def _fixed_prefix(pattern: str) -> str:
    """The folder part of ``pattern`` before its first wildcard."""
    head = pattern[: _GLOB_CHARS.search(pattern).start()]
    sep = "/" if storage.is_uri(pattern) else os.sep
    return head[: head.rfind(sep) + 1] if sep in head else "."


def _table(files: list[str], root: str) -> pa.Table:
    ids = [_relative_id(f, root) for f in files]
    return pa.table({"video_id": pa.array(ids, pa.string()), "path": pa.array(files, pa.string())})


def _relative_id(path: str, root: str) -> str:
    if storage.is_uri(root):
        rel = posixpath.relpath(path, root.rstrip("/"))
    else:
        rel = os.path.relpath(path, root).replace(os.sep, "/")
    return str(PurePosixPath(rel).with_suffix(""))
