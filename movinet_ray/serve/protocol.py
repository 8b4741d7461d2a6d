"""The live-session WebSocket protocol: message parsing only, no model.

A session is::

    client -> {"type": "start", "format": "jpeg" | "png" | "rgb", "width": W, "height": H,
               "every": N (default 1), "top_k": K (default: the server's)}
    server -> {"type": "ready", "session": id, "input_size": [S, S], "fps": F, ...}
    client -> binary frame, binary frame, ...      (JPEG/PNG file bytes, or W*H*3 bytes of
                                                    uint8 RGB, row-major, for "rgb")
    server -> {"type": "prediction", "frame": i, "frames": n, "top_k": [...],
               "latency_ms": ms}                    (after every N-th frame)
    client -> {"type": "stop"}
    server -> {"type": "end", "frames": n, "top_k": [...]} and close 1000

Anything else ends the session with one of the close codes below and a reason.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

CLOSE_NORMAL = 1000
CLOSE_BAD_DATA = 1003      # a frame that is not what the session declared
CLOSE_PROTOCOL = 1008      # a message out of protocol (order, type, fields)
CLOSE_TOO_BIG = 1009       # a message larger than the declared frame can be
CLOSE_INTERNAL = 1011      # the server failed
CLOSE_FULL = 1013          # every session slot of this replica is taken: try again later
CLOSE_IDLE = 4408          # nothing received for idle_timeout_s

FORMATS = ("jpeg", "png", "rgb")
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


class ProtocolError(Exception):
    """Ends a session: ``code`` and ``reason`` go into the WebSocket close frame."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class StartMessage:
    """The session's declared frame format; every frame must match it."""

    format: str
    width: int
    height: int
    every: int
    top_k: int

    @property
    def max_encoded_bytes(self) -> int:
        """A JPEG/PNG of noise can outgrow raw RGB, never twice it."""
        return 2 * self.width * self.height * 3 + 65536


def parse_start(text: str, default_top_k: int, num_classes: int,
                max_side: int) -> StartMessage:
    """Validate the first message. Raises ProtocolError(1008) naming the bad field."""
    msg = _json(text)
    if msg.get("type") != "start":
        raise ProtocolError(CLOSE_PROTOCOL, f"expected a start message first, got type "
                                            f"{msg.get('type')!r}")
    unknown = sorted(set(msg) - {"type", "format", "width", "height", "every", "top_k"})
    if unknown:
        raise ProtocolError(CLOSE_PROTOCOL, f"start: unknown field(s) {unknown}")
    fmt = msg.get("format")
    if fmt not in FORMATS:
        raise ProtocolError(CLOSE_PROTOCOL, f"start: format must be one of {list(FORMATS)}, "
                                            f"got {fmt!r}")
    width = _int_field(msg, "width", None, 1, max_side)
    height = _int_field(msg, "height", None, 1, max_side)
    every = _int_field(msg, "every", 1, 1, 1000)
    top_k = _int_field(msg, "top_k", min(default_top_k, num_classes), 1, num_classes)
    return StartMessage(fmt, width, height, every, top_k)


def parse_control(text: str) -> str:
    """A text message after start: only ``{"type": "stop"}`` is allowed."""
    msg = _json(text)
    if msg.get("type") != "stop":
        raise ProtocolError(CLOSE_PROTOCOL, f"after start only binary frames and "
                                            f"{{\"type\": \"stop\"}} are allowed, got type "
                                            f"{msg.get('type')!r}")
    return "stop"


def decode_frame(data: bytes, start: StartMessage) -> np.ndarray:
    """Frame bytes -> uint8 RGB ``[H, W, 3]`` of the declared size.

    Raises:
        ProtocolError: 1003 if it does not decode as the declared format or has another
            size (raw: another byte count), 1009 if an image is larger than any image of
            the declared size.
    """
    if start.format == "rgb":
        expected = start.width * start.height * 3
        if len(data) != expected:
            hint = " (frames must be uint8, not float32)" if len(data) == 4 * expected else ""
            raise ProtocolError(CLOSE_BAD_DATA, f"rgb frame of {len(data)} bytes, expected "
                                                f"{start.width}*{start.height}*3 = "
                                                f"{expected}{hint}")
        return np.frombuffer(data, dtype=np.uint8).reshape(start.height, start.width, 3).copy()
    if len(data) > start.max_encoded_bytes:
        raise ProtocolError(CLOSE_TOO_BIG, f"{start.format} frame of {len(data)} bytes; a "
                                           f"{start.width}x{start.height} frame needs at most "
                                           f"{start.max_encoded_bytes}")
    return _decode_image(data, start)


def _decode_image(data: bytes, start: StartMessage) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ProtocolError(CLOSE_BAD_DATA, f"frame is not a {start.format} image: "
                                            f"{type(e).__name__}") from None
    if image.format != _PIL_FORMATS[start.format]:
        raise ProtocolError(CLOSE_BAD_DATA, f"frame is {image.format}, the session declared "
                                            f"{start.format}")
    if image.size != (start.width, start.height):
        raise ProtocolError(CLOSE_BAD_DATA, f"frame is {image.size[0]}x{image.size[1]}, the "
                                            f"session declared {start.width}x{start.height}")
    try:
        return np.array(image.convert("RGB"))
    except (OSError, ValueError) as e:  # truncated or corrupt pixel data
        raise ProtocolError(CLOSE_BAD_DATA, f"frame does not decode: {e}") from None


def close_reason(reason: str) -> str:
    """WebSocket close reasons are at most 123 bytes of UTF-8."""
    raw = reason.encode()
    if len(raw) <= 123:
        return reason
    return raw[:120].decode(errors="ignore") + "..."


def _json(text: str) -> dict[str, Any]:
    try:
        msg = json.loads(text)
    except json.JSONDecodeError:
        raise ProtocolError(CLOSE_PROTOCOL, "text messages must be JSON objects") from None
    if not isinstance(msg, dict):
        raise ProtocolError(CLOSE_PROTOCOL, "text messages must be JSON objects")
    return msg


def _int_field(msg: dict, name: str, default: int | None, lo: int, hi: int) -> int:
    value = msg.get(name, default)
    if value is None:
        raise ProtocolError(CLOSE_PROTOCOL, f"start: {name} is required")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(CLOSE_PROTOCOL, f"start: {name} must be an integer in "
                                            f"[{lo}, {hi}], got {value!r}")
    return value
