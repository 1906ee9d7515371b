"""COCO 2017: FG-ARI targets, the two ways of squaring images, prepared splits, and a synthetic stand-in.

Crops (`data.coco.pipelines.<name>.crop`, docs/fidelity.md "COCO pipelines and FG-ARI"):
  center   image: short side 224 + centre crop 224; targets: short side 320 + centre crop 320
           (DINOSAUR's reference pipeline).
  stretch  image stretched to 224x224; targets stretched to 128x128 (the authors').
In both, `image128` (the reconstruction target) is the ORIGINAL image brought to 128x128 the same
way (the authors' too: their dataset already yields 128x128 images, so the 128x128
`F.interpolate` of their train.py changes nothing). `interpolation` (bicubic: DINOSAUR; bilinear:
the authors') resizes both images, and `resize` says how:
  pil     the uint8 PIL image, which PIL antialiases when shrinking (the authors' torchvision
          `Resize` on PIL images);
  tensor  the image as a float tensor in [0,1], no antialias, clamped to [0,1] (DINOSAUR's
          evaluation transform: ToTensor, tensor Resize, clamp), then rounded to uint8 for storage;
          the id maps of `mask_resize: ids` with nearest-exact on a tensor, as DINOSAUR's masks.
`skip_empty` drops the images without a non-crowd annotation, as the authors' feature
extraction did (DINOSAUR keeps them; they have no FG-ARI score either way).

FG-ARI targets (0 = ignored, 1..M = objects), `mask_resize`:
  ids        the id map is computed at the ORIGINAL resolution, overlaps already set to 0, and
             only then resized with nearest neighbour (pixel centres). With `resize: tensor` the same
             as resizing each instance mask with nearest-exact and ignoring overlaps afterwards
             (DINOSAUR); PIL's nearest rounds a centre lying exactly on a source pixel's edge the other way.
  instances  each instance mask resized on its own as a uint8 tensor (bilinear, no antialias,
             rounded to 0/1: torchvision's tensor `Resize` of 2023), then the pixels on in more
             than one resized mask set to 0 (the authors' `COCO2017Embeddings.load_mask`).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from numpy.lib.format import open_memmap
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torchvision.transforms import InterpolationMode
from tqdm import tqdm

from slotcov.errors import DataError, UserError
from slotcov.io import replace_dir, sha256_file, write_json

ARRAYS = ("image224", "image128", "true_ids", "image_ids")  # the .npy files of a prepared split
TARGET_SIZE = {"center": 320, "stretch": 128}  # crop -> side of the FG-ARI target masks
INTERPOLATION = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}
MASK_RESIZE = ("ids", "instances")
RESIZE = ("pil", "tensor")
SYNTHETIC_DESCRIPTION = "slotcov synthetic COCO (slotcov make-coco)"


def _stack_ids(masks, shape) -> np.ndarray:
    """int32 id map from boolean instance masks: k for mask k (1-based), 0 where none or several are on."""
    ids = np.zeros(shape, np.int32)
    count = np.zeros(shape, np.int32)
    for k, m in enumerate(masks, 1):
        ids[m] = k
        count += m
    ids[count != 1] = 0
    return ids


def _instance_anns(coco: COCO, image_id: int) -> list:
    """The non-crowd annotations of an image in annotation-file order (instance k is the k-th)."""
    return [a for a in coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]


def foreground_ids(coco: COCO, image_id: int) -> np.ndarray:
    """int32 [H,W] id map: 1..M for the M non-crowd instances, 0 for background and overlaps.

    Crowd annotations are dropped (their pixels become background); the image is kept.
    Instance k is the k-th non-crowd annotation of the image in annotation-file order.
    """
    info = coco.imgs[image_id]
    masks = (coco.annToMask(a).astype(bool) for a in _instance_anns(coco, image_id))
    return _stack_ids(masks, (info["height"], info["width"]))


def _geometry(size: int, crop: str):
    """The size argument of torchvision's resize for a crop: short side or both sides."""
    return size if crop == "center" else [size, size]


