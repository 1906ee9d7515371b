"""`slotcov power`: how many seeds each claim's primary test needs, and what they cost on the plan's device.

    slotcov power --config config/paper.yaml [--results results] [--plan profiles/slurm/plan-h100.yaml]

Each claim of slotcov.paper.CLAIMS is simulated with the ledger's own decision code (slotcov.report.decide)
at ALPHA / (number of claims), the level Holm's procedure tests its first claim at (Holm is never
stricter, so the power shown is a lower bound). Power = the smaller of P(reproduced) when the true
effect is the one the claim plans for (`holds`: the paper's own where it prints one) and P(not
reproduced) when the claim is false (`fails`: no effect, for a superiority). Seed spreads: measured
from --results (a cell with 2+ finished seeds), else PRIORS below, each with its source. Seeds per
cell = the most any claim on that cell needs for 80% power; GPU-hours = seeds x hours per job of
the preset's plan (`slotcov plan`, config key `plan`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from slotcov import paper

from slotcov.report import decide
from slotcov.cells import EVAL_ONLY
from slotcov.config import load
from slotcov.errors import UserError

ALPHA = 0.05  # the ledger's family-wise error (slotcov.report.claims.ALPHA)
TARGET = 0.8
MAX_SEEDS = 50
SIMS = 2000

SA_PAPER = ("Locatello et al. 2020 (Slot Attention), Table 1: FG-ARI on Multi-dSprites over 5 seeds, "
            "Slot Attention 91.3 +- 0.3, MONet 90.4 +- 0.8, IODINE 76.7 +- 5.6")
FAILED_SEED = ("Emami et al. 2021 (EfficientMORL), Table 1: of five Slot Attention seeds on CLEVR6 one failed "
               "(93.3 +- 11.1 with it, 98.3 without)")
# Prior seed spread (sd) per (dataset, objective, value) before any run; log10 values for ratios.
PRIORS = {
    ("cmdsprites", "image", "fg_ari"): (1.0, SA_PAPER + "; ColoredMDSprites is harder (paper Sec. 4.1): 1.0"),
    ("cmdsprites", "image", "mbo"): (1.0, "no published seed spread of mBO: as FG-ARI (assumption)"),
    ("cmdsprites", "image", "mse"): (0.05, "assumption: 0.05 in log10 (about 12% between seeds)"),
    ("cmdsprites", "image", "probe"): (0.005, "the sampling error of a score on ~5,000 test objects alone, "
                                               "sqrt(0.85 x 0.15 / 5000) = 0.005: a lower bound"),
    ("coco", "image", "fg_ari"): (2.0, "assumption: twice the ColoredMDSprites prior (no seed spread of Slot "
                                       "Attention with a ViT encoder on COCO at hand); " + FAILED_SEED),
    ("coco", "image", "mbo"): (2.0, "as FG-ARI on COCO (assumption)"),
    ("coco", "image", "stripe"): (0.05, "assumption: 0.05 in log10 (about 12% between seeds)"),
    ("coco", "image", "cov"): (0.5, "assumption: 0.5 in log10 (a term near 1e-10 moves by orders of magnitude)"),
    ("coco", "feature", "fg_ari"): (1.0, "assumption: half the image-reconstruction prior on COCO"),
    ("coco", "feature", "mse"): (0.05, "assumption: 0.05 in log10 (about 12% between seeds)"),
    ("coco", "feature", "slot_cov"): (0.1, "assumption: 0.1 in log10 (about 26% between seeds)"),
}


def prior(cell: str, test: dict) -> tuple[float, str]:
    """(sd, source) of the prior spread of one cell's values in a test."""
    dataset, method = cell.split("/")
    objective = "feature" if method.startswith("dinosaur") else "image"
    value = "probe" if test["source"] == "probe" else test["value"]
    value = "fg_ari" if value == "fg_ari_authors" else value
    if (dataset, objective, value) not in PRIORS:
        raise UserError(f"no prior seed spread for {value} of {cell}: add one to slotcov.report.power.PRIORS")
    return PRIORS[(dataset, objective, value)]


def _trained(side) -> bool:
    return isinstance(side, str) and side not in EVAL_ONLY


