"""Read TensorFlow 2 checkpoints (``PREFIX.index`` + ``PREFIX.data-*``) without TensorFlow.

The ``.index`` file is a LevelDB-format sorted table mapping each variable's checkpoint key to
a ``BundleEntryProto`` (dtype, shape, shard, offset, size); ``.data-NNNNN-of-MMMMM`` shards hold
the raw little-endian tensor bytes. This covers what MoViNet checkpoints use: uncompressed
tables, unpartitioned numeric tensors.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
# TF DataType enum -> numpy dtype (bfloat16 is widened to float32 on read).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_, 14: "bfloat16", 17: np.uint16, 19: np.float16,
           22: np.uint32, 23: np.uint64}
_STRING = 7


class CheckpointFormatError(ValueError):
    """The files are not a TensorFlow checkpoint this reader understands."""


def resolve_prefix(path: str | Path) -> Path:
    """Accept a checkpoint folder (with a ``checkpoint`` file), a prefix, or the ``.index`` file."""
    path = Path(path)
    if path.is_dir():
        marker = path / "checkpoint"
        if marker.exists():
            match = re.search(r'model_checkpoint_path:\s*"([^"]+)"', marker.read_text())
            if match:
                prefix = Path(match.group(1))
                return prefix if prefix.is_absolute() else path / prefix
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        raise CheckpointFormatError(f"{path}: no 'checkpoint' file and {len(indexes)} .index files")
    if path.suffix == ".index":
        return path.with_suffix("")
    if Path(str(path) + ".index").exists():
        return path
    raise CheckpointFormatError(f"{path}: not a TensorFlow checkpoint (no {path}.index)")


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """All numeric variables of a TF checkpoint, keyed by their checkpoint names."""
    prefix = resolve_prefix(path)
    index = Path(str(prefix) + ".index").read_bytes()
    entries = dict(_read_table(index, prefix))
    header = entries.pop("", None)
    num_shards = _parse_fields(header).get(1, 1) if header else 1
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for key, raw in entries.items():
        fields = _parse_fields(raw)
        dtype = fields.get(1, 0)
        if dtype == _STRING or fields.get(7):  # the object graph; partitioned variables
            continue
        if dtype not in _DTYPES:
            raise CheckpointFormatError(f"{key}: unsupported TF dtype enum {dtype}")
        shard = fields.get(3, 0)
        if shard not in shards:
            name = f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"
            try:
                shards[shard] = Path(name).read_bytes()
            except FileNotFoundError:
                raise CheckpointFormatError(f"missing checkpoint shard {name}") from None
        offset, size = fields.get(4, 0), fields.get(5, 0)
        blob = shards[shard][offset:offset + size]
        if len(blob) != size:
            raise CheckpointFormatError(f"{key}: shard {shard} is truncated")
        out[key] = _decode(blob, _DTYPES[dtype], _parse_shape(fields.get(2, b"")))
    return out


def _decode(blob: bytes, dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":
        bits = np.frombuffer(blob, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()


# --------------------------------------------------------------------------- LevelDB table


def _read_table(data: bytes, name) -> list[tuple[str, bytes]]:
    if len(data) < _FOOTER or struct.unpack("<Q", data[-8:])[0] != _MAGIC:
        raise CheckpointFormatError(f"{name}.index: bad table magic (not a TF checkpoint index)")
    footer = data[-_FOOTER:]
    pos = 0
    _, pos = _varint(footer, pos)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    entries = []
    for _, handle in _read_block(data, index_offset, index_size, name):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        entries.extend(_read_block(data, offset, size, name))
    return entries


def _read_block(data: bytes, offset: int, size: int, name) -> list[tuple[str, bytes]]:
    if data[offset + size] != 0:  # trailer byte 0 = no compression
        raise CheckpointFormatError(f"{name}.index: compressed tables are not supported")
    block = data[offset:offset + size]
    num_restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * num_restarts
    pos, key, out = 0, b"", []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        out.append((key.decode("utf-8"), block[pos:pos + value_len]))
        pos += value_len
    return out


# --------------------------------------------------------------------------- protobuf


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _parse_fields(buf: bytes) -> dict[int, object]:
    """Top-level protobuf fields (last value wins; length-delimited fields kept as bytes)."""
    fields: dict[int, object] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        fields[number] = value
    return fields


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """``TensorShapeProto``: repeated ``dim`` (field 2), each with ``size`` (field 1)."""
    dims, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        if tag & 7 == 2:
            length, pos = _varint(buf, pos)
            if tag >> 3 == 2:
                dims.append(_parse_fields(buf[pos:pos + length]).get(1, 0))
            pos += length
        elif tag & 7 == 0:
            _, pos = _varint(buf, pos)
        else:
            raise CheckpointFormatError("malformed TensorShapeProto")
    return tuple(int(d) for d in dims)