def square_image(img: Image.Image, size: int, crop: str, interpolation: str = "bicubic",
                 resize: str = "pil") -> np.ndarray:
    """uint8 [size,size,3] from a PIL image: centre crop or stretch, resized by `resize` (module docstring)."""
    if resize == "tensor":
        x = TF.pil_to_tensor(img.convert("RGB")).float() / 255.0
        x = TF.resize(x, _geometry(size, crop), INTERPOLATION[interpolation], antialias=False).clamp(0.0, 1.0)
        if crop == "center":
            x = TF.center_crop(x, size)
        return (x * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    img = TF.resize(img.convert("RGB"), _geometry(size, crop), INTERPOLATION[interpolation])
    if crop == "center":
        img = TF.center_crop(img, size)
    return np.asarray(img, np.uint8)


def square_ids(ids: np.ndarray, size: int, crop: str, resize: str = "pil") -> np.ndarray:
    """int32 [size,size] id map resized with nearest (PIL) or nearest-exact (tensor): centre crop or stretch."""
    if resize == "tensor":
        t = TF.resize(torch.from_numpy(ids.astype(np.float32))[None], _geometry(size, crop),
                      InterpolationMode.NEAREST_EXACT)
        if crop == "center":
            t = TF.center_crop(t, size)
        return t[0].numpy().astype(np.int32)
    img = TF.resize(Image.fromarray(ids.astype(np.int32)), _geometry(size, crop), InterpolationMode.NEAREST)
    if crop == "center":
        img = TF.center_crop(img, size)
    return np.asarray(img, np.int32)


def square_instance_ids(coco: COCO, image_id: int, size: int, crop: str) -> np.ndarray:
    """int32 [size,size] id map with each instance mask resized alone, overlaps removed afterwards."""
    def resized(ann):
        m = torch.from_numpy(coco.annToMask(ann))[None]  # uint8 0/1, as the authors' tensor
        m = TF.resize(m, _geometry(size, crop), InterpolationMode.BILINEAR, antialias=False)
        if crop == "center":
            m = TF.center_crop(m, size)
        return m[0].numpy().astype(bool)

    return _stack_ids((resized(a) for a in _instance_anns(coco, image_id)), (size, size))


def target_ids(coco: COCO, image_id: int, crop: str, mask_resize: str = "ids", resize: str = "pil") -> np.ndarray:
    """int32 FG-ARI target of one image at the crop's target size, by `mask_resize` (and `resize` for ids)."""
    size = TARGET_SIZE[crop]
    if mask_resize == "instances":
        return square_instance_ids(coco, image_id, size, crop)
    return square_ids(foreground_ids(coco, image_id), size, crop, resize)


_COCO: dict = {}  # the COCO index for worker processes (inherited by fork, never pickled)


def _prepare_one(job):
    image_id, path, crop, interpolation, mask_resize, resize = job
    coco = _COCO["coco"]
    info = coco.imgs[image_id]
    with Image.open(path) as img:
        if img.size != (info["width"], info["height"]):
            raise DataError(f"{path}: size {img.size} but the annotations say "
                            f"{(info['width'], info['height'])}; wrong annotation file?")
        img.load()
        image224 = square_image(img, 224, crop, interpolation, resize)
        image128 = square_image(img, 128, crop, interpolation, resize)
    ids = target_ids(coco, image_id, crop, mask_resize, resize)
    return image224, image128, ids


def _check_choices(crop: str, interpolation: str, mask_resize: str, resize: str) -> None:
    """One clear error for an unknown pipeline value."""
    for name, value, allowed in (("crop", crop, TARGET_SIZE), ("interpolation", interpolation, INTERPOLATION),
                                 ("mask_resize", mask_resize, MASK_RESIZE), ("resize", resize, RESIZE)):
        if value not in allowed:
            raise UserError(f"unknown COCO {name} '{value}'; use one of {sorted(allowed)} "
                            f"(data.coco.pipelines.<name>.{name})")


def _select_images(coco: COCO, skip_empty: bool, limit: int | None) -> tuple[list[int], int]:
    """Image ids in increasing order (without the empty ones if `skip_empty`), the first `limit`;
    and how many were skipped as empty."""
    image_ids = sorted(coco.imgs)
    if skip_empty:
        image_ids = [i for i in image_ids if any(not a.get("iscrowd", 0) for a in coco.imgToAnns[i])]
    return image_ids[:limit], len(coco.imgs) - len(image_ids)


def prepare_split(root: str | os.PathLike, split: str, crop: str, out_dir: str | os.PathLike,
                  limit: int | None = None, workers: int = 1, skip_empty: bool = False,
                  pipeline: str = "", interpolation: str = "bicubic", mask_resize: str = "ids",
                  resize: str = "pil") -> Path:
    """Resize a COCO split (real layout under `root`) with a crop into memmap arrays in `out_dir`.

    Writes image224.npy uint8 [N,224,224,3], image128.npy uint8 [N,128,128,3],
    true_ids.npy int16 [N,S,S], image_ids.npy int64 [N] and meta.json (the pipeline's values and
    each array's size and sha256);
    images in increasing id order (without those lacking a non-crowd annotation if `skip_empty`),
    the first `limit` if given. The directory appears only when complete.
    """
    _check_choices(crop, interpolation, mask_resize, resize)
    root, out = Path(root), Path(out_dir)
    ann_file = root / "annotations" / f"instances_{split}.json"
    if not ann_file.exists():
        raise UserError(f"{ann_file} not found; unpack annotations_trainval2017.zip under {root} "
                        "(or run `slotcov make-coco` for the synthetic stand-in)")
    coco = COCO(str(ann_file))
    image_ids, n_empty_skipped = _select_images(coco, skip_empty, limit)
    n, s = len(image_ids), TARGET_SIZE[crop]
    if n == 0:
        raise DataError(f"{ann_file}: no images" + (" with a non-crowd annotation" if skip_empty else ""))
    jobs = [(i, root / split / coco.imgs[i]["file_name"], crop, interpolation, mask_resize, resize) for i in image_ids]
    missing = [str(job[1]) for job in jobs if not job[1].exists()]
    if missing:
        raise UserError(f"{len(missing)} images of {ann_file.name} missing, e.g. {missing[0]}; "
                        f"unpack {split}.zip under {root}")

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        image224 = open_memmap(tmp / "image224.npy", "w+", np.uint8, (n, 224, 224, 3))
        image128 = open_memmap(tmp / "image128.npy", "w+", np.uint8, (n, 128, 128, 3))
        true_ids = open_memmap(tmp / "true_ids.npy", "w+", np.int16, (n, s, s))
        _COCO["coco"] = coco
        pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
        results = pool.imap(_prepare_one, jobs, chunksize=8) if pool else map(_prepare_one, jobs)
        max_objects = 0
        for k, (a, b, ids) in enumerate(tqdm(results, total=n, desc=f"prepare {split}/{crop}")):
            image224[k], image128[k] = a, b
            max_objects = max(max_objects, int(ids.max()))
            if max_objects > np.iinfo(np.int16).max:
                raise DataError(f"image {image_ids[k]} has {max_objects} instances; too many for int16")
            true_ids[k] = ids
        if pool:
            pool.close()
            pool.join()
        for arr in (image224, image128, true_ids):
            arr.flush()
        del image224, image128, true_ids
        np.save(tmp / "image_ids.npy", np.asarray(image_ids, np.int64))
        description = coco.dataset.get("info", {}).get("description", "")
        arrays = {k: {"bytes": (tmp / f"{k}.npy").stat().st_size, "sha256": sha256_file(tmp / f"{k}.npy")}
                  for k in ARRAYS}  # the split's content: the identity of a run trained on it
        write_json(tmp / "meta.json", dict(arrays=arrays,
            pipeline=pipeline, crop=crop, interpolation=interpolation, mask_resize=mask_resize, resize=resize,
            skip_empty=skip_empty, n_empty_skipped=n_empty_skipped,
            split=split, count=n, target_size=s, image_size=224, recon_size=128,
            annotation_file=str(ann_file.resolve()), limit=limit,
            dataset_kind="synthetic-coco" if description == SYNTHETIC_DESCRIPTION else "real",
        ))
        replace_dir(tmp, out)
    finally:
        _COCO.pop("coco", None)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def open_split(data_dir, features_dir=None) -> "CocoArrays":
    """A prepared split, with the feature store at `features_dir` if given, as the trainer's dataset object
    (slotcov.data.open_dataset)."""
    from slotcov.data.features import FeatureStore

    return CocoArrays(data_dir, features=FeatureStore(features_dir) if features_dir else None)


class CocoArrays:
    """A prepared split as a dataset object (docs/design.md): `len()` and `batch(idx)`."""

    def __init__(self, dir: str | os.PathLike, features=None):
        self.dir = Path(dir)
        for name in ("meta.json", "image128.npy", "true_ids.npy", "image_ids.npy"):
            if not (self.dir / name).exists():
                raise UserError(f"{self.dir / name} not found; run `slotcov prepare-coco` first")
        meta_file = self.dir / "meta.json"
        self.meta = json.loads(meta_file.read_text())
        self.image128 = np.load(self.dir / "image128.npy", mmap_mode="r")
        self.true_ids = np.load(self.dir / "true_ids.npy", mmap_mode="r")
        self.image_ids = np.load(self.dir / "image_ids.npy")
        if isinstance(features, (str, os.PathLike)):
            from slotcov.data.features import FeatureStore

            features = FeatureStore(features)
        self.features = features
        if features is not None and not np.array_equal(features.image_ids, self.image_ids):
            raise DataError(f"feature store {features.dir} was not extracted from {self.dir} "
                            "(image ids differ); run `slotcov extract-features` on this split")

    def __len__(self) -> int:
        return len(self.image_ids)

    def batch(self, idx) -> dict:
        """image float32 [B,3,128,128] in [0,1], true_ids int64 [B,S,S], features [B,N,D] in the store's dtype.

        Features keep the store's dtype on the host (float16 stores copy half the bytes); the model casts them.
        """
        import torch

        idx = np.asarray(idx)
        out = {
            "image": torch.from_numpy(self.image128[idx].transpose(0, 3, 1, 2).astype(np.float32) / 255.0),
            "true_ids": torch.from_numpy(self.true_ids[idx].astype(np.int64)),
        }
        if self.features is not None:
            out["features"] = torch.from_numpy(np.ascontiguousarray(self.features[idx]))
        return out


# ---------------------------------------------------------------- synthetic COCO-format data

CATEGORIES = [  # non-contiguous ids, as in real COCO
    {"supercategory": "shape", "id": 1, "name": "box"},
    {"supercategory": "shape", "id": 3, "name": "ellipse"},
    {"supercategory": "shape", "id": 7, "name": "triangle"},
    {"supercategory": "shape", "id": 12, "name": "pair"},
    {"supercategory": "crowd", "id": 20, "name": "dots"},
]


def _uncompressed_rle(m: np.ndarray) -> dict:
    """COCO uncompressed RLE (as used for iscrowd=1): column-major run lengths starting with 0s."""
    flat = np.asarray(m, np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]]))
    counts = ([0] if flat[0] else []) + runs.tolist()
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(c) for c in counts]}


