"""TFRecord files without TensorFlow: record framing with CRC-32C checks, gzip, tf.train.Example.

A TFRecord file is a sequence of records, each
    uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)
(little-endian), optionally inside a gzip stream (detected by the gzip magic bytes).
Reading streams the file with constant memory and checks both CRCs of every record.

tf.train.Example is decoded by a small wire-format parser. For bytes lists of one-byte
strings (the layout of image and mask in the DeepMind datasets, each element costing three
wire bytes `0A 01 xx`) it checks the layout and takes every third byte with numpy: about
0.12 ms per ColoredMDSprites record, against 2.7 ms for the protobuf package (upb) plus
joining its 32768 one-byte `bytes` objects.
Gzip files may hold several gzip members one after another (RFC 1952); the replica writer
emits one member per chunk of records.
"""
from __future__ import annotations

import functools
import gzip
import struct
import zlib
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import crc32c
import numpy as np

from slotcov.errors import DataError
from slotcov.io import atomic_path

GZIP_MAGIC = b"\x1f\x8b"
_MASK_DELTA = 0xA282EAD8


def masked_crc(data) -> int:
    """TFRecord's masked CRC-32C of `data`."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(payload: bytes) -> bytes:
    """One framed record: length, its masked CRC, payload, its masked CRC."""
    length = struct.pack("<Q", len(payload))
    return b"".join([length, struct.pack("<I", masked_crc(length)), payload,
                     struct.pack("<I", masked_crc(payload))])


def gzip_member(payloads: Iterable[bytes], level: int = 1) -> bytes:
    """Framed records compressed as one gzip member (members concatenate into a valid file)."""
    return gzip.compress(b"".join(frame_record(p) for p in payloads), compresslevel=level, mtime=0)


def write_records(path, payloads: Iterable[bytes], compression: str | None = "gzip", level: int = 6) -> int:
    """Write payloads as a TFRecord file (gzip or plain), atomically; returns the record count."""
    n = 0
    with atomic_path(path) as tmp:
        gz = compression == "gzip"
        with (gzip.GzipFile(tmp, "wb", compresslevel=level, mtime=0) if gz else open(tmp, "wb")) as fh:
            for payload in payloads:
                fh.write(frame_record(payload))
                n += 1
    return n


def _open(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb", buffering=1 << 20)


def read_records(path, start: int = 0, count: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield (index, payload) for records start..start+count-1, checking both CRCs of each.

    Raises DataError naming the file and the record index on a bad CRC, a truncated record
    or a corrupt gzip stream. Records before `start` are read and checked but not returned.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such TFRecord file; download or generate it first")
    stop = None if count is None else start + count
    index = 0
    with _open(path) as fh:
        while stop is None or index < stop:
            try:
                header = fh.read(12)
                if not header:
                    break
                if len(header) < 12:
                    raise DataError(f"{path}: record {index}: truncated header ({len(header)} of 12 bytes)")
                length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
                if masked_crc(length_bytes) != length_crc:
                    raise DataError(f"{path}: record {index}: length CRC mismatch (corrupt file; re-download it)")
                (length,) = struct.unpack("<Q", length_bytes)
                body = fh.read(length + 4)
                if len(body) < length + 4:
                    raise DataError(f"{path}: record {index}: truncated ({len(body)} of {length + 4} bytes)")
            except (EOFError, OSError, zlib.error) as err:
                raise DataError(f"{path}: record {index}: corrupt gzip stream ({err}); re-download the file") from err
            payload = body[:length]
            if masked_crc(payload) != struct.unpack("<I", body[length:])[0]:
                raise DataError(f"{path}: record {index}: payload CRC mismatch (corrupt file; re-download it)")
            if index >= start:
                yield index, payload
            index += 1


# ---- tf.train.Example wire format --------------------------------------------------------

class BytesList(NamedTuple):
    """A decoded BytesList: the values concatenated, and each value's length."""
    data: np.ndarray  # uint8
    lengths: np.ndarray  # int64

    def values(self) -> list[bytes]:
        ends = np.cumsum(self.lengths)
        raw = self.data.tobytes()
        return [raw[e - n:e] for e, n in zip(ends.tolist(), self.lengths.tolist())]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value) of a message; length-delimited values are (start, end)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = (pos, pos + n), pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("field runs past the end of its message")
        yield field, wire, value


