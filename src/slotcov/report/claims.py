"""The claims ledger: every claim of the paper (slotcov.paper.CLAIMS) judged on the result files.

    slotcov claims --results results --out reports/claims

Each claim has one primary test (one comparison, one pipeline, one metric), a region of the effect
where it holds, and a smallest effect of interest, all fixed in slotcov.paper before anything runs.
Its verdict (slotcov.report.decide): reproduced = the interval lies inside the region; not reproduced = it
lies outside (including "smaller than the smallest effect of interest"); inconclusive otherwise, or
below 3 finished seeds in a trained cell, or with zero spread; not run = a cell or a key is missing.
The family of the claims' primary tests is corrected with Holm's procedure (family-wise error ALPHA,
one-sided); the interval of each claim is at its Holm level. A diverged seed counts in the failure
rate and never in a mean. The paper's single run is held against a 95% prediction interval for one
run. Secondary rows (the other comparisons of a claim, the other COCO pipeline and FG-ARI code) are
judged at ALPHA without correction and are labelled so. A test under a COCO pipeline reads the numbers
of the models trained and scored under that pipeline (the details files' `pipelines.<name>`): "not run"
where no model was trained under it (data.coco.train_pipelines).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from slotcov import paper

from slotcov.report import decide
from slotcov.cells import EVAL_ONLY
from slotcov.errors import UserError
from slotcov.report.results import read_json, read_result

ALPHA = 0.05  # family-wise error of the decisive verdicts over the claims' primary tests
PI_LEVEL = 0.95  # the prediction interval the paper's single run is held against
TARGET_POWER = 0.8
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run")
CODE = {"reproduced": 1, "not reproduced": -1, "inconclusive": 0, "not run": None}  # per-claim DVC metric
NAMES = {decide.REPRODUCED: "reproduced", decide.NOT_REPRODUCED: "not reproduced", decide.INCONCLUSIVE: "inconclusive"}
METRIC_KEYS = ["verdict_code", "effect", "ci_low", "ci_high", "n_seeds", "power", "failure_rate"]
SUMMARY = ["id", "where", "claim", "kind", "rule", "verdict", "verdict_code", "effect", "ci_low", "ci_high", "level",
           "p", "paper", "paper_in_pi", "n_seeds", "power", "failure_rate", "unit", "why"]
ROWS = ["id", "role", "test", "pipeline", "metric", "a", "b", "rule", "paper", "effect", "ci_low", "ci_high", "level",
        "paper_in_pi", "pi_low", "pi_high", "mean_a", "mean_b", "n_a", "n_b", "failed_a", "failed_b", "n_seeds",
        "method", "verdict", "why"]


def _log(msg: str) -> None:
    print(f"slotcov claims: {msg}", file=sys.stderr)


# ----------------------------------------------------------------------------- reading results

def _seed_paths(folder: Path, pattern: str) -> dict[int, Path]:
    out = {}
    for path in sorted(folder.glob(pattern)):
        m = re.fullmatch(r"seed(\d+)(\.json)?", path.name)
        if m:
            out[int(m.group(1))] = path
    return out


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _diverged(data: dict) -> bool:
    return data.get("diverged") == 1


def _section(data: dict, pipeline: str | None) -> dict | None:
    """The numbers of one COCO pipeline: `pipelines.<name>` (the model trained and scored under it) where the
    file has sections, None where it has sections but none for that pipeline (no model trained under it);
    a file without sections (ColoredMDSprites): its top level."""
    if pipeline and isinstance(data.get("pipelines"), dict):
        return data["pipelines"].get(pipeline)
    return data


def _empty() -> dict:
    return {"values": {}, "found": set(), "diverged": set(), "no_key": set(), "degenerate": {}}


def _add(side: dict, seed: int, value, key: str, transform) -> None:
    """Record one finished seed's value (or that it lacks the key, or that log10 is undefined for it)."""
    if value is None:
        side["no_key"].add(seed)
    elif transform == "log10" and value <= 0:
        side["degenerate"][seed] = f"{key} = {value:g} in seed {seed} (zero spread: no log10)"
    else:
        side["values"][seed] = math.log10(value) if transform == "log10" else value


