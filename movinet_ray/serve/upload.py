"""Receive a multipart video upload into a temporary file, enforcing a size limit on the way.

The body is read as it arrives and parsed by python-multipart's streaming parser; the file
part's bytes go straight to disk, so memory stays at one network chunk whatever the upload
size, and an upload over the limit is refused (413) as soon as the limit is crossed, not
after the whole body has been read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path


class UploadError(Exception):
    """The upload is refused: ``status`` is the HTTP status, ``detail`` says why."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


async def receive_upload(body: AsyncIterator[bytes], content_type: str | None,
                         content_length: str | None, limit: int, field: str,
                         dest_dir: str | Path) -> tuple[Path, str]:
    """Write the ``field`` file of a ``multipart/form-data`` body to a file in ``dest_dir``.

    Args:
        body: the request body as it arrives (Starlette's ``request.stream()``).
        content_type, content_length: the request headers (either may be missing).
        limit: maximum body size in bytes.
        field: name of the form field holding the video.

    Returns:
        The written file (the caller deletes it) and the file name the client gave.

    Raises:
        UploadError: 415 not multipart, 413 over the limit, 400 malformed or no ``field``.
    """
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    mime, params = parse_options_header(content_type or "")
    if mime != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(415, f"send the video as multipart/form-data with a file field "
                               f"{field!r} (got Content-Type {content_type!r})")
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise UploadError(413, f"upload of {_mb(int(content_length))} exceeds the "
                               f"{_mb(limit)} limit")
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".video", dir=dest_dir)
    path = Path(name)
    part = _Part(field, os.fdopen(fd, "wb"))
    parser = MultipartParser(params[b"boundary"], part.callbacks())
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise UploadError(413, f"upload exceeds the {_mb(limit)} limit (refused after "
                                       f"receiving {_mb(received)})")
            parser.write(chunk)
        parser.finalize()
        if not part.found:
            raise UploadError(400, f"no file field {field!r} in the form")
        if not part.done:
            raise UploadError(400, "the multipart body ended inside the file part")
    except MultipartParseError as e:
        path.unlink(missing_ok=True)
        raise UploadError(400, f"malformed multipart body: {e}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        part.out.close()
    return path, part.filename


class _Part:
    """python-multipart callbacks: find the part named ``field`` and stream it to ``out``."""

    def __init__(self, field: str, out):
        self.field, self.out = field, out
        self.found = self.done = self._writing = False
        self._header_name = self._header_value = b""
        self._disposition = b""
        self.filename = "upload"

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin, "on_header_field": self._name,
            "on_header_value": self._value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done, "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self):
        self._disposition = b""
        self._writing = False

    def _name(self, data: bytes, start: int, end: int):
        self._header_name += data[start:end]

    def _value(self, data: bytes, start: int, end: int):
        self._header_value += data[start:end]

    def _header_end(self):
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_done(self):
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._disposition)
        if params.get(b"name", b"").decode(errors="replace") == self.field and not self.found:
            self.found = self._writing = True
            self.filename = params.get(b"filename", b"upload").decode(errors="replace")

    def _data(self, data: bytes, start: int, end: int):
        if self._writing:
            self.out.write(data[start:end])

    def _end(self):
        if self._writing:
            self.done = True
        self._writing = False
