"""The benchmark suite: every number is a ratio against a baseline measured in the same run.

python bench/run.py [--device auto] [--quick] [--only NAME ...] [--repeats N]   (or: slotcov bench ...)
python bench/profile_step.py CELL [...]   the step's time per kernel family (or: slotcov bench --profile CELL)

Benchmarks (each writes entries under this machine's key in bench/results.json):
  train_<cell>    steps/s and peak memory of slotcov's trainer in fp32 (train.amp: fp32) and, on CUDA,
                  bf16 (entries train_<cell>_fp32, train_<cell>_bf16), each vs bench/baseline.py
                  (eager fp32; none for coco/sa), interleaved repeats, ratio min/median/max;
                  achieved FLOP/s of the step against the matmul peak measured between the
                  steps (best of all); a fraction above 1 stops the run: the peak was wrong
  data_wait_<cell>  the fraction of step time spent waiting for data: the trainer reading its
                  batches from a local disk (memory-mapped arrays / the feature store) vs from memory
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
from slotcov.config import deep_merge, parse_set  # noqa: E402
from slotcov.data import InMemory  # noqa: E402
from slotcov.data.features import FeatureStore  # noqa: E402
from slotcov.train import plan  # noqa: E402
from slotcov.train.flops import random_batch, step_flops  # noqa: E402
from slotcov.io import atomic_path, write_json  # noqa: E402
from slotcov.train.models import build_model  # noqa: E402
from slotcov.data.mdsprites import FLOAT_FEATURES, MDSpritesArrays  # noqa: E402
from slotcov.train.loop import Prefetcher, train  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine(device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu {platform.processor() or platform.machine()} x{os.cpu_count()}"
    return {"name": name, "device": device.type, "torch": torch.__version__, "threads": torch.get_num_threads()}


class ImpossibleResult(RuntimeError):
    """A measurement that cannot be true (e.g. more FLOP/s than the measured peak): not recorded."""


def matmul_peak(device, precision: str, quick: bool) -> float:
    """Measured matmul FLOP/s of one precision: fp32 (full), tf32 (fp32 on tensor cores) or bf16."""
    n = 8192 if device.type == "cuda" else (256 if quick else 1024)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        sync(device)
        reps = 1 if quick else (20 if device.type == "cuda" else 10)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        return 2 * n ** 3 * reps / (time.perf_counter() - t)
    finally:
        torch.set_float32_matmul_precision(before)


def trainer_rate(run_cfg, data, device, warm, steps) -> tuple[float, int]:
    """(steps/s after `warm` steps, peak CUDA memory) of slotcov's trainer on `data`."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rate = plan.trainer_rate(run_cfg, data, warm, steps, str(device))
    return rate, torch.cuda.max_memory_allocated() if device.type == "cuda" else 0