def read_side(results, cell: str, test: dict, metric=None, pipeline=None) -> dict:
    """One side of a test over seeds: per-seed values (finished seeds only), the seeds found, the diverged
    ones, those without the key and those whose value is degenerate (log10 of a value <= 0)."""
    results, side = Path(results), _empty()
    key = metric or test["value"]
    if test["source"] == "log":
        for seed, run in _seed_paths(results / "runs" / cell, "seed*").items():
            side["found"].add(seed)
            flag, record = results / "metrics" / cell / f"seed{seed}.json", run / "run.json"
            if (flag.is_file() and _diverged(read_json(flag))) or \
                    (record.is_file() and read_json(record).get("status") == "diverged"):
                side["diverged"].add(seed)
                continue
            log = pd.read_csv(run / "log.csv") if (run / "log.csv").is_file() else pd.DataFrame()
            column = pd.to_numeric(log[key], errors="coerce").dropna() if key in log else pd.Series(dtype=float)
            _add(side, seed, float(column.iloc[-1]) if len(column) else None, key, test["transform"])
        return side
    folder = "metrics" if test["source"] == "failures" else test["source"]
    for seed, path in _seed_paths(results / folder / cell, "seed*.json").items():
        section = _section(read_result(results, path), pipeline)  # the details file's numbers merged in
        if section is None:
            continue  # no model of this seed trained under `pipeline`: not run there
        side["found"].add(seed)
        if test["source"] == "failures":
            side["values"][seed] = 1.0 if _diverged(section) else 0.0
        elif _diverged(section):
            side["diverged"].add(seed)
        else:
            keys = key if isinstance(key, tuple) else (key,)
            nums = [_number(section.get(k)) for k in keys]
            _add(side, seed, None if None in nums else float(np.mean(nums)), "+".join(keys), test["transform"])
    if test["source"] == "failures":
        side["diverged"] = {s for s, v in side["values"].items() if v}
    return side


def failure_rate(results, source: str, cell: str) -> tuple[int, int]:
    """(diverged, total) seeds of a cell, from its metrics files (probe files for source "probe")."""
    files = _seed_paths(Path(results) / ("probe" if source == "probe" else "metrics") / cell, "seed*.json")
    return sum(read_json(path).get("diverged") == 1 for path in files.values()), len(files)


def coco_variants(results) -> tuple[list[str], list[str]]:
    """COCO pipelines named in the metrics and details files (["authors"] when none has a `pipelines`
    section) and the FG-ARI keys present."""
    pipelines, metrics = set(), ["fg_ari"]
    for path in Path(results, "metrics", "coco").glob("*/seed*.json"):
        data = read_result(results, path)
        sections = data.get("pipelines") or {}
        pipelines |= set(sections)
        if "fg_ari_authors" in data or any("fg_ari_authors" in s for s in sections.values()):
            metrics = ["fg_ari", "fg_ari_authors"]
    return sorted(pipelines) or [paper.PAPER_PIPELINE["coco"]], metrics


# ----------------------------------------------------------------------------- judging one test

def _trained(side) -> bool:
    return isinstance(side, str) and side not in EVAL_ONLY


def _refusal(test: dict, sides: dict, pipeline: str | None = None) -> tuple[str, str] | None:
    """(verdict, why) when a test cannot be judged: a side not run, or a trained side too thin for a verdict."""
    for cell, s in sides.items():
        if not s["found"]:
            if pipeline and _trained(cell) and cell.startswith("coco/"):
                return "not run", (f"no result for {cell} under the {pipeline} pipeline: no model trained under it "
                                   f"(data.coco.train_pipelines must list {pipeline})")
            under = f" under the {pipeline} pipeline" if pipeline and cell.startswith("coco/") else ""
            return "not run", f"no result for {cell}{under}"
        if test["source"] != "failures" and not s["values"] and not s["diverged"] and not s["degenerate"]:
            key = test["value"] if isinstance(test["value"], str) else "+".join(test["value"])
            return "not run", f"no `{key}` in the results of {cell}"
    for cell, s in sides.items():
        n = _n_finished(test, s) + len(s["degenerate"])
        if _trained(cell) and n < decide.MIN_SEEDS:
            what = "seed" if test["source"] == "failures" else "finished seed"
            lost = f" ({len(s['diverged'])} diverged)" if s["diverged"] and test["source"] != "failures" else ""
            return "inconclusive", f"{cell} has {n} {what}{'s' * (n != 1)}{lost}: {decide.MIN_SEEDS} needed"
        if s["degenerate"]:
            return "inconclusive", f"{cell}: " + "; ".join(s["degenerate"].values())
        if _trained(cell) and test["source"] != "failures" and np.std(list(s["values"].values())) == 0:
            return "inconclusive", f"zero spread in {cell} (its {n} seeds are identical): no interval"
    return None


