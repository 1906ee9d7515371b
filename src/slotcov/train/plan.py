"""`slotcov plan`: GPU-hours of a preset on one device, and the SLURM time limit of each train job.

For every trained cell of the preset (and the sweep), the steps/s of its model come from
bench/results.json for the device's name (`slotcov bench` writes them), or from a short
measurement on this machine (`--measure`). A cell whose model was not measured there is
ESTIMATED: its FLOPs per step (slotcov.train.flops) over the FLOP/s a measured model achieved on that
device, with a range from the slowest to the fastest FLOP/s among the device's measurements.
Hours per job = steps / steps/s; the SLURM runtime is that (an estimate: its high end) x
`--margin`, rounded up to whole hours and capped. `--out FILE` writes the plan that the
workflow's train rules read (config key `plan`) instead of the preset's fixed runtime.
"""
from __future__ import annotations

import functools
import json
import math
import re
import tempfile
import time
from pathlib import Path

import yaml

from slotcov.cells import EVAL_ONLY, PAPER_CELLS
from slotcov.config import check_override, deep_merge, load, load_yaml, parse_set, resolve_cell
from slotcov.errors import UserError
from slotcov.io import atomic_path

STAND_IN = "eager fp32 baseline (bench/baseline.py), a conservative stand-in for the fp32 path"


def minutes(value) -> int:
    """A SLURM/Snakemake runtime (minutes as a number, or "90m", "12h", "7d") in minutes."""
    if isinstance(value, (int, float)):
        return int(math.ceil(value))
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(m|min|h|d)?\s*", str(value))
    if not m:
        raise UserError(f"runtime {value!r} not understood: write minutes (90) or 90m, 12h, 7d")
    return int(math.ceil(float(m[1]) * {None: 1, "m": 1, "min": 1, "h": 60, "d": 1440}[m[2]]))


def slurm_runtime(hours: float, margin: float, cap_min: int) -> int:
    """hours x margin in minutes, rounded up to whole hours, at most cap_min."""
    return min(cap_min, 60 * math.ceil(hours * margin))


def _precision(cfg: dict) -> str:
    """fp32 or bf16: what the trainer runs on a GPU for this cell (train.amp)."""
    return cfg["train"]["amp"]


def measurements(results: dict, device: str) -> list[dict]:
    """Every training measurement of `device` in a bench/results.json: cell, precision, steps/s, label."""
    if device not in results:
        known = ", ".join(repr(k) for k in results if not k.endswith("(quick)")) or "none"
        raise UserError(f"no measurements for device {device!r} in bench/results.json; known devices: {known} "
                        f"(or run `slotcov plan --measure` on that device)")
    entry, out = results[device], []
    for key, bench in entry.items():
        m = re.fullmatch(r"train_(cmdsprites|coco)_(\w+?)(_compiled|_fp32|_bf16)?", key)
        if not m or not isinstance(bench, dict) or f"{m[1]}/{m[2]}" not in PAPER_CELLS:
            continue
        cell, suffix = f"{m[1]}/{m[2]}", m[3] or ""
        when = bench.get("measured_at", entry.get("measured_at", "?"))
        bs = bench["batch_size"]
        timed = {"model": bench.get("model"), "step_gflop": bench.get("step_gflop")}  # which model was timed
        if suffix in ("_fp32", "_bf16"):  # slotcov's trainer, the precision named, compile as on the device
            prec = suffix[1:]
            out.append({**timed, "cell": cell, "precision": prec, "batch_size": bs, "rank": 0,
                        "steps_per_s": bench["ours_steps_per_s"],
                        "label": f"slotcov {prec} trainer (compile {bench.get('compile')}), {key}, {when}"})
        elif "ours_steps_per_s" in bench:  # before the fp32 path: `amp: auto` = bf16 autocast on CUDA only
            prec = "bf16" if entry.get("machine", {}).get("device") == "cuda" else "fp32"
            out.append({**timed, "cell": cell, "precision": prec, "batch_size": bs, "rank": 1 if suffix else 2,
                        "steps_per_s": bench["ours_steps_per_s"],
                        "label": f"slotcov {prec} trainer (compile {bench.get('compile')}), {key}, {when}"})
        if bench.get("baseline_steps_per_s"):
            out.append({**timed, "cell": cell, "precision": "fp32", "batch_size": bs, "rank": 3,
                        "steps_per_s": bench["baseline_steps_per_s"], "label": f"{STAND_IN}, {key}, {when}"})
    return out


