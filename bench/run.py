"""The benchmark suite: every number is a ratio against a baseline measured in the same run.

python bench/run.py [--device auto] [--quick] [--only NAME ...]   (or: slotcov bench ...)

Benchmarks (each writes one entry under this machine's key in bench/results.json):
  train_<cell>    steps/s and peak memory of slotcov's trainer vs bench/baseline.py
                  (eager fp32), interleaved repeats, ratio min/median/max; achieved FLOP/s
                  of the step against this machine's measured matmul peak
  fg_ari          vectorised FG-ARI vs a per-image sklearn loop on 320 x 64 x 64 images
  feature_store   random DINOSAUR batches from the float16 store vs one fp32 .npy per image
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import baseline  # noqa: E402

from slotcov.cells import PAPER_CELLS  # noqa: E402
from slotcov.config import deep_merge  # noqa: E402
from slotcov.data import InMemory  # noqa: E402
from slotcov.data.features import FeatureStore  # noqa: E402
from slotcov.io import write_json  # noqa: E402
from slotcov.models import build_model  # noqa: E402
from slotcov.train import train  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine(device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu {platform.processor() or platform.machine()} x{os.cpu_count()}"
    return {"name": name, "device": device.type, "torch": torch.__version__, "threads": torch.get_num_threads()}


def matmul_peak(device, quick) -> float:
    """Measured matmul FLOP/s: bf16 8192^3 on CUDA, fp32 1024-2048^3 on the CPU."""
    n = 8192 if device.type == "cuda" else (512 if quick else 2048)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 1 if quick else (20 if device.type == "cuda" else 5)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def step_flops(cfg, batch) -> float:
    """FLOPs of one forward + backward of the model (torch's FlopCounterMode, on the CPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg["model"])
    with FlopCounterMode(display=False) as counter:
        out = model(batch)
        torch.nn.functional.mse_loss(out["recon"], out["target"]).backward()
    return float(counter.get_total_flops())


def bench_cell(cell, device, quick, compile_, repeats=None):
    cfg = PAPER_CELLS[cell]
    kind = cfg["model"]["kind"]
    bs = 8 if quick else (64 if device.type == "cuda" else 16)
    warm, steps, n_rep = (1, 1, 1) if quick else ((10, 40, 5) if device.type == "cuda" else (2, 5, 3))
    repeats = repeats or n_rep
    g = torch.Generator().manual_seed(0)
    if kind == "sa_cnn":
        data = InMemory(image=torch.rand(4 * bs, 3, 64, 64, generator=g))
        base_model = lambda: baseline.CNNModel()  # noqa: E731
        key = "image"
    else:
        data = InMemory(features=torch.randn(4 * bs, 196, 768, generator=g).half())
        base_model = lambda: baseline.DinosaurModel(d=cfg["model"]["slot_dim"],  # noqa: E731
                                                    hidden=tuple(cfg["model"]["decoder_hidden"]))
        key = "features"
    run_cfg = deep_merge(cfg, {"train": {"steps": warm + steps, "batch_size": bs, "log_every": 1,
                                         "checkpoint_every": 10 ** 9, "compile": compile_,
                                         "amp": "bf16"}})  # the speed path (fp32 is the paper's)
    ours, base, mem_ours, mem_base = [], [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            train(run_cfg, data, tmp, device=str(device), progress=False)
            secs = np.loadtxt(Path(tmp) / "log.csv", delimiter=",", skiprows=1, usecols=-1, ndmin=1)
            ours.append(steps / (secs[-1] - secs[warm - 1]))
            mem_ours.append(torch.cuda.max_memory_allocated() if device.type == "cuda" else 0)
        torch.manual_seed(0)
        model = base_model().to(device)
        batches = [data.batch(np.arange(i * bs, (i + 1) * bs))[key].float() for i in range(4)]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        baseline.train_steps(model, batches, warm, device, clip=run_cfg["train"]["grad_clip"])
        sync(device)
        t = time.perf_counter()
        baseline.train_steps(model, batches, steps, device, clip=run_cfg["train"]["grad_clip"])
        sync(device)
        base.append(steps / (time.perf_counter() - t))
        mem_base.append(torch.cuda.max_memory_allocated() if device.type == "cuda" else 0)
    ratios = [o / b for o, b in zip(ours, base)]
    flops = step_flops(cfg, data.batch(np.arange(min(bs, 2)))) * bs / min(bs, 2)
    return {"batch_size": bs, "steps_timed": steps, "repeats": repeats, "compile": compile_,
            "ours_steps_per_s": statistics.median(ours), "baseline_steps_per_s": statistics.median(base),
            "ratio_min": min(ratios), "ratio_median": statistics.median(ratios), "ratio_max": max(ratios),
            "peak_mem_ours_mb": max(mem_ours) / 2 ** 20, "peak_mem_baseline_mb": max(mem_base) / 2 ** 20,
            "step_gflop": flops / 1e9, "ours_tflops": flops * statistics.median(ours) / 1e12}


def bench_fg_ari(quick):
    from sklearn.metrics import adjusted_rand_score

    from slotcov.metrics import fg_ari

    rng = np.random.default_rng(0)
    n = 16 if quick else 320
    true = rng.integers(0, 5, (n, 64, 64))
    pred = rng.integers(0, 5, (n, 64, 64))
    ours_t, base_t = [], []
    for _ in range(1 if quick else 5):
        t = time.perf_counter()
        ours = fg_ari(torch.from_numpy(true), torch.from_numpy(pred)).numpy()
        ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = np.array([adjusted_rand_score(a[a > 0], b[a > 0]) for a, b in zip(true, pred)])
        base_t.append(time.perf_counter() - t)
    ratios = [b / o for o, b in zip(ours_t, base_t)]
    return {"images": n, "ours_s": statistics.median(ours_t), "sklearn_loop_s": statistics.median(base_t),
            "ratio_min": min(ratios), "ratio_median": statistics.median(ratios), "ratio_max": max(ratios),
            "max_abs_diff": float(np.abs(ours - ref).max())}


def _evict(paths):
    """Drop files from the page cache (posix_fadvise DONTNEED): the next read comes from disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def bench_feature_store(quick):
    """Random DINOSAUR batches (host tensors ready for the GPU) from the float16 store vs one fp32
    .npy per image (the authors' layout); page cache warm and cold (evicted before each pass)."""
    n, bs, batches = (16, 4, 2) if quick else (1024, 64, 40)
    tokens = np.random.default_rng(0).standard_normal((n, 196, 768), dtype=np.float32)
    tmp = Path(tempfile.mkdtemp(dir=os.environ.get("SLOTCOV_BENCH_DIR")))
    try:
        store_dir = tmp / "store"
        store_dir.mkdir()
        half = tokens.astype(np.float16)  # converted once: written to the store and hashed for its manifest
        store = np.lib.format.open_memmap(store_dir / "tokens.npy", mode="w+", dtype=np.float16, shape=tokens.shape)
        store[:] = half
        store.flush()
        del store
        ids = np.arange(n, dtype=np.int64)
        np.save(store_dir / "image_ids.npy", ids)
        sha = lambda a: hashlib.sha256(a.tobytes()).hexdigest()  # noqa: E731
        write_json(store_dir / "manifest.json", {  # one chunk, the fields FeatureStore checks (verify passes)
            "shape": list(tokens.shape), "dtype": "float16", "chunk": n, "n_chunks": 1, "complete": True,
            "chunks": {"0": sha(half)}, "image_ids_sha256": sha(ids)})
        del half
        (tmp / "per_image").mkdir()
        files = [tmp / "per_image" / f"{i:012d}.npy" for i in range(n)]
        for i, f in enumerate(files):
            np.save(f, tokens[i])
        os.sync()
        rng = np.random.default_rng(1)
        order = [np.sort(rng.choice(n, bs, replace=False)) for _ in range(batches)]

        def ours():
            store = FeatureStore(store_dir)  # what CocoArrays.batch reads through
            for idx in order:
                torch.from_numpy(store[idx])  # float16; the model casts on the device

        def base():
            for idx in order:
                torch.from_numpy(np.stack([np.load(files[i]) for i in idx]))

        result = {"images": n, "batch_size": bs, "batches": batches}
        for cache in ("warm", "cold"):
            ours_t, base_t = [], []
            for _ in range(1 if quick else 3):
                for fn, times, paths in ((ours, ours_t, [store_dir / "tokens.npy"]), (base, base_t, files)):
                    if cache == "cold":
                        _evict(paths)
                    else:
                        fn()
                    t = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t)
            ratios = [b / o for o, b in zip(ours_t, base_t)]
            result[cache] = {"ours_batches_per_s": batches / statistics.median(ours_t),
                             "baseline_batches_per_s": batches / statistics.median(base_t),
                             "ratio_min": min(ratios), "ratio_median": statistics.median(ratios),
                             "ratio_max": max(ratios)}
        result["ratio_min"] = min(result["warm"]["ratio_min"], result["cold"]["ratio_min"])
        store_bytes = (store_dir / "tokens.npy").stat().st_size
        base_bytes = sum(f.stat().st_size for f in files)
    finally:
        shutil.rmtree(tmp)
    return {**result, "bytes_ours": store_bytes, "bytes_baseline": base_bytes, "bytes_ratio": store_bytes / base_bytes}


BENCHMARKS = ["train_cmdsprites_sa", "train_coco_dinosaur", "fg_ari", "feature_store"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="slotcov bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="one iteration of each benchmark (smoke test)")
    p.add_argument("--only", nargs="*", choices=BENCHMARKS)
    p.add_argument("--compile", action="store_true", help="also time the trainer with torch.compile")
    p.add_argument("--repeats", type=int, help="interleaved repeats of the training benchmarks")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    info = machine(device)
    entry = {"machine": info, "measured_at": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick,
             "matmul_peak_tflops": matmul_peak(device, args.quick) / 1e12}
    for name in args.only or BENCHMARKS:
        t = time.time()
        if name.startswith("train_"):
            cell = {"train_cmdsprites_sa": "cmdsprites/sa", "train_coco_dinosaur": "coco/dinosaur"}[name]
            entry[name] = bench_cell(cell, device, args.quick, False, args.repeats)
            if args.compile:
                entry[name + "_compiled"] = bench_cell(cell, device, args.quick, True, args.repeats)
            for key in (name, name + "_compiled"):
                if key in entry:
                    entry[key]["fraction_of_matmul_peak"] = entry[key]["ours_tflops"] / entry["matmul_peak_tflops"]
        elif name == "fg_ari":
            entry[name] = bench_fg_ari(args.quick)
        else:
            entry[name] = bench_feature_store(args.quick)
        entry[name]["measured_at"] = time.strftime("%Y-%m-%d %H:%M")
        print(f"{name}: {json.dumps(entry[name])}  ({time.time() - t:.0f} s)", flush=True)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    key = f"{info['name']}{' (quick)' if args.quick else ''}"
    if args.only:  # a partial run updates its benchmarks and keeps the machine's others
        entry = {**results.get(key, {}), **entry}
    results[key] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