def _n_finished(test: dict, side: dict) -> int:
    """Seeds that count for a test: every seed found for a rate of diverged seeds, else the finished ones."""
    return len(side["found"]) if test["source"] == "failures" else len(side["values"])


def _constant(cell: str, side: dict) -> float:
    """An evaluation-only cell (block masks) is deterministic: the mean of its seeds is a number."""
    return float(np.mean(list(side["values"].values())))


def _stats(test: dict, region, sa: dict, sb, b_cell) -> dict:
    """Effect, interval at ALPHA, p-values and the data needed to redo the interval at another level."""
    if test["source"] == "failures":
        k, n = len(sa["diverged"]), len(sa["found"])
        if b_cell is None:
            out = decide.decide_rate(k, n, region, ALPHA)
            out["p"] = decide.rate_pvalues(k, n, region)
            return out | {"method": "Clopper-Pearson", "redo": lambda lvl: decide.decide_rate(k, n, region, lvl)}
        k2, n2 = len(sb["diverged"]), len(sb["found"])
        low, high = decide.rate_difference_interval(k, n, k2, n2, ALPHA)
        code = decide.verdict_codes(low, high, region)
        return {"effect": k / n - k2 / n2, "low": low, "high": high, "codes": code, "p": None, "method": "Newcombe"}
    a = list(sa["values"].values())
    b = test["b"] if b_cell is None else (_constant(b_cell, sb) if not _trained(b_cell) else list(sb["values"].values()))
    out = decide.decide_t(a, b, region, ALPHA)
    out["p"] = decide.t_pvalues(out["effect"], out["se"], out["df"], region)
    out["method"] = "Welch t" if np.ndim(b) else "one-sample t"
    out["b_values"] = b
    return out | {"redo": lambda lvl: decide.decide_t(a, b, region, lvl)}


def _rule(region) -> str:
    low, high = region
    left = "(-∞" if low == -math.inf else f"[{low:g}"
    right = "∞)" if high == math.inf else f"{high:g}]"
    return f"{left}, {right}"


def _why(code: int, low: float, high: float, region, level: float) -> str:
    width = f"{100 * (1 - 2 * level):.4g}% interval [{low:.4g}, {high:.4g}]"
    if code == decide.REPRODUCED:
        return f"the {width} lies in {_rule(region)}"
    if code == decide.NOT_REPRODUCED:
        too_small = high < region[0] and region[1] == math.inf
        return f"the {width} lies outside {_rule(region)}" + (
            f" (the effect is below the smallest effect of interest {region[0]:g})" if too_small else "")
    return f"the {width} crosses a bound of {_rule(region)}"


def _mean(side) -> float:
    return float(np.mean(list(side["values"].values()))) if side and side["values"] else np.nan


def _point_effect(test: dict, sa: dict, sb, b_cell) -> float:
    """The effect without an interval (also where no verdict is possible, e.g. from one seed)."""
    if test["source"] == "failures":
        rate = lambda s: len(s["diverged"]) / len(s["found"]) if s and s["found"] else np.nan  # noqa: E731
        return rate(sa) - (rate(sb) if b_cell else 0.0)
    return _mean(sa) - (_mean(sb) if b_cell else float(test["b"]))


