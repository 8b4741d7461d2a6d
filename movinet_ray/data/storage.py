"""Local paths and object-storage URIs (``s3://``, ``gs://``, ``file://``) through pyarrow.

Every path the data layer takes is either a local path or a URI that
``pyarrow.fs.FileSystem.from_uri`` understands. Decoders need a real file (decord and PyAV
seek), so a remote video is copied to a temporary local file for the time it is read
(:func:`local_copy`); reading streams in blocks, so memory stays bounded by the block size.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

_COPY_BLOCK = 8 << 20  # bytes per read when downloading a remote file


def is_uri(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` strings (including ``file://``)."""
    return "://" in str(path)


def is_remote(path: str | os.PathLike) -> bool:
    """True for URIs whose filesystem is not the local one (``s3://``, ``gs://``, ...)."""
    text = str(path)
    return is_uri(text) and not text.startswith("file://")


def from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """``pyarrow.fs.FileSystem.from_uri`` (the one place URIs are resolved)."""
    return pafs.FileSystem.from_uri(uri)


def to_local_path(path: str | os.PathLike) -> str:
    """A local filesystem path for a local path or ``file://`` URI (remote URIs raise)."""
    text = str(path)
    if text.startswith("file://"):
        _, local = from_uri(text)
        return local
    if is_uri(text):
        raise ValueError(f"{text!r} is not a local path")
    return text


def filesystem_for(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` for a local path or any pyarrow-supported URI."""
    text = str(path)
    if not is_uri(text):
        return pafs.LocalFileSystem(), os.path.abspath(text)
    return from_uri(text)


def join(root: str | os.PathLike, *parts: str) -> str:
    """Join path parts below ``root``, keeping a URI a URI (``/`` separators)."""
    text = str(root)
    if is_uri(text):
        return posixpath.join(text, *parts)
    return str(Path(text).joinpath(*parts))


def parent(path: str | os.PathLike) -> str:
    """The folder holding ``path`` (a URI stays a URI)."""
    text = str(path)
    if is_uri(text):
        return posixpath.dirname(text.rstrip("/"))
    return str(Path(text).resolve().parent)


def resolve(path: str, base: str | None) -> str:
    """``path`` made absolute against ``base`` (a folder) unless it already is absolute/a URI."""
    if base is None or is_uri(path) or os.path.isabs(path):
        return path
    return join(base, path)


def exists(path: str | os.PathLike, filesystem: pafs.FileSystem | None = None) -> bool:
    fs, inner = (filesystem, str(path)) if filesystem is not None else filesystem_for(path)
    return fs.get_file_info(inner).type == pafs.FileType.File


def file_size(path: str | os.PathLike, filesystem: pafs.FileSystem | None = None) -> int | None:
    """Size in bytes, or None when ``path`` is not an existing file."""
    fs, inner = (filesystem, str(path)) if filesystem is not None else filesystem_for(path)
    info = fs.get_file_info(inner)
    return info.size if info.type == pafs.FileType.File else None


def list_files(root: str | os.PathLike, suffixes: tuple[str, ...]) -> list[str]:
    """All files below ``root`` (recursive) whose name ends with one of ``suffixes``
    (case-insensitive), as full paths (URIs when ``root`` is a URI), sorted."""
    text = str(root)
    fs, inner = filesystem_for(text)
    infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    out = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.base_name.lower().endswith(suffixes):
            continue
        prefix = inner.rstrip("/")
        rel = info.path[len(prefix) + 1:] if prefix else info.path.lstrip("/")
        out.append(join(text, *rel.split("/")))
    return sorted(out)


@contextlib.contextmanager
def local_copy(path: str | os.PathLike,
               filesystem: pafs.FileSystem | None = None) -> Iterator[str]:
    """Yield a local file path for ``path``; remote files are downloaded to a temporary file
    that is deleted on exit. Local paths and ``file://`` URIs are yielded as they are.

    ``filesystem``: read ``path`` (then a path inside it) through this filesystem instead of
    resolving a URI; any filesystem other than the local one is downloaded.
    """
    if filesystem is None and not is_remote(path):
        yield to_local_path(path)
        return
    if filesystem is None:
        filesystem, inner = from_uri(str(path))
    else:
        inner = str(path)
    if isinstance(filesystem, pafs.LocalFileSystem):
        yield inner
        return
    suffix = Path(inner).suffix
    fd, tmp = tempfile.mkstemp(prefix="movinet-video-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, filesystem.open_input_stream(inner) as src:
            shutil.copyfileobj(src, out, _COPY_BLOCK)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def read_text(path: str | os.PathLike) -> str:
    fs, inner = filesystem_for(path)
    with fs.open_input_stream(inner) as f:
        return f.read().decode("utf-8")


def write_text(path: str | os.PathLike, text: str) -> None:
    fs, inner = filesystem_for(path)
    if isinstance(fs, pafs.LocalFileSystem):
        Path(inner).parent.mkdir(parents=True, exist_ok=True)
    with fs.open_output_stream(inner) as f:
        f.write(text.encode("utf-8"))