def same_model(cfg: dict, m: dict) -> bool:
    """Whether measurement `m` timed this cell's model: its recorded model settings are equal, or (older
    entries, which recorded none) its FLOPs per step, counted as they were then (at batch 2, scaled),
    equal this model's within 2% -- a cell whose model changed since is never timed by the old number."""
    if m.get("model") is not None:
        return m["model"] == cfg["model"]
    if not m.get("step_gflop"):
        return False
    from slotcov.train.flops import step_flops

    small = min(m["batch_size"], 2)
    ours = step_flops(cfg, small) * m["batch_size"] / small / 1e9
    return abs(ours - m["step_gflop"]) <= 0.02 * m["step_gflop"]


def pick(cfg: dict, found: list[dict]) -> dict | None:
    """The best measurement of a model like this cell's (same model, batch size and precision)."""
    same = [m for m in found if m["precision"] == _precision(cfg) and m["batch_size"] == cfg["train"]["batch_size"]
            and PAPER_CELLS[m["cell"]]["model"] == cfg["model"] and same_model(cfg, m)]
    return min(same, key=lambda m: (m["rank"], -m["steps_per_s"]), default=None)


@functools.lru_cache(maxsize=None)
def _gflop(model_json: str, batch_size: int, legacy: bool) -> float:
    """GFLOPs of one step of a model (JSON of its settings) at a batch size, counted as the measurement it is
    compared with was: at the batch size itself, or (entries that recorded no model) at batch 2, scaled."""
    from slotcov.train.flops import step_flops

    cfg = {"model": json.loads(model_json)}
    small = min(batch_size, 2) if legacy else batch_size
    return step_flops(cfg, small) * batch_size / small / 1e9


def estimate(cfg: dict, found: list[dict]) -> dict | None:
    """steps/s of a model never measured on this device, from the FLOP/s its measured models achieved:
    the central value from a measurement of the same model kind (else the geometric mean of all), the range
    from the slowest to the fastest; None without a measurement of this precision that recorded its FLOPs."""
    refs = [m for m in found if m["precision"] == _precision(cfg) and m.get("step_gflop")]
    if not refs:
        return None
    model, bs = json.dumps(cfg["model"], sort_keys=True), cfg["train"]["batch_size"]
    rates = [m["steps_per_s"] * m["step_gflop"] / _gflop(model, bs, m.get("model") is None) for m in refs]
    tflops = [m["steps_per_s"] * m["step_gflop"] / 1e3 for m in refs]
    kind = [(m["rank"], -r) for r, m in zip(rates, refs)
            if (m.get("model") or PAPER_CELLS[m["cell"]]["model"])["kind"] == cfg["model"]["kind"]]
    central = -min(kind)[1] if kind else math.exp(sum(map(math.log, rates)) / len(rates))
    low, high = (min(rates), max(rates)) if len(set(rates)) > 1 else (central / 2, central * 2)
    why = (f"same model kind measured ({cfg['model']['kind']})" if kind else "no model of this kind measured: "
           "geometric mean") + (f"; range over {len(refs)} measurements, {min(tflops):.0f}-{max(tflops):.0f} "
                                "TFLOP/s" if len(set(rates)) > 1 else "; one measurement: range x/÷ 2 assumed")
    return {"steps_per_s": central, "low": low, "high": high,
            "label": f"ESTIMATE from FLOPs per step ({_gflop(model, bs, False):.0f} GFLOP): {why}"}


def trainer_rate(run_cfg: dict, data, warm: int, steps: int, device: str = "auto") -> float:
    """steps/s of slotcov's trainer on `data` over `steps` steps after `warm` (timed from its log.csv)."""
    import numpy as np

    from slotcov.train.loop import train

    run = deep_merge(run_cfg, {"train": {"steps": warm + steps, "log_every": 1}})
    with tempfile.TemporaryDirectory() as tmp:
        train(run, data, tmp, device=device, progress=False)
        secs = np.loadtxt(Path(tmp) / "log.csv", delimiter=",", skiprows=1, usecols=-1, ndmin=1)
    return steps / (secs[-1] - secs[warm - 1])