def judge(results, claim: dict, test: dict, role: str, metric=None, pipeline="default") -> dict:
    """One row of the ledger: a test of a claim under one pipeline and metric, judged at ALPHA.
    The row keeps `_stats` (interval at any level, p-values) for the primary test's Holm step."""
    metric = metric or test["value"]
    pipeline = test["pipeline"] if pipeline == "default" else pipeline
    region = test["region"] or claim["region"]
    b_cell = test["b"] if isinstance(test["b"], str) else None
    sa = read_side(results, test["a"], test, metric, pipeline)
    sb = read_side(results, b_cell, test, metric, pipeline) if b_cell else None
    sides = {test["a"]: sa} | ({b_cell: sb} if b_cell else {})
    failed = [len(s["diverged"]) if s else 0 for s in (sa, sb)]
    row = {"id": claim["id"], "role": role, "test": test["label"], "pipeline": pipeline or "-",
           "metric": metric if isinstance(metric, str) else "mean(" + ", ".join(metric) + ")",
           "a": test["a"], "b": test["b"] if b_cell else f"{test['b']:g}" + (" (quoted)" if test["quoted"] else ""),
           "rule": _rule(region), "paper": test["paper"], "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan,
           "level": ALPHA, "paper_in_pi": "", "pi_low": np.nan, "pi_high": np.nan, "mean_a": _mean(sa),
           "mean_b": _mean(sb) if b_cell else np.nan, "n_a": len(sa["values"]), "n_b": len(sb["values"]) if sb else 0,
           "failed_a": failed[0], "failed_b": failed[1], "method": "", "_stats": None, "_sides": sides}
    row["n_seeds"] = min(_n_finished(test, s) for c, s in sides.items() if _trained(c))
    row["effect"] = _point_effect(test, sa, sb, b_cell)
    refused = _refusal(test, sides, pipeline)
    if refused:
        return row | {"verdict": refused[0], "why": refused[1]}
    st = _stats(test, region, sa, sb, b_cell)
    low, high, code = (float(np.asarray(st[k])) for k in ("low", "high", "codes"))
    row.update(effect=float(np.asarray(st["effect"])), ci_low=low, ci_high=high, method=st["method"], _stats=st,
               verdict=NAMES[int(code)], why=_why(int(code), low, high, region, ALPHA))
    if test["paper"] is not None and test["source"] != "failures":
        row["pi_low"], row["pi_high"] = decide.prediction_interval(list(sa["values"].values()), st["b_values"], PI_LEVEL)
        row["paper_in_pi"] = "yes" if row["pi_low"] <= test["paper"] <= row["pi_high"] else "no"
    return row


# ----------------------------------------------------------------------------- the ledger

def _variants(test: dict, pipelines: list[str], fg_metrics: list[str]) -> list[tuple[str, str]]:
    """(pipeline, metric) pairs a COCO primary test is also judged under, as secondary rows."""
    if test["pipeline"] is None or not isinstance(test["value"], str):
        return []
    metrics = fg_metrics if test["value"] == "fg_ari" else [test["value"]]
    return [(p, m) for p in pipelines for m in metrics if (p, m) != (test["pipeline"], test["value"])]


def _family_p(row: dict) -> float | None:
    """The p-value a primary test enters Holm's procedure with: that of its likelier decisive verdict."""
    st = row["_stats"]
    return None if st is None or st.get("p") is None else float(min(np.asarray(p) for p in st["p"]))


def _failures(row: dict) -> tuple[int, int]:
    """(diverged, found) seeds over the trained cells of a test."""
    sides = [s for cell, s in row["_sides"].items() if _trained(cell)]
    return sum(len(s["diverged"]) for s in sides), sum(len(s["found"]) for s in sides)


def _spreads(row: dict) -> dict[str, float]:
    """Seed spread (sd) of each trained side with 2+ finished seeds: what `slotcov power` plans with."""
    return {cell: float(np.std(list(s["values"].values()), ddof=1)) for cell, s in row["_sides"].items()
            if _trained(cell) and len(s["values"]) >= 2 and np.std(list(s["values"].values())) > 0}


def _claim_power(claim: dict, row: dict) -> float | None:
    from slotcov.report import power  # imported here: power simulates with this module's decision code

    if row["verdict"] == "not run":
        return None
    return power.claim_power(claim, row["n_seeds"], _spreads(row))["power"]


def _claim_verdict(claim: dict, row: dict, h: dict, ids: list[str]) -> tuple[str, str, float, float]:
    """(verdict, why, low, high) of a claim from its primary row at its Holm level."""
    if row["_stats"] is None:
        return row["verdict"], row["why"], np.nan, np.nan
    region = claim["primary"]["region"] or claim["region"]
    st = row["_stats"]["redo"](h["level"])
    low, high, code = (float(np.asarray(st[k])) for k in ("low", "high", "codes"))
    holm = f"Holm rank {h['rank']} of {len(ids)}, level {h['level']:.3g}"
    why = f"{_why(code, low, high, region, h['level'])} ({holm})"
    if h["rejected"]:
        return NAMES[code], why, low, high
    if h["stopped_at"] is not None:
        why += f"; Holm's procedure stopped at {ids[h['stopped_at']]}, so no decisive verdict here"
    return "inconclusive", why, low, high