def _ellipse(h, w, cy, cx, ry, rx):
    y, x = np.mgrid[:h, :w]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def _background(rng, h, w) -> np.ndarray:
    """A textured background: colour gradient, stripes and noise."""
    y, x = np.mgrid[:h, :w] / max(h, w)
    c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    t = (np.cos(rng.uniform(0, np.pi)) * x + np.sin(rng.uniform(0, np.pi)) * y)[..., None]
    img = c0 + (c1 - c0) * (t - t.min()) / (np.ptp(t) + 1e-6)
    img += 18 * np.sin(2 * np.pi * rng.uniform(4, 14) * (x + rng.uniform(0.2, 1) * y))[..., None]
    img += rng.normal(0, 8, (h, w, 3))
    return img


def _objects(rng, h, w):
    """Random annotations (segmentation, category, iscrowd) for one image."""
    out = []
    n_obj = 0 if rng.random() < 0.05 else int(rng.integers(1, 6))
    for _ in range(n_obj):
        kind = rng.choice(["box", "ellipse", "triangle", "pair"])
        oh, ow = int(rng.integers(h // 6, h // 2)), int(rng.integers(w // 6, w // 2))
        y0, x0 = int(rng.integers(0, h - oh)), int(rng.integers(0, w - ow))
        if kind == "box":  # polygon with integer corners
            seg = [[x0, y0, x0 + ow, y0, x0 + ow, y0 + oh, x0, y0 + oh]]
        elif kind == "triangle":  # polygon with sub-pixel vertices
            seg = [[x0 + ow / 2 + 0.3, y0 + 0.4, x0 + ow - 0.2, y0 + oh - 0.6, x0 + 0.5, y0 + oh - 0.1]]
        elif kind == "pair":  # one instance made of two polygons
            a, b = ow // 2 - 1, oh // 2
            seg = [[x0, y0, x0 + a, y0, x0 + a, y0 + b, x0, y0 + b],
                   [x0 + a + 2, y0 + b, x0 + ow, y0 + b, x0 + ow, y0 + oh, x0 + a + 2, y0 + oh]]
        else:  # compressed RLE
            m = _ellipse(h, w, y0 + oh / 2, x0 + ow / 2, oh / 2, ow / 2)
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            seg = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        cat = {"box": 1, "ellipse": 3, "triangle": 7, "pair": 12}[kind]
        out.append((seg, cat, 0))
    if rng.random() < 0.35:  # a crowd region: a cluster of dots as uncompressed RLE
        m = np.zeros((h, w), bool)
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        for _ in range(int(rng.integers(4, 9))):
            m |= _ellipse(h, w, cy + rng.normal(0, h / 12), cx + rng.normal(0, w / 12), 4, 4)
        out.append((_uncompressed_rle(m), 20, 1))
    return out


def make_coco(out_dir: str | os.PathLike, split: str = "val2017", n: int = 16, seed: int = 0) -> Path:
    """Write `n` synthetic images in the real COCO layout under `out_dir` and return the annotation file.

    `out_dir/<split>/<id:012d>.jpg` and `out_dir/annotations/instances_<split>.json`, with
    polygon, compressed-RLE and multi-polygon instances, iscrowd=1 regions (uncompressed RLE),
    overlapping instances and images of varied, mostly non-square sizes.
    """
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    image_ids = np.sort(rng.choice(np.arange(1, 600_000), size=n, replace=False))
    tmp = out / f".{split}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    images, annotations = [], []
    try:
        for image_id in tqdm(image_ids.tolist(), desc=f"make-coco {split}"):
            h, w = int(rng.integers(120, 260)), int(rng.integers(140, 320))
            if rng.random() < 0.15:
                w = h
            img = _background(rng, h, w)
            for seg, cat, crowd in _objects(rng, h, w):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if isinstance(seg, list) else (
                    mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg)
                m = mask_utils.decode(rle).astype(bool)
                if not m.any():
                    continue
                shade = 1 + 0.15 * np.sin(np.arange(w) / rng.uniform(3, 9))[None, :, None]
                img = np.where(m[..., None], rng.uniform(0, 255, 3) * shade, img)  # later objects on top
                annotations.append({
                    "segmentation": seg, "area": float(m.sum()), "iscrowd": crowd, "image_id": image_id,
                    "bbox": [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))],
                    "category_id": cat, "id": len(annotations) + 1,
                })
            name = f"{image_id:012d}.jpg"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp / name, quality=90)
            images.append({"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{split}/{name}",
                           "height": h, "width": w, "date_captured": "2017-01-01 00:00:00",
                           "flickr_url": "", "id": image_id})
        replace_dir(tmp, out / split)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ann_file = out / "annotations" / f"instances_{split}.json"
    write_json(ann_file, {
        "info": {"description": SYNTHETIC_DESCRIPTION, "url": "", "version": "1.0", "year": 2017,
                 "contributor": "slotcov", "date_created": "2017/01/01", "seed": seed},
        "licenses": [{"url": "", "id": 1, "name": "synthetic"}],
        "images": images, "annotations": annotations, "categories": CATEGORIES,
    })
    return ann_file


