"""Training curves as DVC plot data: one CSV per logged term, one line per run.

    slotcov plots --results results --out reports/plots

reports/plots/<term>.csv holds the columns `step`, `<term>` and `run` ("cmdsprites-sa-seed0";
"coco-sa-seed0-dinosaur" for a COCO run trained under another pipeline than the primary) of every
training log results/runs/*/*/seed*/log.csv in which that term was logged. dvc.yaml draws each
file as one chart with one line per run (the template .dvc/plots/runs.json colours by `run`), and
`dvc plots diff REV` draws each commit's curves with its own dash.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from slotcov.cells import CURVES, DATASETS
from slotcov.io import atomic_path
from slotcov.report.results import cli_parser, load_logs, log

TERMS = CURVES  # one chart each


def curves(results_dir) -> dict[str, pd.DataFrame]:
    """Per term: the rows (step, term, run) of every training log that logged it."""
    frames: dict[str, list[pd.DataFrame]] = {term: [] for term in TERMS}
    for dataset in DATASETS:
        for name, logged in load_logs(results_dir, dataset).items():
            run = f"{dataset}-{name.replace('/', '-')}"
            for term in TERMS:
                rows = logged[["step", term]].dropna() if term in logged else ()
                if len(rows):
                    frames[term].append(rows.assign(run=run))
    return {term: pd.concat(f, ignore_index=True) if f else pd.DataFrame(columns=["step", term, "run"])
            for term, f in frames.items()}


def write_plots(results_dir, out_dir) -> list[Path]:
    """Write out_dir/<term>.csv for every term of TERMS (a header only where no run logged it)."""
    out_dir = Path(out_dir)
    paths, tables = [], curves(results_dir)
    for term, rows in tables.items():
        path = out_dir / f"{term}.csv"
        with atomic_path(path) as tmp:
            rows.to_csv(tmp, index=False, float_format="%.6g")
        paths.append(path)
    runs = {run for rows in tables.values() for run in rows["run"]}
    log(f"wrote {len(paths)} plot files ({len(runs)} runs) into {out_dir}")
    return paths


def cli_plots(argv: list[str]) -> int:
    p = cli_parser("plots", "Training curves as DVC plot data: one CSV per logged term (step, value, run) from "
                   "every training log.", "runs/", "reports/plots", "folder for <term>.csv")
    args = p.parse_args(argv)
    write_plots(args.results, args.out)
    return 0