def _notes(claim: dict, rows: list[dict], power: float | None, n: int) -> str:
    notes = [f"secondary {r['test']} ({r['pipeline']}, {r['metric']}) not reproduced" for r in rows
             if r["id"] == claim["id"] and r["role"] == "secondary" and r["verdict"] == "not reproduced"]
    if power is not None and power < TARGET_POWER and n >= decide.MIN_SEEDS:
        notes.append(f"underpowered: power {power:.2f} at {n} seeds (`slotcov power`)")
    return "".join(f"; {n}" for n in notes)


def _summary(claim: dict, row: dict, h: dict, ids: list[str], rows: list[dict]) -> dict:
    verdict, why, low, high = _claim_verdict(claim, row, h, ids)
    if row["_stats"] is not None:  # the primary row shows the claim's own interval, at its Holm level
        row.update(ci_low=low, ci_high=high, level=h["level"], verdict=verdict, why=why)
    failed, runs = _failures(row)
    power = _claim_power(claim, row)
    return {"id": claim["id"], "where": claim["where"], "claim": claim["claim"], "kind": claim["kind"],
            "rule": _rule(claim["region"]), "verdict": verdict, "verdict_code": CODE[verdict], "effect": row["effect"],
            "ci_low": low, "ci_high": high, "level": h["level"], "p": _family_p(row), "paper": claim["primary"]["paper"],
            "paper_in_pi": row["paper_in_pi"], "n_seeds": row["n_seeds"], "power": power,
            "failure_rate": failed / runs if runs else None, "n_failed": failed, "n_runs": runs, "unit": claim["unit"],
            "why": why + _notes(claim, rows, power, row["n_seeds"])}