def sigmas(claim: dict, spreads: dict | None = None) -> dict[str, tuple[float, str]]:
    """(sd, where it comes from) of each trained side of a claim's primary test: measured, else the prior."""
    test, spreads = claim["primary"], spreads or {}
    if test["source"] == "failures":
        return {}
    return {cell: (spreads[cell], "measured") if cell in spreads else prior(cell, test)
            for cell in (test["a"], test["b"]) if _trained(cell)}


def simulate(claim: dict, n: int, effect: float, sd: dict[str, float], sims: int, rng) -> np.ndarray:
    """Verdict codes of `sims` repetitions of a claim's primary test at n seeds per trained cell, with the
    ledger's decision code at the Bonferroni level."""
    test = claim["primary"]
    region = test["region"] or claim["region"]
    level = ALPHA / len(paper.CLAIMS)
    if test["source"] == "failures":
        return decide.decide_rate(rng.binomial(n, effect, sims), n, region, level)["codes"]
    a = rng.normal(effect, sd[test["a"]], (sims, n))
    b = rng.normal(0.0, sd[test["b"]], (sims, n)) if _trained(test["b"]) else 0.0  # a constant: effect = mean(a)
    return decide.decide_t(a, b, region, level)["codes"]


def claim_power(claim: dict, n: int, spreads: dict | None = None, sims: int | None = None, seed: int = 0) -> dict:
    """P(reproduced | holds), P(not reproduced | fails) and their minimum (the power) at n seeds per cell."""
    sims = sims or SIMS
    if n < decide.MIN_SEEDS:
        return {"holds": 0.0, "fails": 0.0, "power": 0.0}
    sd = {cell: s for cell, (s, _) in sigmas(claim, spreads).items()}
    rng = np.random.default_rng(seed)
    holds = float(np.mean(simulate(claim, n, claim["holds"], sd, sims, rng) == decide.REPRODUCED))
    fails = float(np.mean(simulate(claim, n, claim["fails"], sd, sims, rng) == decide.NOT_REPRODUCED))
    return {"holds": holds, "fails": fails, "power": min(holds, fails)}


def seeds_needed(claim: dict, spreads: dict | None = None, max_seeds: int | None = None,
                 sims: int | None = None) -> int | None:
    """The fewest seeds per cell (>= MIN_SEEDS) with power >= TARGET; None when even max_seeds fall short."""
    ok = lambda n: claim_power(claim, n, spreads, sims)["power"] >= TARGET  # noqa: E731
    max_seeds = max_seeds or MAX_SEEDS
    if not ok(max_seeds):
        return None
    low, high = decide.MIN_SEEDS, max_seeds
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid + 1, high)
    return low


def measured_spreads(results) -> dict[str, dict[str, float]]:
    """Per claim id, the measured seed spread of each trained side of its primary test (2+ finished seeds)."""
    from slotcov.report import claims  # the ledger reads results files the same way for its own power column

    out = {}
    for claim in paper.CLAIMS:
        test = claim["primary"]
        if test["source"] == "failures":
            continue
        sides = {c: claims.read_side(results, c, test, pipeline=test["pipeline"]) for c in (test["a"], test["b"])
                 if _trained(c)}
        out[claim["id"]] = {c: float(np.std(list(s["values"].values()), ddof=1)) for c, s in sides.items()
                            if len(s["values"]) >= 2 and np.std(list(s["values"].values())) > 0}
    return out


def plan_hours(config: dict, plan_path: str | None) -> dict[str, dict]:
    """Per cell of the plan file: hours per job and its range (an estimate's low and high)."""
    path = plan_path or config.get("plan")
    if not path or not Path(path).exists():
        return {}
    cells = (yaml.safe_load(Path(path).read_text()) or {}).get("cells", {})
    return {cell: {"hours": r["hours_per_job"], "low": r.get("hours_low", r["hours_per_job"]),
                   "high": r.get("hours_high", r["hours_per_job"]), "estimate": bool(r.get("estimate"))}
            for cell, r in cells.items() if r.get("hours_per_job") is not None}


def power_table(config: dict, spreads_by_claim: dict) -> list[dict]:
    """One row per claim: the planned effects, the spreads used, seeds needed and power at the preset's seeds."""
    preset_n = len(config["seeds"])
    rows = []
    for claim in paper.CLAIMS:
        spreads = spreads_by_claim.get(claim["id"], {})
        rows.append({"id": claim["id"], "kind": claim["kind"], "holds": claim["holds"], "fails": claim["fails"],
                     "sigmas": sigmas(claim, spreads), "seeds": seeds_needed(claim, spreads),
                     "cells": [c for c in (claim["primary"]["a"], claim["primary"]["b"]) if _trained(c)],
                     "preset_power": claim_power(claim, preset_n, spreads)["power"]})
    return rows


