"""ColoredMDSprites (multi_dsprites, variant colored_on_colored): reader, replica, split converter.

The real file (DeepMind multi_object_datasets; docs/fidelity.md) is one GZIP TFRecord of
tf.train.Example records with features
    image  [64,64,3]   uint8, a BytesList of 12288 one-byte strings (H,W,C)
    mask   [64,64,5,1] uint8 0/255, a BytesList of 20480 one-byte strings (H,W,entity)
    x, y, shape, orientation, scale, visibility  float32 [5]
    color  float32 [5,3]
Entity 0 is the background; 1..4 are sprites; unused slots have visibility 0 and empty masks.

The replica (`make_mdsprites`) renders scenes by the same generative process and writes the
same format, so every later step runs unchanged on either. Replica geometry (ours): a sprite's
centre is at pixel 8 + 48*x across and 8 + 48*y down (y = 0 at the top); at scale 1 a square is
19 px wide, an ellipse 22.8 x 11.4 px, a heart about 22 x 22 px, all shrinking linearly with
scale; orientation rotates the shape counter-clockwise on screen. The size is set so that one
sprite, averaged over the dSprites latent grid, covers 4.3% of the image: the pixel mean of the
binary dSprites images (0.043, std 0.202 = sqrt(0.043 * 0.957)), which multi_dsprites draws its
sprites from. (An earlier replica used squares of 14 px, 2.4% per sprite; its scenes were
harder than the real ones.) Sprites are binary (no anti-aliasing), so every pixel of an
entity has exactly its colour, round(255*color). Colours are drawn as k/255 (k uniform in
0..255). A sprite hidden entirely by later sprites keeps its properties but gets visibility 0.
The file holds one gzip member per CHUNK records (a valid multi-member gzip stream).

`convert_split` turns a range of records into memory-mappable .npy arrays (one directory per
split) that `MDSpritesArrays` serves to the trainer and the prober without decoding.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slotcov.data.tfrecord import BytesList, encode_example, gzip_member, parse_example, read_records
from slotcov.errors import DataError, UserError
from slotcov.io import atomic_path, replace_dir, sha256_file, write_json

SIZE = 64
NUM_ENTITIES = 5
FLOAT_FEATURES = {"x": (5,), "y": (5,), "shape": (5,), "orientation": (5,), "scale": (5,),
                  "visibility": (5,), "color": (5, 3)}
ARRAYS = ("image", "ids") + tuple(FLOAT_FEATURES)

# dSprites latent grids
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.arange(40) * (2 * np.pi / 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
SHAPES = {1: "square", 2: "ellipse", 3: "heart"}

MARGIN, SPAN, HALF = 8.0, 48.0, 9.5  # centre = MARGIN + SPAN*pos px; half-size HALF*scale px
CHUNK = 250  # records per gzip member / worker task; fixed so the file bytes never depend on workers


# ---- reading -----------------------------------------------------------------------------

def _size(value) -> int:
    return value.lengths.size if isinstance(value, BytesList) else value.size


def decode_record(payload: bytes, path, index: int) -> dict[str, np.ndarray]:
    """One record as arrays (image [64,64,3], mask [5,64,64], floats); DataError if malformed."""
    where = f"{path}: record {index}"
    try:
        feats = parse_example(payload)
    except ValueError as err:
        raise DataError(f"{where}: not a valid tf.train.Example ({err})") from err
    out = {}
    for key, shape in (("image", (SIZE, SIZE, 3)), ("mask", (SIZE, SIZE, NUM_ENTITIES, 1))):
        value = feats.get(key)
        n = math.prod(shape)
        if not isinstance(value, BytesList) or value.data.size != n or value.lengths.size != n:
            got = "missing" if value is None else f"{type(value).__name__} of {_size(value)} values"
            raise DataError(f"{where}: feature '{key}' should be {n} one-byte strings, got {got}")
        out[key] = value.data.reshape(shape)
    out["mask"] = out["mask"][..., 0].transpose(2, 0, 1)
    for key, shape in FLOAT_FEATURES.items():
        value = feats.get(key)
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.size != math.prod(shape):
            got = "missing" if value is None else f"{type(value).__name__} of {_size(value)} values"
            raise DataError(f"{where}: feature '{key}' should be {math.prod(shape)} floats, got {got}")
        out[key] = value.reshape(shape)
    return out


def iter_tfrecord(path, start: int = 0, count: int | None = None):
    """Yield decoded records start..start+count-1 of a ColoredMDSprites TFRecord file."""
    n = 0
    for index, payload in read_records(path, start, count):
        yield decode_record(payload, path, index)
        n += 1
    if count is not None and n < count:
        raise DataError(f"{path}: holds only {start + n} records, asked for records {start}..{start + count - 1}; "
                        "use a smaller --start/--count or the full file")


def load_tfrecord(path, start: int = 0, count: int | None = None) -> dict[str, np.ndarray]:
    """Records start..start+count-1 stacked: image [N,64,64,3] uint8, mask [N,5,64,64] uint8 (0/255),
    x, y, shape, orientation, scale, visibility [N,5] float32, color [N,5,3] float32."""
    records = list(iter_tfrecord(path, start, count))
    keys = ("image", "mask") + tuple(FLOAT_FEATURES)
    if not records:
        return {"image": np.zeros((0, SIZE, SIZE, 3), np.uint8), "mask": np.zeros((0, NUM_ENTITIES, SIZE, SIZE), np.uint8),
                **{k: np.zeros((0,) + s, np.float32) for k, s in FLOAT_FEATURES.items()}}
    return {k: np.stack([r[k] for r in records]) for k in keys}


# ---- replica -----------------------------------------------------------------------------

_ENTITY_IDS = np.arange(NUM_ENTITIES, dtype=np.uint8)[:, None]
_ROWS, _COLS = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def sprite_mask(shape: int, scale: float, orientation: float, x: float, y: float) -> np.ndarray:
    """Boolean [64,64] coverage of one sprite (dSprites shape code 1/2/3)."""
    h = HALF * float(scale)
    cx, cy = MARGIN + SPAN * float(x), MARGIN + SPAN * float(y)
    # every shape lies within 1.5 half-sizes of its centre: evaluate only that window
    r = 1.5 * h + 1
    r0, r1 = max(int(cy - r), 0), min(int(cy + r) + 1, SIZE)
    c0, c1 = max(int(cx - r), 0), min(int(cx + r) + 1, SIZE)
    dx = _COLS[r0:r1, c0:c1] - cx
    dy = _ROWS[r0:r1, c0:c1] - cy
    c, s = np.cos(float(orientation)) / h, np.sin(float(orientation)) / h
    # shape coordinates in units of the half-size: u to the right, w up
    u = c * dx - s * dy
    w = -s * dx - c * dy
    if shape == 1:
        inside = (np.abs(u) <= 1) & (np.abs(w) <= 1)
    elif shape == 2:
        inside = u * u * (1 / 1.44) + w * w * (1 / 0.36) <= 1
    elif shape == 3:
        w += 0.12  # centre the heart curve's bounding box
        u2, w2 = u * u, w * w
        q = u2 + w2 - 1
        inside = q * q * q <= u2 * w2 * w
    else:
        raise ValueError(f"unknown shape code {shape}")
    out = np.zeros((SIZE, SIZE), bool)
    out[r0:r1, c0:c1] = inside
    return out


def render_scene(seed: int, index: int) -> dict[str, np.ndarray]:
    """Scene `index` of the replica with `seed`: the arrays of one record (mask [64,64,5,1] as stored)."""
    rng = np.random.default_rng([seed, index])
    n = int(rng.integers(1, 5))
    props = {k: np.zeros(s, np.float32) for k, s in FLOAT_FEATURES.items()}
    props["color"][0] = rng.integers(0, 256, 3) / 255
    ids = np.zeros((SIZE, SIZE), np.uint8)
    for k in range(1, n + 1):
        props["shape"][k] = rng.integers(1, 4)
        props["scale"][k] = SCALES[rng.integers(len(SCALES))]
        props["orientation"][k] = ORIENTATIONS[rng.integers(len(ORIENTATIONS))]
        props["x"][k] = POSITIONS[rng.integers(len(POSITIONS))]
        props["y"][k] = POSITIONS[rng.integers(len(POSITIONS))]
        props["color"][k] = rng.integers(0, 256, 3) / 255
        ids[sprite_mask(int(props["shape"][k]), props["scale"][k], props["orientation"][k],
                        props["x"][k], props["y"][k])] = k  # painter's order: later sprites occlude
    props["visibility"][:] = np.bincount(ids.ravel(), minlength=NUM_ENTITIES) > 0
    palette = np.rint(props["color"] * 255).astype(np.uint8)
    onehot = ids[None] == _ENTITY_IDS[:, :, None]  # [5,64,64]
    mask = (onehot.transpose(1, 2, 0)[..., None] * np.uint8(255)).astype(np.uint8)  # [64,64,5,1] as stored
    return {"image": palette[ids], "mask": mask, **props}


def _render_chunk(args) -> bytes:
    seed, start, stop, level = args
    return gzip_member((encode_example(render_scene(seed, i)) for i in range(start, stop)), level)


def make_mdsprites(n: int, seed: int, out_path, workers: int | None = None, level: int = 1) -> Path:
    """Render `n` replica scenes into a GZIP TFRecord at `out_path` (atomically); returns the path.

    Scene i depends only on (seed, i); the file is one gzip member per CHUNK records, so its
    bytes do not depend on `workers` (default: all cores).
    """
    if n < 1:
        raise UserError(f"--n must be positive, got {n}")
    workers = workers or os.cpu_count() or 1
    tasks = [(seed, s, min(s + CHUNK, n), level) for s in range(0, n, CHUNK)]
    out_path = Path(out_path)
    # fork: workers need only numpy and zlib, while a spawned one would re-import torch
    # (pulled in by slotcov.data) for seconds
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out_path))
        fh = stack.enter_context(open(tmp, "wb"))
        bar = stack.enter_context(tqdm(total=n, desc="make-mdsprites", unit="rec"))
        if workers == 1:
            members = map(_render_chunk, tasks)
        else:
            members = stack.enter_context(ProcessPoolExecutor(workers, mp_context=ctx)).map(_render_chunk, tasks)
        for (_, start, stop, _), member in zip(tasks, members):
            fh.write(member)
            bar.update(stop - start)
    return out_path


# ---- converted split ---------------------------------------------------------------------

def downsample(image: np.ndarray, ids: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Image [64,64,3] by area averaging (rounded); ids [64,64] by the mode of each block
    (ties go to the lowest id, i.e. to the background first)."""
    if resolution == SIZE:
        return image, ids
    f = SIZE // resolution
    img = image.reshape(resolution, f, resolution, f, 3).mean(axis=(1, 3))
    blocks = ids.reshape(resolution, f, resolution, f).transpose(0, 2, 1, 3).reshape(resolution, resolution, f * f)
    counts = (blocks[..., None] == np.arange(NUM_ENTITIES, dtype=np.uint8)).sum(axis=2)
    return np.rint(img).astype(np.uint8), counts.argmax(axis=-1).astype(np.uint8)