def baseline_rate(cfg, data, device, warm, steps, bs) -> tuple[float, int]:
    """(steps/s, peak CUDA memory) of bench/baseline.py's eager fp32 loop, same weights and batches."""
    key = "image" if cfg["model"]["kind"] == "sa_cnn" else "features"
    torch.manual_seed(0)
    model = baseline.from_slotcov(cfg["model"], build_model(cfg["model"]).state_dict()).to(device)
    batches = [data.batch(np.arange(i * bs, (i + 1) * bs))[key].float() for i in range(4)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline.train_steps(model, batches, warm, device, clip=cfg["train"]["grad_clip"])
    sync(device)
    t = time.perf_counter()
    baseline.train_steps(model, batches, steps, device, clip=cfg["train"]["grad_clip"])
    sync(device)
    return steps / (time.perf_counter() - t), torch.cuda.max_memory_allocated() if device.type == "cuda" else 0


def spread(values) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def bench_cell(cell, device, quick, compile_="auto", repeats=None, over=None) -> dict:
    """Entries train_<cell>_fp32 (and _bf16 on CUDA): the trainer vs the eager fp32 baseline,
    interleaved repeats; the matmul peak measured before and after each repeat's steps."""
    cfg = deep_merge(PAPER_CELLS[cell], over)
    has_baseline = cfg["model"]["kind"] in ("sa_cnn", "dinosaur")
    bs = 8 if quick else (64 if device.type == "cuda" else 16)
    warm, steps, n_rep = (1, 1, 1) if quick else ((10, 40, 5) if device.type == "cuda" else (2, 5, 3))
    repeats = repeats or n_rep
    data = InMemory(**random_batch(cfg, 4 * bs, torch.Generator().manual_seed(0)))
    variants = {"fp32": "fp32", "bf16": "bf16"} if device.type == "cuda" else {"fp32": "fp32"}
    peak_kind = {"fp32": "tf32" if device.type == "cuda" else "fp32", "bf16": "bf16"}  # the fastest it may use
    peaks = {peak_kind[v]: 0.0 for v in variants}
    rates = {v: [] for v in variants}
    mems = {v: [] for v in variants}
    base, mem_base = [], []
    for _ in range(repeats):
        for kind in peaks:
            peaks[kind] = max(peaks[kind], matmul_peak(device, kind, quick))
        if has_baseline:
            rate, mem = baseline_rate(cfg, data, device, warm, steps, bs)
            base.append(rate)
            mem_base.append(mem)
        for v, amp in variants.items():
            run_cfg = deep_merge(cfg, {"train": {"steps": warm + steps, "batch_size": bs, "log_every": 1,
                                                 "checkpoint_every": 10 ** 9, "compile": compile_, "amp": amp,
                                                 "tf32_matmul": False}})
            rate, mem = trainer_rate(run_cfg, data, device, warm, steps)
            rates[v].append(rate)
            mems[v].append(mem)
        for kind in peaks:
            peaks[kind] = max(peaks[kind], matmul_peak(device, kind, quick))
    flops = step_flops(cfg, bs)
    out = {}
    for v in variants:
        ours = statistics.median(rates[v])
        entry = {"cell": cell, "model": cfg["model"], "amp": variants[v], "compile": compile_, "tf32_matmul": False, "batch_size": bs,
                 "steps_timed": steps, "repeats": repeats, "ours_steps_per_s": ours,
                 "ours_steps_per_s_spread": spread(rates[v]), "peak_mem_ours_mb": max(mems[v]) / 2 ** 20,
                 "step_gflop": flops / 1e9, "ours_tflops": flops * ours / 1e12,
                 "matmul_peak": peak_kind[v], "matmul_peak_tflops": peaks[peak_kind[v]] / 1e12}
        # the best single repeat against the best peak: the highest fraction the data allow
        entry["fraction_of_matmul_peak"] = flops * max(rates[v]) / peaks[peak_kind[v]]
        if entry["fraction_of_matmul_peak"] > 1:
            raise ImpossibleResult(f"train {cell} {v}: {flops * max(rates[v]) / 1e12:.3g} TFLOP/s exceeds the "
                                   f"measured {peak_kind[v]} matmul peak {peaks[peak_kind[v]] / 1e12:.3g}: the "
                                   "peak was measured while the machine was busy; nothing recorded, run again")
        if has_baseline:
            ratios = [o / b for o, b in zip(rates[v], base)]
            entry.update({"baseline_steps_per_s": statistics.median(base), "ratio_min": min(ratios),
                          "ratio_median": statistics.median(ratios), "ratio_max": max(ratios),
                          "peak_mem_baseline_mb": max(mem_base) / 2 ** 20})
        out[f"train_{cell.replace('/', '_')}_{v}"] = entry
    return out


def write_mdsprites_split(root: Path, images: np.ndarray) -> MDSpritesArrays:
    """A converted ColoredMDSprites split (the files `slotcov convert-mdsprites` writes) of `images` [N,R,R,3]."""
    root.mkdir(parents=True)
    n, r = images.shape[:2]
    arrays = {"image": images, "ids": np.zeros((n, r, r), np.uint8),
              **{k: np.zeros((n,) + s, np.float32) for k, s in FLOAT_FEATURES.items()}}
    for k, a in arrays.items():
        np.save(root / f"{k}.npy", a)
    write_json(root / "meta.json", {"count": n, "resolution": r,
                                    "arrays": {k: {"shape": list(a.shape), "sha256": ""} for k, a in arrays.items()}})
    return MDSpritesArrays(root)


def write_store(store_dir: Path, tokens: np.ndarray) -> None:
    """A complete one-chunk float16 feature store of `tokens` (the fields FeatureStore checks)."""
    store_dir.mkdir(parents=True)
    half = tokens.astype(np.float16)
    np.save(store_dir / "tokens.npy", half)
    ids = np.arange(len(tokens), dtype=np.int64)
    np.save(store_dir / "image_ids.npy", ids)
    sha = lambda a: hashlib.sha256(a.tobytes()).hexdigest()  # noqa: E731
    write_json(store_dir / "manifest.json", {
        "shape": list(tokens.shape), "dtype": "float16", "chunk": len(tokens), "n_chunks": 1, "complete": True,
        "chunks": {"0": sha(half)}, "image_ids_sha256": sha(ids)})


def write_coco_split(root: Path, tokens: np.ndarray):
    """A prepared COCO split with its feature store (what `slotcov train` reads for a COCO cell)."""
    from slotcov.data.coco import CocoArrays

    n = len(tokens)
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(root / "image128.npy", rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8))
    np.save(root / "true_ids.npy", np.zeros((n, 64, 64), np.uint8))
    np.save(root / "image_ids.npy", np.arange(n, dtype=np.int64))
    write_json(root / "meta.json", {"count": n})
    write_store(root / "features", tokens)
    return CocoArrays(root, features=FeatureStore(root / "features"))