def ledger(results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(claims, rows): one verdict per claim, Holm-corrected over the primary tests; every test row."""
    pipelines, fg_metrics = coco_variants(results)
    primaries, rows = [], []
    for claim in paper.CLAIMS:
        test = claim["primary"]
        primaries.append(judge(results, claim, test, "primary"))
        rows.append(primaries[-1])
        rows += [judge(results, claim, test, "secondary", m, p) for p, m in _variants(test, pipelines, fg_metrics)]
        rows += [judge(results, claim, t, "secondary") for t in claim["secondary"]]
    ids = [c["id"] for c in paper.CLAIMS]
    family = decide.holm([_family_p(r) for r in primaries], ALPHA)
    summary = [_summary(c, r, h, ids, rows) for c, r, h in zip(paper.CLAIMS, primaries, family)]
    return pd.DataFrame(summary, columns=SUMMARY + ["n_failed", "n_runs"]), pd.DataFrame(rows)[ROWS]


# ----------------------------------------------------------------------------- outputs

SCOPE_HEADER = ["Claim", "Rule", "Verdict", "Effect [interval]", "Paper", "Seeds", "Power", "Failed"]
RULES = (f"Each claim is judged on its primary test only: reproduced = the interval lies in the claim's region; "
         f"not reproduced = it lies outside (for a superiority: below the smallest effect of interest, i.e. "
         f"too small or reversed); inconclusive = neither, or a trained cell has fewer than {decide.MIN_SEEDS} "
         f"finished seeds or zero spread; not run = a cell or a key is missing. Intervals: Welch's t (two cells), "
         f"one-sample t (a cell against a number, or against block masks, which are deterministic), "
         f"Clopper-Pearson (a rate of diverged seeds), Newcombe (a difference of two rates); an interval at level "
         f"a is the two-sided (1 - 2a) one. Family: the {len(paper.CLAIMS)} primary tests, Holm's procedure at "
         f"family-wise error {ALPHA} (levels {ALPHA}/{len(paper.CLAIMS)} = {ALPHA / len(paper.CLAIMS):.4f} for "
         f"the smallest p-value up to {ALPHA} for the largest); each claim's interval is at its own level. "
         f"Secondary rows: at {ALPHA} without correction. A diverged seed counts in the failure rate, never in a "
         f"mean. The paper's single run is held against a {PI_LEVEL:.0%} prediction interval for one run "
         f"(paper_in_pi). Power: P(reproduced) at the effect planned for and P(not reproduced) when the claim is "
         f"false, the smaller, at the seeds found (slotcov.report.power; spreads measured, else its priors).")


def fmt(value, digits: int = 4) -> str:
    return "--" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _interval(r, digits: int = 4) -> str:
    if r["verdict"] == "not run" or pd.isna(r["effect"]):
        return "--"
    f = lambda v: fmt(v, digits)  # noqa: E731
    return f(r["effect"]) + ("" if pd.isna(r["ci_low"]) else f" [{f(r['ci_low'])}, {f(r['ci_high'])}]")


def scope_cells(r) -> list[str]:
    """One line of the scope-of-reproducibility table (claims.md, claims.tex, the PDF's first page)."""
    failed = "--" if not r["n_runs"] else f"{int(r['n_failed'])}/{int(r['n_runs'])}"
    power = "--" if r["power"] is None or pd.isna(r["power"]) else f"{r['power']:.2f}"
    return [f"{r['id']} {r['claim']} ({r['where']})", f"{r['kind']} {r['rule']}", r["verdict"], _interval(r, 3),
            fmt(r["paper"], 3), str(int(r["n_seeds"])), power, failed]


def _tally(summary: pd.DataFrame) -> str:
    counts = summary["verdict"].value_counts()
    weak = [r["id"] for _, r in summary.iterrows() if r["power"] is not None and not pd.isna(r["power"])
            and r["power"] < TARGET_POWER]
    return (", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts) + f" of {len(summary)} claims. "
            + (f"Under {TARGET_POWER:.0%} power at the seeds found: {', '.join(weak)}." if weak else ""))


def _md_row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _claim_text(c: dict) -> str:
    t = c["primary"]
    where = f", pipeline {t['pipeline']}" if t["pipeline"] else ""
    return (f"**{c['id']}** ({c['where']}): \"{c['quote']}\" Claim: {c['claim']}. Rule: {c['kind']}, region "
            f"{_rule(c['region'])} ({c['unit']}); primary test {t['label']} ({t['source']} "
            f"{t['value'] if isinstance(t['value'], str) else 'mean of ' + ', '.join(t['value'])}{where}). "
            f"Smallest effect of interest {c['sesoi']:g}: {c['sesoi_why']}. Planned for {c['holds']:g} (holds) "
            f"and {c['fails']:g} (false).")


ROW_HEAD = ["id", "role", "test", "pipeline / metric", "rule", "paper", "effect [interval]", "level", "paper in PI",
            "n", "verdict", "why"]


def row_cells(r) -> list[str]:
    """One line of the appendix: a test row, without the claim's text."""
    return [r["id"], r["role"], r["test"], f"{r['pipeline']} / {r['metric']}", r["rule"], fmt(r["paper"]), _interval(r),
            f"{r['level']:.3g}", r["paper_in_pi"] or "--", str(int(r["n_seeds"])), r["verdict"], r["why"]]


def to_markdown(summary: pd.DataFrame, rows: pd.DataFrame) -> str:
    lines = ["# Claims ledger", "", "## Scope of reproducibility", "", _md_row(SCOPE_HEADER),
             "|" + "---|" * len(SCOPE_HEADER)]
    lines += [_md_row(scope_cells(r)) for _, r in summary.iterrows()]
    lines += ["", _tally(summary), "", f"Why, per claim (family: the {len(summary)} primary tests, Holm at "
              f"family-wise error {ALPHA}; an untested claim holds the last levels):", ""]
    lines += [f"- **{r['id']}** {r['verdict']} (Holm level {r['level']:.3g}): {r['why']}" for _, r in summary.iterrows()]
    lines += ["", "## Decision rules", "", RULES, "", "## The claims", ""]
    lines += [f"- {_claim_text(c)}" for c in paper.CLAIMS]
    lines += ["", "## Appendix: every test row", "", _md_row(ROW_HEAD), "|" + "---|" * len(ROW_HEAD)]
    lines += [_md_row(row_cells(r)) for _, r in rows.iterrows()]
    return "\n".join(lines) + "\n"


def tex(text) -> str:
    """Plain text as LaTeX (the few characters the ledger's text uses)."""
    text = re.sub(r"([&%$#_{}^\\])", lambda m: {"\\": r"\textbackslash{}", "^": r"\textasciicircum{}"}.get(
        m.group(1), "\\" + m.group(1)), str(text))
    for char, macro in {"∞": r"$\infty$", "≈": r"$\approx$", ">": r"$>$", "<": r"$<$", "±": r"$\pm$",
                        "÷": r"$\div$"}.items():
        text = text.replace(char, macro)
    return text


def _ragged(*widths_cm: float) -> str:
    """longtable columns of these widths, set ragged right (the report's preamble loads array)."""
    return "".join(f">{{\\raggedright\\arraybackslash}}p{{{w}cm}}" for w in widths_cm)


def scope_latex(summary: pd.DataFrame) -> str:
    """The scope-of-reproducibility table: the report's first page."""
    lines = ["% Generated by `slotcov claims`; do not edit.", "{\\scriptsize\\setlength{\\tabcolsep}{2.5pt}",
             "\\begin{longtable}{@{}" + _ragged(6.0, 2.4, 1.6, 2.9) + "rrrr@{}}", "\\toprule",
             " & ".join(SCOPE_HEADER) + " \\\\", "\\midrule", "\\endhead"]
    lines += [" & ".join(tex(c) for c in scope_cells(r)) + " \\\\" for _, r in summary.iterrows()]
    lines += ["\\bottomrule", "\\end{longtable}", "\\par " + tex(_tally(summary)), "}"]
    return "\n".join(lines) + "\n"


def rows_latex(rows: pd.DataFrame) -> str:
    """The appendix: the claims with their quotes and rules, then every test row."""
    lines = ["% Generated by `slotcov claims`; do not edit.", "{\\footnotesize", tex(RULES), "\\begin{itemize}"]
    lines += ["\\item " + tex(_claim_text(c).replace("**", "")) for c in paper.CLAIMS]
    lines += ["\\end{itemize}", "\\setlength{\\tabcolsep}{2pt}\\scriptsize",
              "\\begin{longtable}{@{}l" + _ragged(1.2, 3.0, 2.2, 1.5) + "r" + _ragged(2.6) + "rlr"
              + _ragged(1.6) + "@{}}", "\\toprule",
              " & ".join(ROW_HEAD[:-1]) + " \\\\", "\\midrule", "\\endhead"]
    lines += [" & ".join(tex(c) for c in row_cells(r)[:-1]) + " \\\\" for _, r in rows.iterrows()]
    lines += ["\\bottomrule", "\\end{longtable}", "}"]
    return "\n".join(lines) + "\n"


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def row_key(row) -> str:
    """The DVC metric name of a row (no dots: DVC splits nested keys on them)."""
    parts = [re.sub(r"[^A-Za-z0-9_]+", "-", str(row[k])).strip("-") for k in ("id", "role", "test", "pipeline", "metric")]
    return "/".join(p for p in parts if p)


def to_json(summary: pd.DataFrame, rows: pd.DataFrame) -> dict:
    """The claims (one object each) beside the per-test rows; NaN becomes null."""
    claims = [{k: _plain(v) for k, v in r.items()} for r in summary.to_dict("records")]
    return {"alpha": ALPHA, "family": [c["id"] for c in paper.CLAIMS],
            "levels": {c["id"]: c["level"] for c in claims}, "claims": claims,
            "rows": {row_key(r): {k: _plain(v) for k, v in r.items()} for r in rows.to_dict("records")}}


def claim_metrics(r: dict) -> dict:
    """The numbers of one claim for `dvc metrics show`: the same keys for every claim."""
    return {k: _plain(r[k]) if k != "verdict_code" else CODE[r["verdict"]] for k in METRIC_KEYS}


def write_ledger(results, out_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write summary.csv, claims.csv (rows), claims.md, summary.tex, claims.tex, claims.json and
    metrics/<ID>.json into `out_dir`."""
    from slotcov.io import atomic_path, write_json, write_text

    summary, rows = ledger(results)
    out_dir = Path(out_dir)
    for name, df in (("summary.csv", summary), ("claims.csv", rows)):
        with atomic_path(out_dir / name) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    write_text(out_dir / "claims.md", to_markdown(summary, rows))
    write_text(out_dir / "summary.tex", scope_latex(summary))
    write_text(out_dir / "claims.tex", rows_latex(rows))
    write_json(out_dir / "claims.json", to_json(summary, rows))
    for r in summary.to_dict("records"):
        write_json(out_dir / "metrics" / f"{r['id']}.json", claim_metrics(r))
    _log(f"{len(summary)} claims ({_tally(summary)}), {len(rows)} test rows; wrote {out_dir}")
    return summary, rows


def cli_claims(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slotcov claims", description=__doc__.split("\n")[0])
    p.add_argument("--results", required=True, help="results folder (metrics/, probe/, runs/)")
    p.add_argument("--out", required=True, help="output folder (summary and rows as csv, md, tex, json; metrics/)")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        raise UserError(f"--results {args.results}: no such folder; run the workflow first or pass the results folder")
    write_ledger(args.results, args.out)
    return 0