def cli_make_coco(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slotcov make-coco", description=make_coco.__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="val2017", help="split name (folder and annotation file)")
    parser.add_argument("--out", required=True, help="COCO root to write (real layout)")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise UserError("--n must be at least 1")
    print(make_coco(args.out, args.split, args.n, args.seed))
    return 0


def cli_prepare_coco(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slotcov prepare-coco", description=prepare_split.__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="COCO root with <split>/ and annotations/")
    parser.add_argument("--split", default="val2017", help="train2017 or val2017")
    parser.add_argument("--crop", default="center", choices=sorted(TARGET_SIZE),
                        help="center: short side + centre crop, masks 320 (DINOSAUR); stretch: masks 128 (authors)")
    parser.add_argument("--interpolation", default="bicubic", choices=sorted(INTERPOLATION),
                        help="image resize: bicubic (DINOSAUR) or bilinear (the authors' PIL Resize)")
    parser.add_argument("--resize", default="pil", choices=RESIZE,
                        help="pil: PIL on uint8, antialiased (the authors'); tensor: float tensor, no antialias, "
                             "clamped, id maps nearest-exact (DINOSAUR's evaluation transform)")
    parser.add_argument("--mask-resize", default="ids", choices=MASK_RESIZE,
                        help="ids: id map resized with nearest after overlap removal (DINOSAUR); "
                             "instances: each mask resized bilinearly, overlaps removed after (authors)")
    parser.add_argument("--skip-empty", action="store_true",
                        help="drop images without a non-crowd annotation (the authors' feature extraction)")
    parser.add_argument("--pipeline", default="", help="name of the COCO pipeline, recorded in meta.json")
    parser.add_argument("--out", required=True, help="output directory (replaced atomically)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images by id")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    print(prepare_split(args.root, args.split, args.crop, args.out, args.limit, args.workers,
                        args.skip_empty, args.pipeline, args.interpolation, args.mask_resize, args.resize))
    return 0