def convert_split(tfrecord, start: int, count: int, out_dir, resolution: int = 64) -> Path:
    """Write records start..start+count-1 as .npy arrays + meta.json into `out_dir` (atomically).

    Arrays: image uint8 [N,R,R,3], ids uint8 [N,R,R] (arg-max of the masks, 0 = background),
    x, y, shape, orientation, scale, visibility float32 [N,5], color float32 [N,5,3].
    """
    if resolution < 1 or SIZE % resolution:
        raise UserError(f"--resolution must divide {SIZE} (64, 32, 16, ...), got {resolution}")
    if start < 0 or count < 1:
        raise UserError(f"--start must be >= 0 and --count >= 1, got {start} and {count}")
    if not Path(tfrecord).is_file():
        raise DataError(f"{tfrecord}: no such TFRecord file; download or generate it first")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        shapes = {"image": (count, resolution, resolution, 3), "ids": (count, resolution, resolution),
                  **{k: (count,) + s for k, s in FLOAT_FEATURES.items()}}
        arrays = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+",
                                               dtype=np.uint8 if k in ("image", "ids") else np.float32, shape=s)
                  for k, s in shapes.items()}
        records = iter_tfrecord(tfrecord, start, count)
        for i, rec in enumerate(tqdm(records, total=count, desc="convert-mdsprites", unit="rec")):
            ids = rec["mask"].argmax(axis=0).astype(np.uint8)
            arrays["image"][i], arrays["ids"][i] = downsample(rec["image"], ids, resolution)
            for k in FLOAT_FEATURES:
                arrays[k][i] = rec[k]
        for a in arrays.values():
            a.flush()
        arrays.clear()
        meta = {"count": count, "start": start, "resolution": resolution, "source": str(Path(tfrecord).resolve()),
                "ids_downsampling": "mode", "image_downsampling": "area",
                "arrays": {k: {"shape": list(shapes[k]), "bytes": (tmp / f"{k}.npy").stat().st_size,
                               "sha256": sha256_file(tmp / f"{k}.npy")} for k in ARRAYS}}
        write_json(tmp / "meta.json", meta)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def open_split(data_dir, features_dir=None) -> "MDSpritesArrays":
    """A converted split as the trainer's dataset object (slotcov.data.open_dataset); no features."""
    return MDSpritesArrays(data_dir)


