"""TFRecord reader/writer against an independent minimal writer (own CRC-32C, own protobuf encoding)."""
import gzip
import struct

import numpy as np
import pytest

from slotcov.data.mdsprites import load_tfrecord
from slotcov.data.tfrecord import BytesList, encode_example, frame_record, masked_crc, parse_example, read_records, write_records
from slotcov.errors import DataError

# ---- independent reference implementation -----------------------------------------------

_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def ref_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def ref_masked(data: bytes) -> int:
    crc = ref_crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def ref_varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def ref_ld(field: int, body: bytes) -> bytes:
    return ref_varint(field << 3 | 2) + ref_varint(len(body)) + body


def ref_example(features: dict, packed: bool = True) -> bytes:
    """features: name -> ("bytes", [bytes...]) | ("float", [floats]) | ("int64", [ints])."""
    entries = b""
    for key, (kind, values) in features.items():
        if kind == "bytes":
            feature = ref_ld(1, b"".join(ref_ld(1, v) for v in values))
        elif kind == "float" and packed:
            feature = ref_ld(2, ref_ld(1, struct.pack(f"<{len(values)}f", *values)))
        elif kind == "float":
            feature = ref_ld(2, b"".join(ref_varint(1 << 3 | 5) + struct.pack("<f", v) for v in values))
        elif packed:
            feature = ref_ld(3, ref_ld(1, b"".join(ref_varint(v) for v in values)))
        else:
            feature = ref_ld(3, b"".join(ref_varint(1 << 3 | 0) + ref_varint(v) for v in values))
        entries += ref_ld(1, ref_ld(1, key.encode()) + ref_ld(2, feature))
    return ref_ld(1, entries)


def ref_write(path, payloads, compress: bool) -> None:
    data = b""
    for p in payloads:
        length = struct.pack("<Q", len(p))
        data += length + struct.pack("<I", ref_masked(length)) + p + struct.pack("<I", ref_masked(p))
    path.write_bytes(gzip.compress(data) if compress else data)


def mdsprites_record(rng):
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = (rng.integers(0, 2, (64, 64, 5, 1)) * 255).astype(np.uint8)
    floats = {k: rng.random(5).astype(np.float32) for k in ("x", "y", "shape", "orientation", "scale", "visibility")}
    floats["color"] = rng.random((5, 3)).astype(np.float32)
    feats = {"image": ("bytes", [bytes([b]) for b in image.reshape(-1)]),
             "mask": ("bytes", [bytes([b]) for b in mask.reshape(-1)]),
             **{k: ("float", v.reshape(-1).tolist()) for k, v in floats.items()}}
    return ref_example(feats), dict(image=image, mask=mask, **floats)


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(0)
    return [mdsprites_record(rng) for _ in range(3)]


# ---- tests -------------------------------------------------------------------------------

def test_crc_matches_reference():
    assert ref_crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = np.random.default_rng(1).bytes(1000)
    assert masked_crc(data) == ref_masked(data)
    payload = b"hello tfrecord"
    assert frame_record(payload) == (struct.pack("<Q", len(payload)) + struct.pack("<I", ref_masked(struct.pack("<Q", len(payload))))
                                     + payload + struct.pack("<I", ref_masked(payload)))


@pytest.mark.parametrize("compress", [True, False])
def test_reads_independent_writer_exactly(tmp_path, records, compress):
    path = tmp_path / "fixture.tfrecords"
    ref_write(path, [p for p, _ in records], compress)
    got = list(read_records(path))
    assert [i for i, _ in got] == [0, 1, 2]
    assert [p for _, p in got] == [p for p, _ in records]
    data = load_tfrecord(path)
    for i, (_, want) in enumerate(records):
        assert np.array_equal(data["image"][i], want["image"])
        assert np.array_equal(data["mask"][i], want["mask"][..., 0].transpose(2, 0, 1))
        for k in ("x", "y", "shape", "orientation", "scale", "visibility", "color"):
            assert np.array_equal(data[k][i], want[k]), k
    part = load_tfrecord(path, start=1, count=1)
    assert part["image"].shape == (1, 64, 64, 3) and np.array_equal(part["image"][0], records[1][1]["image"])


