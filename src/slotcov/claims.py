"""The claims ledger: each claim of the paper (slotcov.paper.CLAIMS) tested on the result files.

    slotcov claims --results results --out reports/claims

Every part of a claim compares two cells (or a cell with a number the paper quotes) over
seeds and gets our effect (difference of means), a 95% interval over seeds and a verdict:
  reproduced      the interval lies entirely on the side the paper asserts
  not reproduced  the interval lies entirely on the other side
  inconclusive    the interval straddles the boundary, or a cell has fewer than 2 seeds
  not run         a cell (or the value, pipeline or log column) is missing
A seed whose run diverged (`"diverged": 1`) has no numbers and enters no mean; each row's
`failure_rate` says how many seeds of each of its cells diverged ("coco/sa 1/3 diverged").
Intervals: Welch's t for a difference of two means (no equal-variance assumption; exact
under normal seeds and honest, i.e. wide, at 2-5 seeds), a one-sample t interval for a cell
against a constant. A claim about a size ("about 10 points") is judged on its direction;
`paper_in_ci` says whether the paper's own effect lies inside our interval. An equivalence
claim ("~", C11) is reproduced when the interval lies inside +-margin.
On COCO each part is judged under every pipeline found in the metrics files
(`pipelines: {authors: ..., dinosaur: ...}`; files without that section: "primary") and for
both FG-ARI variants present (`fg_ari`, `fg_ari_authors`).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from slotcov import paper
from slotcov.errors import UserError
from slotcov.io import atomic_path, write_json, write_text
from slotcov.results import read_json

LEVEL = 0.95
WELCH = "Welch t (95%)"
ONE_SAMPLE = "one-sample t (95%)"
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run")
LOG_FLOOR = 1e-30  # a logged term of exactly 0 counts as 1e-30 on the log10 scale
COLUMNS = ["id", "part", "pipeline", "metric", "baseline", "a", "b", "op", "paper", "ours", "ci_low", "ci_high",
           "paper_in_ci", "mean_a", "mean_b", "n_a", "n_b", "n_seeds", "method", "verdict", "why", "failure_rate", "claim",
           "where"]


def _log(msg: str) -> None:
    print(f"slotcov claims: {msg}", file=sys.stderr)


# ----------------------------------------------------------------------------- reading results

def _seed_files(folder: Path, pattern: str) -> dict[int, Path]:
    out = {}
    for path in sorted(folder.glob(pattern)):
        m = re.fullmatch(r"seed(\d+)(\.json)?", path.name)
        if m:
            out[int(m.group(1))] = path
    return out


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def cell_values(results, source: str, cell: str, value: str, pipeline: str = "primary") -> dict[int, float]:
    """Per-seed values of one cell: a key of its metrics/probe JSON, or log10 of a log.csv column's last value.

    pipeline "primary" (or "-") reads the top-level keys; another name reads `pipelines.<name>` of each file.
    """
    results = Path(results)
    out = {}
    if source == "log":
        for seed, run_dir in _seed_files(results / "runs" / cell, "seed*").items():
            path = run_dir / "log.csv"
            record = run_dir / "run.json"
            if not path.is_file() or (record.is_file() and read_json(record).get("status") == "diverged"):
                continue
            log = pd.read_csv(path)
            column = pd.to_numeric(log[value], errors="coerce").dropna() if value in log else pd.Series()
            if len(column):
                out[seed] = math.log10(max(float(column.iloc[-1]), LOG_FLOOR))
        return out
    for seed, path in _seed_files(results / source / cell, "seed*.json").items():
        data = read_json(path)
        if data.get("diverged") == 1:  # no numbers: never in a mean (failure_rate counts it)
            continue
        if pipeline not in ("primary", "-"):
            data = (data.get("pipelines") or {}).get(pipeline) or {}
        number = _number(data.get(value))
        if number is not None:
            out[seed] = number
    return out


def failure_rate(results, source: str, cell: str) -> tuple[int, int]:
    """(diverged, total) seeds of a cell, from its metrics files (probe files for source "probe")."""
    files = _seed_files(Path(results) / ("probe" if source == "probe" else "metrics") / cell, "seed*.json")
    return sum(read_json(path).get("diverged") == 1 for path in files.values()), len(files)


def coco_variants(results) -> tuple[list[str], list[str]]:
    """COCO pipelines (["primary"] when no file has a `pipelines` section) and FG-ARI keys present."""
    pipelines, metrics = set(), ["fg_ari"]
    for path in Path(results, "metrics", "coco").glob("*/seed*.json"):
        if path.name.endswith(".provenance.json"):
            continue
        data = read_json(path)
        sections = data.get("pipelines") or {}
        pipelines |= set(sections)
        if "fg_ari_authors" in data or any("fg_ari_authors" in s for s in sections.values()):
            metrics = ["fg_ari", "fg_ari_authors"]
    return sorted(pipelines) or ["primary"], metrics


# ----------------------------------------------------------------------------- statistics

def interval(a: list[float], b: list[float] | float) -> tuple[float, float, float, str]:
    """(effect, low, high, method): mean(a) - mean(b) with Welch's t interval, or mean(a) - b (a number)
    with a one-sample t interval. Needs 2+ values per list; zero spread gives a zero-width interval."""
    a = np.asarray(a, float)
    if np.ndim(b) == 0:
        effect, spread, method = a.mean() - float(b), a.std(ddof=1), ONE_SAMPLE
        if spread == 0:
            return effect, effect, effect, method
        ci = stats.ttest_1samp(a, float(b)).confidence_interval(LEVEL)  # an interval for mean(a)
        return float(effect), float(ci.low - float(b)), float(ci.high - float(b)), method
    else:
        b = np.asarray(b, float)
        effect, method = a.mean() - b.mean(), WELCH
        if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
            return effect, effect, effect, method
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(LEVEL)
    return float(effect), float(ci.low), float(ci.high), method


def verdict(op: str, low: float, high: float, margin: float | None = None) -> tuple[str, str]:
    """The verdict of an interval [low, high] for the asserted relation, and why."""
    if op == "~":
        if -margin < low and high < margin:
            return "reproduced", f"interval inside +-{margin:g}"
        if low > margin or high < -margin:
            return "not reproduced", f"interval outside +-{margin:g}"
        return "inconclusive", f"interval crosses +-{margin:g}"
    above, below = low > 0, high < 0
    if (op == ">" and above) or (op == "<" and below):
        return "reproduced", f"interval entirely {'above' if op == '>' else 'below'} 0"
    if (op == ">" and below) or (op == "<" and above):
        return "not reproduced", f"interval entirely {'below' if op == '>' else 'above'} 0"
    return "inconclusive", "interval contains 0"


# ----------------------------------------------------------------------------- the ledger

def _mean(values: dict[int, float]) -> float:
    return float(np.mean(list(values.values()))) if values else np.nan


def _judge(part: dict, va: dict[int, float], vb: dict[int, float] | None) -> dict:
    """Effect, interval and verdict of one part from the per-seed values of its sides (vb None: a number)."""
    a, b = part["a"], part["b"]
    pa, pb = part["paper"] or (None, None)
    sides = [(a, va)] + ([(b, vb)] if vb is not None else [])
    row = {"paper": round(pa - pb, 6) if pa is not None else np.nan, "ours": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "paper_in_ci": "", "mean_a": _mean(va), "mean_b": float(b) if vb is None else _mean(vb),
           "n_a": len(va), "n_b": 0 if vb is None else len(vb), "n_seeds": min(len(v) for _, v in sides),
           "method": ""}
    missing = [cell for cell, v in sides if not v]
    if missing:
        return row | {"verdict": "not run", "why": "no result for " + " and ".join(missing)}
    row["ours"] = row["mean_a"] - row["mean_b"]
    few = [f"{cell} has 1 seed" for cell, v in sides if len(v) < 2]
    if few:
        return row | {"verdict": "inconclusive", "why": "; ".join(few) + ": no interval from one seed"}
    row["ours"], row["ci_low"], row["ci_high"], row["method"] = interval(
        list(va.values()), b if vb is None else list(vb.values()))
    if pa is not None:
        row["paper_in_ci"] = "yes" if row["ci_low"] <= row["paper"] <= row["ci_high"] else "no"
    row["verdict"], row["why"] = verdict(part["op"], row["ci_low"], row["ci_high"], part["margin"])
    return row


def _variants(part: dict, pipelines: list[str], fg_metrics: list[str]) -> list[tuple[str, str]]:
    """(pipeline, metric) pairs a part is judged under."""
    if part["source"] != "metrics" or not part["a"].startswith("coco/"):
        return [("-", part["value"] if part["source"] != "log" else f"log10 {part['value']}")]
    metrics = fg_metrics if part["value"] == "fg_ari" else [part["value"]]
    return [(p, m) for p in pipelines for m in metrics]


def ledger(results) -> pd.DataFrame:
    """One row per (claim part, pipeline, metric): effect, 95% interval over seeds, verdict."""
    pipelines, fg_metrics = coco_variants(results)
    rows = []
    for claim in paper.CLAIMS:
        for part in claim["parts"]:
            for pipeline, metric in _variants(part, pipelines, fg_metrics):
                key = part["value"] if part["source"] == "log" else metric
                read = lambda cell: cell_values(results, part["source"], cell, key, pipeline)  # noqa: E731
                va = read(part["a"])
                vb = None if isinstance(part["b"], (int, float)) else read(part["b"])
                b_label = part["b"] if vb is not None else f"{part['b']:g} ({part['baseline'] or 'threshold'})"
                cells = [part["a"]] + ([part["b"]] if vb is not None else [])
                failures = {cell: failure_rate(results, part["source"], cell) for cell in cells}
                judged = _judge(part, va, vb)
                lost = [f"every seed of {c} diverged" for c, (k, n) in failures.items() if n and k == n]
                if judged["verdict"] == "not run" and lost:
                    judged["why"] += f" ({'; '.join(lost)})"
                rows.append({"id": claim["id"], "part": part["part"], "pipeline": pipeline, "metric": metric,
                             "baseline": part["baseline"] or "-", "a": part["a"], "b": b_label, "op": part["op"],
                             "claim": claim["claim"], "where": claim["where"],
                             "failure_rate": "; ".join(f"{c} {k}/{n} diverged" for c, (k, n) in failures.items())}
                            | judged)
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- outputs

def _fmt(value) -> str:
    return "--" if pd.isna(value) else f"{value:.4g}"


def _ci(row) -> str:
    return "--" if pd.isna(row["ci_low"]) else f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"


RULES = ("Effect = mean(a) - mean(b) over seeds (b a number: mean(a) - b). 95% interval: Welch's t for two "
         "cells, one-sample t against a number. Verdict: reproduced = interval entirely on the asserted side "
         "of 0 (for `~`: inside +-margin); not reproduced = entirely on the other side; inconclusive = "
         "straddles, or a cell has one seed; not run = a cell is missing. A size ('about 10 points') is "
         "judged on its direction; paper_in_ci says whether the paper's effect lies in our interval. "
         "Baseline `quoted`: b is a number the paper quotes from DINOSAUR's paper (other protocol); `ours`: "
         "b is our own run (C11). A claim with several parts holds only when every part is reproduced.")


def to_markdown(df: pd.DataFrame) -> str:
    head = ["id", "part", "pipeline", "metric", "baseline", "paper", "ours", "95% CI", "n", "verdict", "why",
            "failure rate"]
    lines = ["# Claims ledger", "", RULES, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        cells = [r["id"], r["part"], r["pipeline"], r["metric"], r["baseline"], _fmt(r["paper"]), _fmt(r["ours"]),
                 _ci(r), str(r["n_seeds"]), f"**{r['verdict']}**", r["why"], r["failure_rate"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## The claims", ""]
    for c in paper.CLAIMS:
        counts = df.loc[df["id"] == c["id"], "verdict"].value_counts()
        tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
        lines.append(f"- **{c['id']}** ({c['where']}): {c['claim']} Rows: {tally}.")
    return "\n".join(lines) + "\n"


def _tex(text) -> str:
    text = str(text).replace("~", "≈")
    text = re.sub(r"([&%$#_{}^\\])", lambda m: {"\\": r"\textbackslash{}", "^": r"\textasciicircum{}"}.get(
        m.group(1), "\\" + m.group(1)), text)
    return text.replace("≈", r"$\approx$").replace(">", r"$>$").replace("<", r"$<$")


def to_latex(df: pd.DataFrame) -> str:
    """A longtable (the report's preamble loads longtable and booktabs)."""
    head = "Claim & Part & Pipeline / metric & Paper & Ours & 95\\% CI & n & Verdict \\\\\n"
    lines = ["% Generated by `slotcov claims`; do not edit.", "{\\footnotesize\\setlength{\\tabcolsep}{3pt}",
             "\\begin{longtable}{llp{3.2cm}rrlrl}", "\\toprule", head + "\\midrule", "\\endhead"]
    for _, r in df.iterrows():
        cells = [r["id"], r["part"], f"{r['pipeline']} / {r['metric']}", _fmt(r["paper"]), _fmt(r["ours"]), _ci(r),
                 r["n_seeds"], r["verdict"]]
        lines.append(" & ".join(_tex(c) for c in cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{longtable}", "\\par " + _tex(RULES), "}"]
    return "\n".join(lines) + "\n"


def row_key(row) -> str:
    """The DVC metric name of a row (no dots: DVC splits nested keys on them)."""
    words = {">": " gt ", "<": " lt ", "~": " eq "}
    parts = [re.sub(r"[^A-Za-z0-9_]+", "-", re.sub("[<>~]", lambda m: words[m.group()], str(p))).strip("-")
             for p in (row["id"], row["part"], row["pipeline"], row["metric"])]
    return "/".join(p for p in parts if p)


def to_json(df: pd.DataFrame) -> dict:
    """{row key: row}: DVC shows string and number changes (`dvc metrics diff`); NaN becomes null."""
    clean = df.astype(object).where(df.notna(), None)
    return {row_key(r): {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for _, r in clean.iterrows()}


def write_ledger(results, out_dir) -> pd.DataFrame:
    """Write claims.csv, claims.md, claims.tex and claims.json into `out_dir`."""
    df = ledger(results)
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "claims.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    write_text(out_dir / "claims.md", to_markdown(df))
    write_text(out_dir / "claims.tex", to_latex(df))
    write_json(out_dir / "claims.json", to_json(df))
    counts = df["verdict"].value_counts().to_dict()
    _log(f"{len(df)} rows for {df['id'].nunique()} claims: {counts}; wrote {out_dir}/claims.{{csv,md,tex,json}}")
    return df


def cli_claims(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slotcov claims", description=__doc__.split("\n")[0])
    p.add_argument("--results", required=True, help="results folder (metrics/, probe/, runs/)")
    p.add_argument("--out", required=True, help="output folder for claims.{csv,md,tex,json}")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        raise UserError(f"--results {args.results}: no such folder; run the workflow first or pass the results folder")
    write_ledger(args.results, args.out)
    return 0