def measure(cfg: dict, steps: int = 20, warm: int = 5) -> dict:
    """steps/s of the trainer on this machine for the cell `cfg`, on random inputs of its shape."""
    from slotcov.data import InMemory
    from slotcov.train.flops import random_batch
    from slotcov.io import resolve_device

    data = InMemory(**random_batch(cfg, 2 * cfg["train"]["batch_size"]))
    run = deep_merge(cfg, {"train": {"checkpoint_every": 10 ** 9}})
    return {"steps_per_s": trainer_rate(run, data, warm, steps),
            "label": f"measured now ({resolve_device('auto').type}): {steps} steps after {warm} warm-up, "
                     f"{time.strftime('%Y-%m-%d %H:%M')}"}


def jobs(config: dict, overrides: dict | None = None) -> list[tuple[str, dict, int]]:
    """(cell, resolved settings of its seed-0 job, number of train jobs) for the cells and the sweep."""
    out = [(cell, resolve_cell(config, cell, overrides), len(config["seeds"]))
           for cell in config["cells"] if cell not in EVAL_ONLY]
    sweep = config["sweep"]
    if sweep["betas"]:
        cell = sweep["cell"]
        n = len(sweep["betas"]) * len(sweep["seeds"])
        out.append((f"sweep {cell}", resolve_cell(config, cell, overrides), n))
    return out


def make_plan(config: dict, device: str, results: dict | None, margin: float = 1.5, cap: str = "7d",
              measure_steps: int | None = None, overrides: dict | None = None) -> dict:
    """The plan as plain data: per cell its steps/s, source, hours per job and SLURM runtime (minutes)."""
    cap_min, fallback = minutes(cap), config["resources"]["train"]["runtime"]
    found = measurements(results, device) if measure_steps is None else []
    cells, timed = {}, {}
    for name, cfg, n in jobs(config, overrides):
        key = json.dumps([cfg["model"], cfg["train"]["batch_size"], _precision(cfg)], sort_keys=True)
        if measure_steps is not None:
            m = timed[key] = timed.get(key) or measure(cfg, measure_steps)
        else:
            m = pick(cfg, found) or estimate(cfg, found)
        row = {"jobs": n, "steps": cfg["train"]["steps"], "batch_size": cfg["train"]["batch_size"],
               "precision": _precision(cfg)}
        cells[name] = row | (_fallback_row(fallback, cap_min) if m is None else _timed_row(cfg, m, margin, cap_min))
    return {"device": device, "preset": config.get("preset"), "margin": margin, "cap_min": cap_min,
            "made_at": time.strftime("%Y-%m-%d %H:%M"), **_totals(cells), "cells": cells}


def _fallback_row(fallback, cap_min: int) -> dict:
    return {"steps_per_s": None, "source": f"not measured on this device: the preset's runtime {fallback}",
            "hours_per_job": None, "estimate": False, "runtime_min": min(cap_min, minutes(fallback))}


def _timed_row(cfg: dict, m: dict, margin: float, cap_min: int) -> dict:
    """Hours per job of a measured (or estimated: with its range) cell, and its SLURM runtime."""
    hours = cfg["train"]["steps"] / m["steps_per_s"] / 3600
    row = {"steps_per_s": round(m["steps_per_s"], 3), "source": m["label"], "hours_per_job": round(hours, 2),
           "estimate": "low" in m}
    if "low" in m:  # an estimate: its range, and the runtime from its high end
        row.update(hours_low=round(cfg["train"]["steps"] / m["high"] / 3600, 2),
                   hours_high=round(cfg["train"]["steps"] / m["low"] / 3600, 2))
    return row | {"runtime_min": slurm_runtime(row.get("hours_high", hours), margin, cap_min)}


def _totals(cells: dict) -> dict:
    """GPU-hours of the measured jobs, of the estimated ones (with range) and in all; jobs of each sort."""
    measured = [r for r in cells.values() if r["hours_per_job"] is not None and not r["estimate"]]
    estimated = [r for r in cells.values() if r["estimate"]]
    sure = sum(r["hours_per_job"] * r["jobs"] for r in measured)
    est = [sum(r[k] * r["jobs"] for r in estimated) for k in ("hours_per_job", "hours_low", "hours_high")]
    return {"gpu_hours_measured_jobs": round(sure, 1), "gpu_hours_estimated_jobs": round(est[0], 1),
            "gpu_hours_total": round(sure + est[0], 1), "gpu_hours_low": round(sure + est[1], 1),
            "gpu_hours_high": round(sure + est[2], 1), "jobs_measured": sum(r["jobs"] for r in measured),
            "jobs_estimated": sum(r["jobs"] for r in estimated),
            "jobs_not_measured": sum(r["jobs"] for r in cells.values() if r["hours_per_job"] is None)}