def cell_budget(rows: list[dict], hours: dict) -> dict[str, dict]:
    """Seeds per cell (the most any claim on it needs) and their GPU-hours (with the plan's range)."""
    out = {}
    for r in rows:
        for cell in r["cells"]:
            need = MAX_SEEDS if r["seeds"] is None else r["seeds"]
            cur = out.setdefault(cell, {"seeds": decide.MIN_SEEDS, "claims": []})
            cur["seeds"] = max(cur["seeds"], need)
            cur["claims"].append(r["id"])
    for cell, cur in out.items():
        h = hours.get(cell)
        cur.update({k: None if h is None else cur["seeds"] * h[k] for k in ("hours", "low", "high")})
        cur["estimate"] = bool(h and h["estimate"])
    return out


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def render(config: dict, rows: list[dict], budget: dict, hours_source: str) -> str:
    """The power table, the seeds per cell and their cost, and the claims the preset's seeds leave underpowered."""
    n_preset = len(config["seeds"])
    lines = [f"power of each claim's primary test (slotcov.report.decide at alpha {ALPHA}/{len(paper.CLAIMS)} = "
             f"{ALPHA / len(paper.CLAIMS):.4f}, {SIMS} simulations; target {TARGET})",
             f"{'claim':<5} {'kind':<15} {'holds':>8} {'fails':>8}  {'seeds':>6}  {'power@' + str(n_preset):>8}  spread (sd)"]
    for r in rows:
        seeds = f">{MAX_SEEDS}" if r["seeds"] is None else str(r["seeds"])
        spread = "; ".join(f"{c} {s:.3g} ({'measured' if src == 'measured' else 'prior'})"
                           for c, (s, src) in r["sigmas"].items()) or "binomial"
        lines.append(f"{r['id']:<5} {r['kind']:<15} {_fmt(r['holds']):>8} {_fmt(r['fails']):>8}  {seeds:>6}  "
                     f"{r['preset_power']:>8.2f}  {spread}")
    lines += ["", f"seeds per cell for {TARGET:.0%} power on every claim it carries (capped at {MAX_SEEDS}), "
                  f"GPU-hours from {hours_source}:",
              f"{'cell':<28} {'seeds':>5} {'GPU-h':>8}  {'range':>15}  claims"]
    total = np.zeros(3)
    for cell, b in sorted(budget.items()):
        if b["hours"] is None:
            cost, span = "-", "not in the plan"
        else:
            total += [b["hours"], b["low"], b["high"]]
            cost, span = f"{b['hours']:.0f}", (f"{b['low']:.0f}-{b['high']:.0f}" + " est") if b["estimate"] else ""
        lines.append(f"{cell:<28} {b['seeds']:>5} {cost:>8}  {span:>15}  {', '.join(b['claims'])}")
    lines.append(f"total: {total[0]:.0f} GPU-hours (range {total[1]:.0f}-{total[2]:.0f}) for the cells in the plan")
    weak = [r["id"] for r in rows if r["preset_power"] < TARGET]
    lines.append(f"the preset's {n_preset} seeds leave {len(weak)} of {len(rows)} claims under {TARGET:.0%} power"
                 + (f": {', '.join(weak)}" if weak else ""))
    return "\n".join(lines)


def cli_power(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slotcov power", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config.yaml", help="preset file (default: config.yaml)")
    p.add_argument("--results", help="results folder: seed spreads measured from its finished runs")
    p.add_argument("--plan", help="plan file with hours per job (default: the preset's `plan` key)")
    args = p.parse_args(argv)
    config = load(args.config)
    if args.results and not Path(args.results).is_dir():
        raise UserError(f"--results {args.results}: no such folder; leave it out to plan from the prior spreads")
    spreads = measured_spreads(args.results) if args.results else {}
    rows = power_table(config, spreads)
    hours_source = args.plan or config.get("plan") or "no plan"
    print(render(config, rows, cell_budget(rows, plan_hours(config, args.plan)), hours_source))
    return 0