@pytest.mark.parametrize("packed", [True, False])
def test_parse_general_wire_forms(packed):
    payload = ref_example({"b": ("bytes", [b"ab", b"", b"xyz"]), "f": ("float", [1.5, -2.0]),
                           "i": ("int64", [3, -7, 1 << 40])}, packed=packed)
    feats = parse_example(payload)
    assert isinstance(feats["b"], BytesList) and feats["b"].values() == [b"ab", b"", b"xyz"]
    assert feats["f"].dtype == np.float32 and feats["f"].tolist() == [1.5, -2.0]
    assert feats["i"].tolist() == [3, -7, 1 << 40]


def test_encoder_roundtrip_with_reference_parser_values():
    arr = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    ours = encode_example({"img": arr, "v": np.array([0.25, 4.0], np.float32), "n": np.array([5, -1])})
    ref = ref_example({"img": ("bytes", [bytes([b]) for b in range(12)]), "n": ("int64", [5, -1]),
                       "v": ("float", [0.25, 4.0])})
    assert ours == ref  # sorted keys, packed lists: byte-identical to the hand encoding


def test_write_records_roundtrip(tmp_path):
    payloads = [b"a" * n for n in (0, 1, 300)]
    for comp in ("gzip", None):
        path = tmp_path / f"w{comp}.tfrecords"
        assert write_records(path, payloads, compression=comp) == 3
        assert [p for _, p in read_records(path)] == payloads
        assert (path.read_bytes()[:2] == b"\x1f\x8b") == (comp == "gzip")


def _plain_fixture(tmp_path, records):
    path = tmp_path / "plain.tfrecords"
    ref_write(path, [p for p, _ in records], compress=False)
    return path, len(records[0][0])


def test_flipped_payload_byte(tmp_path, records):
    path, n0 = _plain_fixture(tmp_path, records)
    raw = bytearray(path.read_bytes())
    raw[(12 + n0 + 4) + 12 + 500] ^= 0x01  # inside record 1's payload
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"plain\.tfrecords: record 1: payload CRC"):
        list(read_records(path))


def test_flipped_length_byte(tmp_path, records):
    path, n0 = _plain_fixture(tmp_path, records)
    raw = bytearray(path.read_bytes())
    raw[(12 + n0 + 4) + 2] ^= 0x10  # record 1's length field
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"plain\.tfrecords: record 1: length CRC"):
        list(read_records(path))


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_file(tmp_path, records, compress):
    path = tmp_path / "cut.tfrecords"
    ref_write(path, [p for p, _ in records], compress)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - (40 if compress else 1000)])
    with pytest.raises(DataError, match=r"cut\.tfrecords: record 2"):
        list(read_records(path))


def test_wrong_feature_size(tmp_path):
    good, _ = mdsprites_record(np.random.default_rng(2))
    bad = ref_example({"image": ("bytes", [b"\x00"] * 100), "mask": ("bytes", [b"\x00"] * 20480),
                       **{k: ("float", [0.0] * 5) for k in ("x", "y", "shape", "orientation", "scale", "visibility")},
                       "color": ("float", [0.0] * 15)})
    path = tmp_path / "sizes.tfrecords"
    ref_write(path, [good, bad], compress=True)
    with pytest.raises(DataError, match=r"sizes\.tfrecords: record 1: feature 'image'"):
        load_tfrecord(path)
    assert load_tfrecord(path, start=0, count=1)["image"].shape == (1, 64, 64, 3)
    short = tmp_path / "short.tfrecords"
    ref_write(short, [good], compress=True)
    with pytest.raises(DataError, match=r"short\.tfrecords: holds only 1 records"):
        load_tfrecord(short, start=0, count=5)


def test_replica_file_passes_reference_framing(tmp_path):
    from slotcov.data.mdsprites import make_mdsprites

    path = make_mdsprites(2, seed=0, out_path=tmp_path / "r.tfrecords", workers=1)
    raw, pos, n = gzip.decompress(path.read_bytes()), 0, 0
    while pos < len(raw):
        length_bytes = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        assert struct.unpack("<I", raw[pos + 8:pos + 12])[0] == ref_masked(length_bytes)
        payload = raw[pos + 12:pos + 12 + length]
        assert struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])[0] == ref_masked(payload)
        pos, n = pos + 16 + length, n + 1
    assert n == 2