def loader_rate(dataset, device, bs, steps) -> float:
    """Batches/s of the trainer's loader alone (a Prefetcher over `dataset`, nothing trained)."""
    feeder = Prefetcher(dataset, 0, steps, bs, 0, device)
    t = time.perf_counter()
    try:
        for _ in range(steps):
            feeder.get()
        sync(device)
    finally:
        feeder.close()
    return steps / (time.perf_counter() - t)


def bench_data_wait(cell, device, quick, compile_="auto", repeats=None, over=None) -> dict:
    """The fraction of a training step spent waiting for data: the trainer (fp32) fed from files on
    a local disk (page cache dropped before each run) vs the same batches already in memory."""
    cfg = deep_merge(PAPER_CELLS[cell], over)
    bs = 4 if quick else (64 if device.type == "cuda" else 16)
    warm, steps, n_rep = (1, 2, 1) if quick else ((10, 60, 3) if device.type == "cuda" else (2, 6, 3))
    repeats = repeats or n_rep
    n = 4 * bs if quick else (2048 if cfg["model"]["kind"] == "sa_cnn" else 1024)
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(dir=os.environ.get("SLOTCOV_BENCH_DIR")))
    try:
        if cfg["model"]["kind"] == "sa_cnn":
            r = cfg["model"]["resolution"]
            disk = write_mdsprites_split(tmp / "split", rng.integers(0, 256, (n, r, r, 3), dtype=np.uint8))
            files = [tmp / "split" / "image.npy", tmp / "split" / "ids.npy"]
        else:
            tokens = rng.standard_normal((n, cfg["model"]["num_tokens"], cfg["model"]["feature_dim"]), np.float32)
            disk = write_coco_split(tmp / "split", tokens)
            files = [tmp / "split" / "features" / "tokens.npy", tmp / "split" / "image128.npy"]
        memory = InMemory(**disk.batch(np.arange(n)))
        os.sync()
        run_cfg = deep_merge(cfg, {"train": {"steps": warm + steps, "batch_size": bs, "log_every": 1,
                                             "checkpoint_every": 10 ** 9, "compile": compile_, "amp": "fp32"}})
        result = measure_wait(run_cfg, memory, disk, device, warm, steps, repeats, lambda: _evict(files))
    finally:
        shutil.rmtree(tmp)
    return {"cell": cell, "amp": "fp32", "compile": compile_, "batch_size": bs, "images_on_disk": n, **result}


def measure_wait(run_cfg, memory, disk, device, warm, steps, repeats, drop_cache=lambda: None) -> dict:
    """Step time fed from `disk` vs from `memory` (same batches), interleaved; the loader alone.

    wait fraction = (t_disk - t_memory) / t_disk per repeat: the share of a step spent waiting for
    data (negative values are timing noise). loader_time_over_step_time < 1: the prefetch thread
    makes batches faster than the step uses them.
    """
    mem_rates, disk_rates, loader = [], [], []
    for _ in range(repeats):
        mem_rates.append(trainer_rate(run_cfg, memory, device, warm, steps)[0])
        drop_cache()
        disk_rates.append(trainer_rate(run_cfg, disk, device, warm, steps)[0])
        drop_cache()
        loader.append(loader_rate(disk, device, run_cfg["train"]["batch_size"], warm + steps))
    fractions = [1 - d / m for d, m in zip(disk_rates, mem_rates)]
    return {"steps_timed": steps, "repeats": repeats, "memory_steps_per_s": statistics.median(mem_rates),
            "disk_steps_per_s": statistics.median(disk_rates), "loader_batches_per_s": statistics.median(loader),
            "loader_time_over_step_time": statistics.median(mem_rates) / statistics.median(loader),
            "wait_fraction_min": min(fractions), "wait_fraction_median": statistics.median(fractions),
            "wait_fraction_max": max(fractions)}


