"""Input fuzzing: flipped bytes and truncations of a TFRecord, a feature store and a download body.

Each mutation must either raise DataError naming the file (and the record or chunk), or read
back exactly the original data: never a silent wrong result. Outcomes are counted and printed.
"""
import hashlib
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from slotcov.data.download import download
from slotcov.data.features import FeatureStore, extract_features
from slotcov.data.mdsprites import load_tfrecord, make_mdsprites
from slotcov.data.tfrecord import read_records, write_records
from slotcov.errors import DataError

pytestmark = pytest.mark.fault


def _mutate(data: bytes, rng) -> tuple[bytes, str]:
    """Flip 1-3 random bytes, or truncate at a random position."""
    if rng.random() < 0.3:
        cut = int(rng.integers(0, len(data)))
        return data[:cut], f"truncated at {cut}"
    buf = bytearray(data)
    where = rng.choice(len(buf), size=int(rng.integers(1, 4)), replace=False)
    for pos in where:
        buf[pos] ^= int(rng.integers(1, 256))
    return bytes(buf), f"flipped {sorted(where.tolist())}"


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("compression", ["gzip", None])
def test_tfrecord_fuzz(tmp_path, compression):
    """100 mutations each of a gzip and a plain 3-record ColoredMDSprites file, read with the record count
    the pipeline always passes (convert-mdsprites --count)."""
    src = make_mdsprites(3, 0, tmp_path / "gz.tfrecords", workers=1)
    if compression is None:
        src = tmp_path / "plain.tfrecords"
        write_records(src, [p for _, p in read_records(tmp_path / "gz.tfrecords")], compression=None)
    data = src.read_bytes()
    original = load_tfrecord(src, 0, 3)
    rng = np.random.default_rng(0 if compression else 1)
    outcomes = Counter()
    bad = tmp_path / "bad.tfrecords"
    for _ in range(100):
        mutated, what = _mutate(data, rng)
        bad.write_bytes(mutated)
        try:
            got = load_tfrecord(bad, 0, 3)
        except DataError as err:
            msg = str(err)
            assert msg.startswith(str(bad)) and ("record " in msg or "records" in msg), (what, msg)
            outcomes["DataError"] += 1
            continue
        assert _same(got, original), f"{what}: silent wrong result"
        outcomes["identical"] += 1  # e.g. a flip in a gzip header field no reader uses
    print(f"tfrecord {compression}: {dict(outcomes)} of 100 mutations ({len(data)} bytes)")
    assert sum(outcomes.values()) == 100 and outcomes["DataError"] >= 50


def test_feature_store_fuzz(tmp_path):
    """100 mutations of a feature store's files (tokens, ids, manifest), opened with verify=True."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=1, num_heads=2, num_classes=0).eval()
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    good = extract_features(vit, images, tmp_path / "good", batch_size=4, device="cpu", chunk=4,
                            image_ids=np.arange(100, 112))
    ref = FeatureStore(good, verify=True)
    tokens, ids = ref[:], ref.image_ids.copy()
    rng = np.random.default_rng(2)
    outcomes = Counter()
    files = ["tokens.npy"] * 6 + ["image_ids.npy"] * 2 + ["manifest.json"] * 2
    for trial in range(100):
        store = tmp_path / f"s{trial % 2}"
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(good, store)
        name = files[int(rng.integers(len(files)))]
        mutated, what = _mutate((store / name).read_bytes(), rng)
        (store / name).write_bytes(mutated)
        try:
            got = FeatureStore(store, verify=True)
        except DataError as err:
            assert str(err).startswith(str(store)), (name, what, str(err))
            if name == "tokens.npy" and "chunk" in str(err):
                assert "chunk " in str(err) and "rows " in str(err)
            outcomes[f"DataError ({name})"] += 1
            continue
        assert np.array_equal(got[:], tokens) and np.array_equal(got.image_ids, ids), f"{name} {what}: silent"
        outcomes[f"identical ({name})"] += 1
    print(f"feature store: {dict(outcomes)} of 100 mutations")
    assert sum(outcomes.values()) == 100


BODY = np.random.default_rng(3).integers(0, 256, 50_000, dtype=np.uint8).tobytes()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.server.body
        start = int(self.headers.get("Range", "bytes=0-")[6:-1])  # "bytes=N-": resume from N
        if start >= len(body) > 0:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])


def test_download_fuzz(tmp_path):
    """40 mutated bodies served for a download with a pinned sha256, then a stray garbage .part file."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/body.bin"
    sha = hashlib.sha256(BODY).hexdigest()
    rng = np.random.default_rng(4)
    outcomes = Counter()
    try:
        for trial in range(40):
            srv.body, what = _mutate(BODY, rng)
            out = tmp_path / f"d{trial}" / "body.bin"
            try:
                download(url, out, sha256=sha, lock_file=None, retries=0)
            except DataError as err:
                assert str(out) in str(err) and "sha256" in str(err), (what, str(err))
                assert not out.exists() and not out.with_name("body.bin.part").exists()
                outcomes["DataError"] += 1
                continue
            assert out.read_bytes() == BODY, f"{what}: silent wrong download"
            outcomes["identical"] += 1
        # a stray partial from an earlier run whose bytes are wrong is never trusted
        srv.body = BODY
        out = tmp_path / "stray" / "body.bin"
        out.parent.mkdir()
        out.with_name("body.bin.part").write_bytes(b"garbage" * 100)
        with pytest.raises(DataError, match="sha256 mismatch"):
            download(url, out, sha256=sha, lock_file=None, retries=0)
        assert not out.exists()
        assert download(url, out, sha256=sha, lock_file=None, retries=0).read_bytes() == BODY
    finally:
        srv.shutdown()
        srv.server_close()
    print(f"download: {dict(outcomes)} of 40 mutated bodies")
    assert outcomes["DataError"] == 40  # every mutation of these random bytes changes the hash
