"""Frozen ViT tokens, precomputed once into a chunked, checksummed, resumable feature store.

Tokens are the output of the LAST transformer block, before the final LayerNorm, with the
CLS (prefix) tokens dropped: [N, 196, 768] for ViT-B/16 at 224 (docs/fidelity.md).
They are computed and stored in float32, as the paper authors stored them (they are also DINOSAUR's
reconstruction target); `dtype: float16` (config `data.features.dtype`) halves the disk and
memory at the cost of rounding the tokens, and marks the numbers made from them. The ViT input is the prepared 224x224
image in [0,1], ImageNet mean/std normalised (`normalize: imagenet`, DINOSAUR) or not
(`normalize: none`, the paper authors' feature extraction).

Store layout (`out_dir/`): tokens.npy (float32 or float16 [N,T,D]), image_ids.npy (int64 [N]) and
manifest.json (model, weights kind and hash, shape, dtype, per-chunk sha256, complete).
Extraction writes into `out_dir.tmp/`, records each finished chunk in its manifest (so a
killed run restarts at the first chunk not recorded), and renames the folder to `out_dir`
only when every chunk is done. Readers additionally require `"complete": true`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from numpy.lib.format import open_memmap
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import load_state_dict
from tqdm import tqdm

from slotcov.errors import DataError, UserError
from slotcov.io import replace_dir, resolve_device, write_json
from slotcov.config import DEFAULTS
from slotcov.progress import ProgressLine

STAGED_WEIGHTS_DIR = "data/raw/weights"  # where `slotcov download --name dino_vitb16` puts the DINO file


def _weight_candidates(model_name: str) -> list[Path]:
    """Local places pretrained weights for `model_name` may already be: HF cache, torch hub, data/raw/weights."""
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        return []
    places = []
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        hf_home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
        cache = os.environ.get("HF_HUB_CACHE", os.path.join(hf_home, "hub"))
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=cache)
            repo_dir = Path(cache) / ("models--" + cfg.hf_hub_id.replace("/", "--"))
            places.append(Path(found) if isinstance(found, str) else repo_dir / "snapshots" / "*" / filename)
    if cfg.url:
        name = os.path.basename(cfg.url)
        places.append(Path(torch.hub.get_dir()) / "checkpoints" / name)
        places.append(Path(STAGED_WEIGHTS_DIR) / name)
    return places


def _state_dict_sha256(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a state dict file (.pth/.bin/.safetensors; timm or original DINO keys) strictly."""
    try:
        state = load_state_dict(str(path), use_ema=False, weights_only=True)  # data only: never runs code
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:120]
        raise UserError(f"{path}: cannot read weights ({type(err).__name__}: {first}); pass a .pth/.bin/.safetensors "
                        "state dict of tensors") from None
    if "teacher" in state and isinstance(state["teacher"], dict):  # a full DINO training checkpoint
        state = state["teacher"]
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:  # timm's own key/shape conversion (e.g. original DINO -> timm ViT)
        state = filter_fn(state, model)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise UserError(f"{path}: weights do not fit the model ({str(err)[:300]}); check --model") from err
    if missing or unexpected:
        raise UserError(f"{path}: weights do not fit the model (missing {missing[:5]}, unexpected "
                        f"{unexpected[:5]}); check --model matches the checkpoint")


def build_vit(model_name: str = "vit_base_patch16_224.dino", weights: str = "auto", seed: int = 0) -> torch.nn.Module:
    """A frozen timm ViT in eval mode; weights "auto" (local caches), a file path, or "random" (seeded).

    The result carries `slotcov_name`, `slotcov_weights` ("pretrained"/"random") and
    `slotcov_weights_source` for the manifest.
    """
    path = None
    if weights == "auto":
        places = _weight_candidates(model_name)
        path = next((p for p in places if p.is_file()), None)
        if path is None:
            raise UserError(
                f"no pretrained weights for {model_name} found (looked in: {', '.join(map(str, places)) or 'nowhere'}). "
                "Compute nodes often have no internet: stage them on a login node, e.g. "
                f"`HF_HOME=/shared/hf python -c \"import timm; timm.create_model('{model_name}', pretrained=True)\"` "
                "and export the same HF_HOME for the jobs, or `slotcov download --name dino_vitb16`; "
                "or pass --weights PATH, or --weights random for the offline demo"
            )
    elif weights != "random":
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"weights file {path} not found; pass an existing file, 'auto' or 'random'")
    torch.manual_seed(seed)
    try:
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
    except RuntimeError as err:
        raise UserError(f"unknown timm model '{model_name}' ({err})") from err
    if path is not None:
        _load_weights(model, path)
    model.eval().requires_grad_(False)
    model.slotcov_name = model_name
    model.slotcov_weights = "random" if weights == "random" else "pretrained"
    model.slotcov_weights_source = str(path) if path else f"seed={seed}"
    return model