def bench_fg_ari(quick, repeats=None):
    """Vectorised FG-ARI vs sklearn's adjusted_rand_score per image, interleaved (alternating which
    goes first), min/median/max of the per-repeat ratios."""
    from sklearn.metrics import adjusted_rand_score

    from slotcov.evaluate.metrics import fg_ari

    rng = np.random.default_rng(0)
    n = 16 if quick else 320
    true = rng.integers(0, 5, (n, 64, 64))
    pred = rng.integers(0, 5, (n, 64, 64))

    def ours():
        return fg_ari(torch.from_numpy(true), torch.from_numpy(pred)).numpy()

    def base():
        return np.array([adjusted_rand_score(a[a > 0], b[a > 0]) for a, b in zip(true, pred)])

    times = {ours: [], base: []}
    results = {}
    for r in range(repeats or (1 if quick else 11)):
        for fn in (ours, base) if r % 2 == 0 else (base, ours):
            t = time.perf_counter()
            results[fn] = fn()
            times[fn].append(time.perf_counter() - t)
    ratios = [b / o for o, b in zip(times[ours], times[base])]
    return {"images": n, "repeats": len(ratios), "ours_s": statistics.median(times[ours]),
            "sklearn_loop_s": statistics.median(times[base]), "ratio_min": min(ratios),
            "ratio_median": statistics.median(ratios), "ratio_max": max(ratios),
            "max_abs_diff": float(np.abs(results[ours] - results[base]).max())}


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
        write_store(store_dir, tokens)
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


TRAIN_CELLS = {"train_cmdsprites_sa": "cmdsprites/sa", "train_coco_dinosaur": "coco/dinosaur",
               "train_coco_sa": "coco/sa", "train_coco_dinosaur1024": "coco/dinosaur1024"}
WAIT_CELLS = {"data_wait_cmdsprites_sa": "cmdsprites/sa", "data_wait_coco_dinosaur": "coco/dinosaur"}
BENCHMARKS = [*TRAIN_CELLS, *WAIT_CELLS, "fg_ari", "feature_store"]


def run_one(name, device, args) -> dict:
    """{entry key: result} of one benchmark."""
    compile_ = {"auto": "auto", "true": True, "false": False}[args.compile]
    if name in TRAIN_CELLS:
        return bench_cell(TRAIN_CELLS[name], device, args.quick, compile_, args.repeats, parse_set(args.set))
    if name in WAIT_CELLS:
        return {name: bench_data_wait(WAIT_CELLS[name], device, args.quick, compile_, args.repeats,
                                      parse_set(args.set))}
    if name == "fg_ari":
        return {name: bench_fg_ari(args.quick)}
    return {name: bench_feature_store(args.quick)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="slotcov bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="one iteration of each benchmark (smoke test)")
    p.add_argument("--only", nargs="*", choices=BENCHMARKS)
    p.add_argument("--compile", choices=["auto", "true", "false"], default="auto",
                   help="torch.compile in the trainer (auto: on CUDA, as training runs)")
    p.add_argument("--repeats", type=int, help="interleaved repeats of the training benchmarks")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override every benchmarked cell (smaller models for a smoke test); recorded")
    p.add_argument("--note", help="a remark stored with this run's entries (e.g. '2-core CPU, shared')")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    info = machine(device)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    key = f"{info['name']}{' (quick)' if args.quick else ''}"
    # entries of earlier runs stay unless this run measures them again
    entry = {"measured_at": time.strftime("%Y-%m-%d %H:%M"), **results.get(key, {})}
    for old in entry.values():  # an earlier run's entries keep their date and torch when the machine's change
        if isinstance(old, dict) and "machine" in entry and "name" not in old:
            old.setdefault("measured_at", entry["measured_at"])
            old.setdefault("torch", entry["machine"]["torch"])
    entry.update(machine=info, quick=args.quick)
    for name in args.only or BENCHMARKS:
        t = time.time()
        for k, result in run_one(name, device, args).items():
            result.update(measured_at=time.strftime("%Y-%m-%d %H:%M"), torch=torch.__version__,
                          **({"note": args.note} if args.note else {}), **({"set": args.set} if args.set else {}))
            entry[k] = result
            print(f"{k}: {json.dumps(result)}  ({time.time() - t:.0f} s)", flush=True)
        results[key] = entry
        with atomic_path(out) as tmp:  # after each benchmark: a later failure keeps the earlier ones
            tmp.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
