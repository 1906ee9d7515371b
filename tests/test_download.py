"""download(): resume over HTTP Range, atomic final name, sha256 pin and lock file."""
import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from slotcov.data.download import cli_download, download, read_lock
from slotcov.errors import DataError

BODY = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(BODY).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves BODY; server.mode: 'ok', 'cut' (once: stop after half), 'corrupt', 'norange'."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        body = BODY if srv.mode != "corrupt" else BODY[:-1] + bytes([BODY[-1] ^ 1])
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and srv.mode != "norange":
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if srv.mode == "cut" and srv.cuts > 0:
            srv.cuts -= 1
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.mode, srv.cuts, srv.requests = "ok", 0, []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_cut_then_resume(server, tmp_path):
    out, lock = tmp_path / "file.bin", tmp_path / "checksums.lock"
    server.mode, server.cuts = "cut", 1
    with pytest.raises(DataError, match="resume"):  # small chunks: bytes before the cut reach the disk
        download(server.url, out, sha256=SHA, lock_file=lock, retries=0, chunk=4096)
    part = tmp_path / "file.bin.part"
    assert not out.exists() and 0 < part.stat().st_size < len(BODY)
    half = part.stat().st_size
    download(server.url, out, sha256=SHA, lock_file=lock, retries=0)
    assert out.read_bytes() == BODY and not part.exists()
    assert server.requests[-1] == f"bytes={half}-"  # really resumed, not restarted


def test_retry_resumes_within_one_call(server, tmp_path, monkeypatch):
    monkeypatch.setattr("slotcov.data.download.time.sleep", lambda s: None)
    server.mode, server.cuts = "cut", 2
    out = download(server.url, tmp_path / "f.bin", lock_file=tmp_path / "lock", retries=3, chunk=4096)
    assert out.read_bytes() == BODY
    assert len(server.requests) == 3 and server.requests[0] is None
    assert all(r and r.startswith("bytes=") for r in server.requests[1:])


def test_corrupt_body_raises_and_leaves_nothing(server, tmp_path):
    server.mode = "corrupt"
    out = tmp_path / "file.bin"
    with pytest.raises(DataError) as err:
        download(server.url, out, sha256=SHA, lock_file=tmp_path / "lock")
    msg = str(err.value)
    assert "file.bin" in msg and SHA in msg and hashlib.sha256(BODY[:-1] + bytes([BODY[-1] ^ 1])).hexdigest() in msg
    assert list(tmp_path.iterdir()) == []


def test_lock_records_then_detects_mismatch(server, tmp_path):
    lock = tmp_path / "checksums.lock"
    download(server.url, tmp_path / "a.bin", lock_file=lock)
    assert read_lock(lock) == {server.url: {"sha256": SHA, "size": len(BODY)}}
    assert lock.read_text().startswith("#")
    server.mode = "corrupt"
    with pytest.raises(DataError, match=SHA):
        download(server.url, tmp_path / "b.bin", lock_file=lock)
    assert not (tmp_path / "b.bin").exists() and not (tmp_path / "b.bin.part").exists()
    # an existing final file is re-checked against the lock too
    (tmp_path / "c.bin").write_bytes(b"tampered")
    with pytest.raises(DataError, match="c.bin"):
        download(server.url, tmp_path / "c.bin", lock_file=lock)


def test_server_without_range_restarts_cleanly(server, tmp_path):
    out = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes from a different attempt")
    server.mode = "norange"
    download(server.url, out, sha256=SHA, lock_file=None)
    assert out.read_bytes() == BODY
    assert server.requests == ["bytes=36-"]


def test_complete_part_gets_416_and_finishes(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(BODY)
    download(server.url, tmp_path / "file.bin", sha256=SHA, lock_file=None)
    assert (tmp_path / "file.bin").read_bytes() == BODY


def test_cli_and_named_source(server, tmp_path, monkeypatch):
    lock = tmp_path / "lock"
    assert cli_download(["--url", server.url, "--out", str(tmp_path / "x.bin"), "--lock", str(lock)]) == 0
    assert (tmp_path / "x.bin").read_bytes() == BODY
    monkeypatch.setitem(
        __import__("slotcov.data.download", fromlist=["SOURCES"]).SOURCES,
        "fixture", dict(url=server.url, sha256=SHA, out=str(tmp_path / "named.bin")),
    )
    assert cli_download(["--name", "fixture", "--lock", str(lock)]) == 0
    assert (tmp_path / "named.bin").read_bytes() == BODY