class MDSpritesArrays:
    """A converted split served from memory-mapped arrays (the dataset interface of docs/design.md)."""

    def __init__(self, root):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path}: missing; convert the split with `slotcov convert-mdsprites --out {self.root}`")
        self.meta = json.loads(meta_path.read_text())
        self.arrays = {}
        for k in ARRAYS:
            path = self.root / f"{k}.npy"
            try:
                self.arrays[k] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise DataError(f"{path}: unreadable ({err}); re-run `slotcov convert-mdsprites`") from err
            if list(self.arrays[k].shape) != self.meta["arrays"][k]["shape"]:
                raise DataError(f"{path}: shape {self.arrays[k].shape} does not match meta.json; "
                                "re-run `slotcov convert-mdsprites`")
        self.resolution = int(self.meta["resolution"])

    def __len__(self) -> int:
        return int(self.meta["count"])

    def verify(self) -> None:
        """Check every array against the sha256 recorded in meta.json (reads all bytes)."""
        for k in ARRAYS:
            if sha256_file(self.root / f"{k}.npy") != self.meta["arrays"][k]["sha256"]:
                raise DataError(f"{self.root / (k + '.npy')}: sha256 differs from meta.json; re-run `slotcov convert-mdsprites`")

    def batch(self, idx: np.ndarray) -> dict:
        """image float32 [B,3,R,R] in [0,1]; true_ids int64 [B,R,R] (0 = background, ignored)."""
        import torch

        idx = np.asarray(idx)
        image = torch.from_numpy(np.ascontiguousarray(self.arrays["image"][idx]))
        ids = torch.from_numpy(self.arrays["ids"][idx].astype(np.int64))
        return {"image": image.permute(0, 3, 1, 2).float().div_(255.0).contiguous(), "true_ids": ids}

    def objects(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Per-entity properties for probing: x, y, shape, scale, orientation, visibility [B,5], color [B,5,3]."""
        idx = np.asarray(idx)
        return {k: np.asarray(self.arrays[k][idx]) for k in FLOAT_FEATURES}


# ---- CLI ---------------------------------------------------------------------------------

def cli_make_mdsprites(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slotcov make-mdsprites", description=make_mdsprites.__doc__)
    p.add_argument("--n", type=int, required=True, help="number of scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .tfrecords file (GZIP)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--level", type=int, default=1, help="gzip level 1-9")
    a = p.parse_args(argv)
    if a.seed < 0:
        raise UserError(f"--seed must be >= 0, got {a.seed}")
    print(make_mdsprites(a.n, a.seed, a.out, workers=a.workers, level=a.level))
    return 0


def cli_convert_mdsprites(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slotcov convert-mdsprites", description=convert_split.__doc__)
    p.add_argument("--tfrecord", required=True, help="ColoredMDSprites TFRecord (real or replica)")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--out", required=True, help="output directory")
    a = p.parse_args(argv)
    print(convert_split(a.tfrecord, a.start, a.count, a.out, a.resolution))
    return 0