def train_runtime(config: dict, cell: str, default):
    """The SLURM runtime (minutes) of one train job of `cell`: from the plan file named by the config's
    `plan` key when it exists and covers the cell at the preset's step count, else `default`."""
    path = config.get("plan")
    if not path or not Path(path).exists():
        return default
    row = (load_yaml(Path(path).read_text()) or {}).get("cells", {}).get(cell)
    if not row or row.get("steps") != resolve_cell(config, cell)["train"]["steps"]:
        return default
    return row["runtime_min"]


def _duration(minutes_: int) -> str:
    return f"{minutes_ // 60}h" if minutes_ % 60 == 0 else f"{minutes_}m"


def render(plan: dict) -> str:
    """The plan as a text table."""
    h = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = [f"plan of preset {plan['preset']} on {plan['device']} (SLURM runtime = hours x {plan['margin']}, "
             f"an estimate's high end, rounded up to whole hours, at most {plan['cap_min'] // 60} h)",
             f"{'cell':<32} {'jobs':>4} {'steps':>8} {'steps/s':>8} {'h/job':>7} {'range':>11} {'runtime':>8}  source"]
    for name, r in plan["cells"].items():
        sps = "-" if r["steps_per_s"] is None else f"{r['steps_per_s']:.2f}"
        span = f"{r['hours_low']:.1f}-{r['hours_high']:.1f}" if r.get("estimate") else ""
        lines.append(f"{name:<32} {r['jobs']:>4} {r['steps']:>8} {sps:>8} {h(r['hours_per_job']):>7} {span:>11} "
                     f"{_duration(r['runtime_min']):>8}  {r['source']}")
    lines.append(f"total: {plan['gpu_hours_total']:.1f} GPU-hours (range {plan['gpu_hours_low']:.1f}-"
                 f"{plan['gpu_hours_high']:.1f}): {plan['gpu_hours_measured_jobs']:.1f} for {plan['jobs_measured']} "
                 f"measured train jobs, {plan['gpu_hours_estimated_jobs']:.1f} for {plan['jobs_estimated']} estimated "
                 "from FLOPs per step" + (f"; {plan['jobs_not_measured']} jobs neither measured nor estimated (not in "
                                          "the total)" if plan["jobs_not_measured"] else ""))
    return "\n".join(lines)


def cli_plan(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="slotcov plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config.yaml", help="preset file (default: config.yaml)")
    p.add_argument("--device", help="a device name as in bench/results.json, e.g. 'NVIDIA H100 80GB HBM3'")
    p.add_argument("--results", default="bench/results.json", help="benchmark results (default: bench/results.json)")
    p.add_argument("--measure", type=int, nargs="?", const=20, metavar="STEPS",
                   help="time STEPS (default 20) steps of each model on this machine instead")
    p.add_argument("--margin", type=float, default=1.5, help="SLURM runtime = measured hours x margin (1.5)")
    p.add_argument("--cap", default="7d", help="longest SLURM runtime (default 7d)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a cell setting of every job, e.g. --set train.amp=bf16")
    p.add_argument("--out", help="write the plan (YAML) here, for the config key `plan`")
    args = p.parse_args(argv)
    config = load(args.config)
    overrides = parse_set(args.set)
    check_override(overrides)
    results = None
    if args.measure is None:
        if not args.device:
            raise UserError("give --device NAME (a device of bench/results.json) or --measure")
        if not Path(args.results).exists():
            raise UserError(f"{args.results} not found: run `slotcov bench` or pass --results FILE")
        results = json.loads(Path(args.results).read_text())
    device = device_name() if args.measure is not None else args.device
    plan = make_plan(config, device, results, args.margin, args.cap, args.measure, overrides)
    print(render(plan))
    if args.out:
        plan["made_by"] = "slotcov plan " + " ".join(argv)
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(yaml.safe_dump(plan, sort_keys=False, width=200))
        print(f"wrote {args.out}")
    return 0
