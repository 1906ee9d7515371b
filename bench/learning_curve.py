"""Does the paper's Slot Attention learn at paper scale? Train the paper preset's cmdsprites/sa cell
(fp32: train.amp fp32, 64x64, batch 64, the preset's initialisation) on a full-size replica for a wall-clock
budget, evaluating FG-ARI on the 320 evaluation scenes every `--every` steps; record the curve
(steps, FG-ARI, wall time, card) in bench/results.json under the device's name.

python bench/learning_curve.py --minutes 5 [--every 2000] [--workdir DIR]
A smoke test on the CPU: --n 200 --eval-n 40 --every 2 --minutes 0.3 --set model.resolution=16 ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import machine  # noqa: E402

from slotcov.train.models import build_cell  # noqa: E402
from slotcov.config import deep_merge, load, parse_set, resolve_cell  # noqa: E402
from slotcov.data.mdsprites import MDSpritesArrays, convert_split, make_mdsprites  # noqa: E402
from slotcov.evaluate.evaluation import evaluate_model  # noqa: E402
from slotcov.io import atomic_path  # noqa: E402
from slotcov.train.loop import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def prepare(workdir: Path, n_train: int, n_eval: int, resolution: int) -> tuple[MDSpritesArrays, MDSpritesArrays]:
    """The replica (seed 0) rendered and converted as the workflow does: train [0, n), eval [n, n + n_eval)."""
    tfrecord = workdir / "replica.tfrecords"
    if not tfrecord.exists():
        make_mdsprites(n_train + n_eval, 0, tfrecord)
    splits = {"train": (0, n_train), "eval": (n_train, n_eval)}
    for name, (start, count) in splits.items():
        if not (workdir / name / "meta.json").exists():
            convert_split(tfrecord, start, count, workdir / name, resolution)
    return MDSpritesArrays(workdir / "train"), MDSpritesArrays(workdir / "eval")


def fg_ari_now(cfg: dict, run_dir: Path, eval_set, device: str) -> float:
    """FG-ARI (percent) of the checkpoint in `run_dir` (model.pt once the run finished) on the evaluation scenes."""
    path = run_dir / "ckpt.pt" if (run_dir / "ckpt.pt").exists() else run_dir / "model.pt"
    ck = torch.load(path, map_location="cpu", weights_only=True)
    model, _ = build_cell(cfg)
    model.load_state_dict(ck["model"])
    metrics, _ = evaluate_model(model.to(device).eval(), eval_set, batch_size=64, n_samples=0, device=device,
                                progress=False)
    return metrics["fg_ari"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget")
    p.add_argument("--every", type=int, default=2000, help="steps between evaluations")
    p.add_argument("--n", type=int, default=60000, help="training scenes (the paper: 60000)")
    p.add_argument("--eval-n", type=int, default=320)
    p.add_argument("--workdir", default=os.environ.get("SLOTCOV_BENCH_DIR", "/tmp") + "/slotcov-curve")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="cell override (smoke tests)")
    p.add_argument("--device", default="auto")
    p.add_argument("--prepare-only", action="store_true", help="render and convert the replica, then stop")
    p.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cfg = resolve_cell(load(ROOT / "config" / "paper.yaml"), "cmdsprites/sa", parse_set(args.set))
    cfg = deep_merge(cfg, {"train": {"amp": "fp32", "checkpoint_every": args.every, "log_every": args.every}})  # fp32
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train_set, eval_set = prepare(workdir, args.n, args.eval_n, cfg["model"]["resolution"])
    prep_s = time.time() - t0
    if args.prepare_only:
        print(f"replica ready in {workdir} ({prep_s:.0f} s)")
        return 0
    run_dir = workdir / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    points, train_s, step = [], 0.0, 0
    while train_s < args.minutes * 60 and step < cfg["train"]["steps"]:
        t = time.time()
        train(cfg, train_set, run_dir, device=str(device), progress=False, stop_after=args.every)
        train_s += time.time() - t
        step = min(step + args.every, cfg["train"]["steps"])
        loss = float(np.loadtxt(run_dir / "log.csv", delimiter=",", skiprows=1, usecols=2, ndmin=1)[-1])
        points.append({"step": step, "fg_ari": fg_ari_now(cfg, run_dir, eval_set, str(device)),
                       "loss": loss, "train_wall_s": round(train_s, 1)})
        print(json.dumps(points[-1]), flush=True)
    info = machine(device)
    result = {"cell": "cmdsprites/sa", "preset": "paper", "amp": "fp32", "batch_size": cfg["train"]["batch_size"],
              "resolution": cfg["model"]["resolution"], "train_scenes": args.n, "eval_scenes": args.eval_n,
              "card": info["name"], "torch": torch.__version__, "data_prep_s": round(prep_s, 1),
              "steps_per_s": round(step / train_s, 2), "points": points, "set": args.set,
              "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault(info["name"], {"machine": info})["learning_curve_cmdsprites_sa"] = result
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    print("| steps | FG-ARI | train wall time | loss |\n|---:|---:|---:|---:|")
    for pt in points:
        print(f"| {pt['step']} | {pt['fg_ari']:.1f} | {pt['train_wall_s']:.0f} s | {pt['loss']:.4g} |")
    print(f"card: {info['name']}, data preparation {prep_s:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
