"""Resumable, atomic, checksummed downloads: the one code path for every real input file.

A download streams into `<out>.part`, resuming with an HTTP Range request when a partial
file is there (a server that ignores Range restarts it from zero). The final name appears
only after the sha256 matched: a pinned hash when given, else the hash that the first
download of that URL recorded in the lock file. The lock file is plain text, one
`sha256 size url` line per URL, appended under an flock so parallel downloads are safe.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import time
from pathlib import Path

import requests
from tqdm import tqdm

from slotcov.errors import DataError, UserError
from slotcov.io import sha256_file

# Known sources: name -> url, pinned sha256 (None: the lock file records it on first download),
# and the default output path under the repository root (docs/design.md).
SOURCES = {
    "cmdsprites": dict(
        url="https://storage.googleapis.com/multi-object-datasets/multi_dsprites/"
        "multi_dsprites_colored_on_colored.tfrecords",
        sha256=None,
        out="data/raw/cmdsprites/multi_dsprites_colored_on_colored.tfrecords",
    ),
    "coco_train2017": dict(
        url="http://images.cocodataset.org/zips/train2017.zip",
        sha256=None,
        out="data/raw/coco/train2017.zip",
    ),
    "coco_val2017": dict(
        url="http://images.cocodataset.org/zips/val2017.zip",
        sha256=None,
        out="data/raw/coco/val2017.zip",
    ),
    "coco_annotations2017": dict(
        url="http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        sha256=None,
        out="data/raw/coco/annotations_trainval2017.zip",
    ),
    "dino_vitb16": dict(
        url="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
        sha256=None,
        out="data/raw/weights/dino_vitbase16_pretrain.pth",
    ),
}

LOCK_HEADER = "# slotcov download lock: one 'sha256 size url' line per URL, recorded on first download.\n"


def read_lock(lock_file: str | os.PathLike) -> dict[str, dict]:
    """url -> {"sha256", "size"} from a lock file (missing file: empty). The first line per URL wins."""
    entries: dict[str, dict] = {}
    path = Path(lock_file)
    if not path.exists():
        return entries
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=2)
        if len(parts) != 3 or len(parts[0]) != 64 or not parts[1].isdigit():
            raise DataError(f"{path}:{n}: bad lock line {line!r}; expected 'sha256 size url' (fix or delete the line)")
        entries.setdefault(parts[2], {"sha256": parts[0], "size": int(parts[1])})
    return entries


def record_lock(lock_file: str | os.PathLike, url: str, sha256: str, size: int) -> None:
    """Append `sha256 size url` to the lock file unless the URL is already there."""
    path = Path(lock_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # parallel downloads: re-read and append under one lock
        if url in read_lock(path):
            return
        if fh.tell() == 0:
            fh.write(LOCK_HEADER)
        fh.write(f"{sha256} {size} {url}\n")
        fh.flush()
        os.fsync(fh.fileno())


def _fetch_to_part(url: str, part: Path, chunk: int, timeout: float) -> None:
    """Stream `url` into `part`, resuming from its current size when the server honours Range."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        if resp.status_code == 416:  # nothing left to fetch: the partial already holds the whole file
            return
        resp.raise_for_status()
        if offset and resp.status_code != 206:  # Range ignored: the body is the whole file again
            offset = 0
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if offset else "wb") as fh, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name[: -len(".part")], leave=False,
        ) as bar:
            for block in resp.iter_content(chunk_size=chunk):
                fh.write(block)
                bar.update(len(block))
            fh.flush()
            os.fsync(fh.fileno())
        if total is not None and part.stat().st_size != total:
            raise requests.ConnectionError(f"{url}: got {part.stat().st_size} of {total} bytes")


def download(url: str, out_path: str | os.PathLike, sha256: str | None = None,
             lock_file: str | os.PathLike | None = "data/checksums.lock", chunk: int = 1 << 20,
             retries: int = 5, timeout: float = 60.0) -> Path:
    """Download `url` to `out_path` (resumable, atomic, checksummed) and return the path.

    Checksum: `sha256` when pinned, else the lock-file entry for `url`; with neither, the
    first download records its hash and size in the lock file. A mismatch removes the bad
    partial and raises DataError. Connection errors are retried `retries` times, resuming.
    """
    out = Path(out_path)
    part = out.with_name(out.name + ".part")
    locked = read_lock(lock_file).get(url) if lock_file else None
    if sha256 and locked and locked["sha256"] != sha256.lower():
        raise DataError(f"{url}: pinned sha256 {sha256} differs from {locked['sha256']} in {lock_file}; "
                        "fix the pin or the lock line")
    expected = (sha256 or "").lower() or (locked["sha256"] if locked else None)

    if out.exists():  # only ever renamed into place after a checksum matched; check it again
        actual = sha256_file(out)
        if expected and actual != expected:
            raise DataError(f"{out}: sha256 {actual} but expected {expected}; delete the file to download it again")
        if lock_file and not locked:
            record_lock(lock_file, url, actual, out.stat().st_size)
        return out

    out.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _fetch_to_part(url, part, chunk, timeout)
            break
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            if attempt == retries:
                raise DataError(f"{url}: download failed after {retries + 1} attempts ({err}); "
                                f"run again to resume from {part}") from err
            time.sleep(min(2**attempt, 30))
        except requests.HTTPError as err:
            raise DataError(f"{url}: {err}; check the URL or your network access") from err

    actual = sha256_file(part)
    size = part.stat().st_size
    if expected and actual != expected:
        part.unlink()
        raise DataError(f"{out}: sha256 mismatch for {url}: expected {expected}, got {actual}; "
                        "the partial file was removed, run again to download afresh")
    if locked and locked["size"] != size:
        part.unlink()
        raise DataError(f"{out}: size {size} but {lock_file} records {locked['size']} for {url}; partial removed")
    os.replace(part, out)
    if lock_file and not locked:
        record_lock(lock_file, url, actual, size)
    return out


def cli_download(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slotcov download", description=download.__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="URL to download")
    src.add_argument("--name", choices=sorted(SOURCES), help="a known source (sets URL, pin and default --out)")
    parser.add_argument("--out", help="output file (default for --name: the path in docs/design.md)")
    parser.add_argument("--sha256", help="pinned sha256 hex digest")
    parser.add_argument("--lock", default="data/checksums.lock", help="lock file recording url -> sha256, size")
    parser.add_argument("--retries", type=int, default=5, help="connection retries (each resumes)")
    args = parser.parse_args(argv)
    url, sha, out = args.url, args.sha256, args.out
    if args.name:
        source = SOURCES[args.name]
        url, sha, out = source["url"], sha or source["sha256"], out or source["out"]
    if not out:
        raise UserError("--out is required with --url; give the output file path")
    path = download(url, out, sha256=sha, lock_file=args.lock, retries=args.retries)
    print(path)
    return 0