@functools.lru_cache(maxsize=8)
def _one_byte_layout(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wire mask, wire pattern and lengths of a BytesList of n one-byte strings (`0A 01 xx` each)."""
    keep = np.tile(np.array([0xFF, 0xFF, 0x00], np.uint8), n)
    pattern = np.tile(np.array([0x0A, 0x01, 0x00], np.uint8), n)
    lengths = np.ones(n, np.int64)
    for a in (keep, pattern, lengths):
        a.flags.writeable = False
    return keep, pattern, lengths


def _bytes_list(buf: bytes, start: int, end: int) -> BytesList:
    arr = np.frombuffer(buf, np.uint8, count=end - start, offset=start)
    if arr.size % 3 == 0 and arr.size >= 3 * 64:
        keep, pattern, lengths = _one_byte_layout(arr.size // 3)
        if np.array_equal(arr & keep, pattern):
            return BytesList(arr[2::3].copy(), lengths)
    chunks, lengths = [], []
    for field, wire, value in _fields(buf, start, end):
        if field == 1 and wire == 2:
            chunks.append(buf[value[0]:value[1]])
            lengths.append(value[1] - value[0])
    return BytesList(np.frombuffer(b"".join(chunks), np.uint8).copy(), np.asarray(lengths, np.int64))


def _float_list(buf: bytes, start: int, end: int) -> np.ndarray:
    parts = []
    for field, wire, value in _fields(buf, start, end):
        if field == 1 and wire == 2:
            parts.append(np.frombuffer(buf, "<f4", count=(value[1] - value[0]) // 4, offset=value[0]))
        elif field == 1 and wire == 5:
            parts.append(np.frombuffer(value, "<f4"))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def _int64_list(buf: bytes, start: int, end: int) -> np.ndarray:
    values = []
    for field, wire, value in _fields(buf, start, end):
        if field == 1 and wire == 2:
            pos = value[0]
            while pos < value[1]:
                v, pos = _varint(buf, pos)
                values.append(v)
        elif field == 1 and wire == 0:
            values.append(value)
    return np.asarray([v - (1 << 64) if v >= 1 << 63 else v for v in values], np.int64)


def parse_example(payload: bytes) -> dict[str, np.ndarray | BytesList]:
    """Decode a serialized tf.train.Example: FloatList -> float32, Int64List -> int64, BytesList -> BytesList.

    Raises ValueError on malformed input (callers add the file and record index).
    """
    out: dict[str, np.ndarray | BytesList] = {}
    for field, wire, features in _fields(payload, 0, len(payload)):
        if field != 1 or wire != 2:
            continue
        for f2, w2, entry in _fields(payload, *features):
            if f2 != 1 or w2 != 2:
                continue
            key, feature = None, None
            for f3, w3, value in _fields(payload, *entry):
                if f3 == 1 and w3 == 2:
                    key = payload[value[0]:value[1]].decode()
                elif f3 == 2 and w3 == 2:
                    feature = value
            if key is None:
                raise ValueError("feature map entry without a key")
            out[key] = np.zeros(0, np.float32)  # a Feature with no kind set reads as empty
            if feature is None:
                continue
            for f4, w4, value in _fields(payload, *feature):
                if w4 != 2:
                    continue
                if f4 == 1:
                    out[key] = _bytes_list(payload, *value)
                elif f4 == 2:
                    out[key] = _float_list(payload, *value)
                elif f4 == 3:
                    out[key] = _int64_list(payload, *value)
    return out


def _encode_varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _delimited(field: int, body: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(body)) + body


def _encode_feature(value) -> bytes:
    if isinstance(value, bytes):
        value = [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, bytes) for v in value):
        return _delimited(1, b"".join(_delimited(1, v) for v in value))
    arr = np.asarray(value)
    if arr.dtype == np.uint8:
        flat = arr.reshape(-1)
        wire = np.empty(3 * flat.size, np.uint8)
        wire[0::3], wire[1::3], wire[2::3] = 0x0A, 1, flat
        return _delimited(1, wire.tobytes())
    if arr.dtype.kind == "f":
        return _delimited(2, _delimited(1, arr.astype("<f4").tobytes()))
    if arr.dtype.kind in "iub":
        return _delimited(3, _delimited(1, b"".join(_encode_varint(int(v)) for v in arr.reshape(-1))))
    raise TypeError(f"cannot encode a feature of dtype {arr.dtype}")


def encode_example(features: dict) -> bytes:
    """Serialize a tf.train.Example, keys in sorted order.

    uint8 arrays become BytesLists of one-byte strings (row-major, the DeepMind layout);
    bytes or lists of bytes become BytesLists; float arrays FloatLists (packed float32);
    other integer arrays Int64Lists (packed).
    """
    entries = b"".join(
        _delimited(1, _delimited(1, key.encode()) + _delimited(2, _encode_feature(features[key])))
        for key in sorted(features)
    )
    return _delimited(1, entries)