def _tokens(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Last-block patch tokens [B,T,D]: no final norm, prefix (CLS) tokens dropped."""
    return model.forward_intermediates(x, indices=1, norm=False, output_fmt="NLC", intermediates_only=True)[-1]


NORMALIZE = ("imagenet", "none")
DTYPES = ("float32", "float16")  # float32: the paper authors' stored tokens; float16: half the bytes


def _normalise(batch_uint8: np.ndarray, device: torch.device, normalize: str = "imagenet") -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in [0,1], then ImageNet mean/std unless `normalize` is "none"."""
    x = torch.from_numpy(np.array(batch_uint8)).to(device).permute(0, 3, 1, 2).float() / 255.0
    if normalize == "none":
        return x
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def extract_features(model: torch.nn.Module, images_uint8_memmap: np.ndarray, out_dir: str | os.PathLike,
                     batch_size: int = 64, device: str = "auto", chunk: int = 1024,
                     image_ids: np.ndarray | None = None, source: str | None = None,
                     normalize: str = "imagenet", dtype: str = "float32",
                     progress_every_s: float = DEFAULTS["monitor"]["progress_every_s"]) -> Path:
    """Frozen tokens of uint8 [N,H,W,3] images into a feature store at `out_dir` (resumable by chunk).

    An up-to-date complete store is left alone; a partial `out_dir.tmp/` with the same
    model, weights, shape, dtype and image ids is resumed at the first chunk its manifest lacks.
    """
    if normalize not in NORMALIZE:
        raise UserError(f"unknown input normalisation '{normalize}'; use one of {', '.join(NORMALIZE)}")
    if dtype not in DTYPES:
        raise UserError(f"unknown feature dtype '{dtype}'; use one of {', '.join(DTYPES)} (data.features.dtype)")
    images = images_uint8_memmap
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    n = len(images)
    ids = np.arange(n, dtype=np.int64) if image_ids is None else np.asarray(image_ids, np.int64)
    if len(ids) != n:
        raise DataError(f"{n} images but {len(ids)} image ids")
    dev = resolve_device(device)
    model = model.eval().to(dev)
    with torch.inference_mode():
        t, d = _tokens(model, _normalise(images[:1], dev, normalize)).shape[1:]
    n_chunks = -(-n // chunk)
    key = dict(  # what must match for a partial or finished store to be reused
        model=getattr(model, "slotcov_name", type(model).__name__),
        weights=getattr(model, "slotcov_weights", "unknown"),
        weights_sha256=_state_dict_sha256(model),
        shape=[n, int(t), int(d)], dtype=dtype, chunk=chunk, n_chunks=n_chunks,
        image_ids_sha256=hashlib.sha256(ids.tobytes()).hexdigest(), normalisation=normalize,
    )

    def manifest_of(folder: Path) -> dict | None:
        f = folder / "manifest.json"
        m = json.loads(f.read_text()) if f.exists() else None
        return m if m and all(m.get(k) == v for k, v in key.items()) else None

    if (done := manifest_of(out)) and done.get("complete"):
        return out
    manifest = manifest_of(tmp)
    if manifest is None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tokens = open_memmap(tmp / "tokens.npy", "w+", np.dtype(dtype), (n, int(t), int(d)))
        np.save(tmp / "image_ids.npy", ids)
        manifest = dict(key, weights_source=getattr(model, "slotcov_weights_source", "unknown"),
                        layer="last block, no final norm, prefix tokens dropped",
                        source=source, device=str(dev), chunks={}, complete=False)
        write_json(tmp / "manifest.json", manifest)
    else:
        tokens = open_memmap(tmp / "tokens.npy", "r+")

    todo = [c for c in range(n_chunks) if str(c) not in manifest["chunks"]]
    initial = n - sum(min(chunk, n - c * chunk) for c in todo)
    tty = sys.stderr.isatty()  # a terminal gets a bar, a log file a line every progress_every_s seconds
    lines = None if tty else ProgressLine(f"features {out}", n, initial, progress_every_s, "image", "img/s")
    with torch.inference_mode(), tqdm(total=n, initial=initial, desc=f"features {out.name}", unit="img",
                                      disable=not tty) as bar:
        for c in todo:
            start, end = c * chunk, min(n, (c + 1) * chunk)
            for b in range(start, end, batch_size):
                e = min(end, b + batch_size)
                tokens[b:e] = _tokens(model, _normalise(images[b:e], dev, normalize)).to(getattr(torch, dtype)).cpu().numpy()
                bar.update(e - b)
                if lines is not None:
                    lines.update(e, force=e == n)
            tokens.flush()
            manifest["chunks"][str(c)] = hashlib.sha256(tokens[start:end].tobytes()).hexdigest()
            write_json(tmp / "manifest.json", manifest)  # the chunk counts as done only from here on
    manifest["complete"] = True
    write_json(tmp / "manifest.json", manifest)
    del tokens
    replace_dir(tmp, out)
    return out


class FeatureStore:
    """Read-only view of a finished feature store: `store[idx]` -> [.., T, D] in the store's dtype."""

    def __init__(self, dir: str | os.PathLike, verify: bool = False):
        self.dir = Path(dir)
        mf, tf = self.dir / "manifest.json", self.dir / "tokens.npy"
        if not mf.exists():
            hint = " (an unfinished extraction is in .tmp; run it again to resume)" if \
                self.dir.with_name(self.dir.name + ".tmp").exists() else ""
            raise UserError(f"{mf} not found{hint}; run `slotcov extract-features`")
        try:
            self.manifest = m = json.loads(mf.read_text())
            m["shape"], m["dtype"], m["chunk"]  # noqa: B018 - a manifest without them is corrupt
        except (ValueError, TypeError, KeyError) as err:  # bad UTF-8 or JSON, wrong structure
            raise DataError(f"{mf}: corrupt manifest ({type(err).__name__}: {err}); "
                            f"delete {self.dir} and extract again") from err
        if not m.get("complete") or len(m.get("chunks", {})) != m.get("n_chunks"):
            raise DataError(f"{mf}: feature store incomplete; run `slotcov extract-features` again to finish it")
        try:
            self.tokens = np.load(tf, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DataError(f"{tf}: unreadable ({err}); delete {self.dir} and extract again") from err
        if list(self.tokens.shape) != m["shape"] or self.tokens.dtype != np.dtype(m["dtype"]):
            raise DataError(f"{tf}: shape {list(self.tokens.shape)} {self.tokens.dtype}, manifest says "
                            f"{m['shape']} {m['dtype']}; delete {self.dir} and extract again")
        size, want = os.path.getsize(tf), self.tokens.offset + self.tokens.nbytes
        if size != want:
            raise DataError(f"{tf}: {size} bytes on disk, expected {want}; delete {self.dir} and extract again")
        try:
            self.image_ids = np.load(self.dir / "image_ids.npy")
        except (OSError, ValueError) as err:
            raise DataError(f"{self.dir / 'image_ids.npy'}: unreadable ({err}); delete {self.dir} and extract again") from err
        if len(self.image_ids) != len(self.tokens):
            raise DataError(f"{self.dir / 'image_ids.npy'}: {len(self.image_ids)} ids for {len(self.tokens)} rows")
        if verify:
            self.verify()

    def verify(self) -> None:
        """Re-hash the image ids and every chunk against the manifest; DataError names the file and the first bad chunk."""
        if hashlib.sha256(np.ascontiguousarray(self.image_ids, np.int64).tobytes()).hexdigest() != \
                self.manifest.get("image_ids_sha256"):
            raise DataError(f"{self.dir / 'image_ids.npy'}: fails its sha256; delete {self.dir} and extract again")
        chunk = self.manifest["chunk"]
        for c in tqdm(range(self.manifest["n_chunks"]), desc=f"verify {self.dir.name}", leave=False):
            start, end = c * chunk, min(len(self.tokens), (c + 1) * chunk)
            if hashlib.sha256(self.tokens[start:end].tobytes()).hexdigest() != self.manifest["chunks"][str(c)]:
                raise DataError(f"{self.dir / 'tokens.npy'}: chunk {c} (rows {start}-{end - 1}) fails its sha256; "
                                f"delete {self.dir} and extract again")

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, idx) -> np.ndarray:
        return np.asarray(self.tokens[idx])


def cli_extract_features(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slotcov extract-features",
                                     description=extract_features.__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="a prepared split (image224.npy, image_ids.npy)")
    parser.add_argument("--model", default="vit_base_patch16_224.dino", help="timm model name")
    parser.add_argument("--weights", default="auto", help="auto | random | PATH to a state dict")
    parser.add_argument("--out", required=True, help="feature store directory")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument("--seed", type=int, default=0, help="seed of --weights random")
    parser.add_argument("--chunk", type=int, default=1024, help="images per resumable chunk")
    parser.add_argument("--normalize", default="imagenet", choices=NORMALIZE,
                        help="ViT input: ImageNet mean/std (DINOSAUR) or plain [0,1] (the paper authors)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="stored tokens: float32 (the paper authors') or float16 (half the disk, rounded)")
    parser.add_argument("--progress-every-s", type=float, default=DEFAULTS["monitor"]["progress_every_s"],
                        help="seconds between progress lines when stderr is not a terminal (a job's log)")
    args = parser.parse_args(argv)
    split = Path(args.images)
    for name in ("image224.npy", "image_ids.npy"):
        if not (split / name).exists():
            raise UserError(f"{split / name} not found; run `slotcov prepare-coco` first")
    if args.batch_size < 1 or args.chunk < 1:
        raise UserError(f"--batch-size {args.batch_size} and --chunk {args.chunk} must be at least 1")
    images = np.load(split / "image224.npy", mmap_mode="r")
    ids = np.load(split / "image_ids.npy")
    model = build_vit(args.model, args.weights, args.seed)
    out = extract_features(model, images, args.out, args.batch_size, args.device, args.chunk,
                           image_ids=ids, source=str(split.resolve()), normalize=args.normalize, dtype=args.dtype,
                           progress_every_s=args.progress_every_s)
    print(out)
    return 0
