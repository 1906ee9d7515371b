"""The result files under `results/` read into pandas (and numpy for the samples).

Tables, figures and the report see the results only through these functions, so a cell that
has not run is simply absent and a deleted file never survives as a stale number.
Layout: docs/design.md (Paths).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from slotcov import paper
from slotcov.config import SWEEP_KEY
from slotcov.errors import UserError

KEYS = ["dataset", "method", "seed", "has_prov"]  # columns of load_results even when nothing has run
PROVENANCE_HEADER = ["Cell", "Seed", "Commit", "Preset", "Pipeline", "Data / encoder", "Device", "Wall (s)"]


def cli_parser(command: str, description: str, reads: str, out: str, out_help: str):
    """The argument parser of a report command: `--results` (the folder it reads) and `--out`."""
    import argparse

    p = argparse.ArgumentParser(prog=f"slotcov {command}", description=description)
    p.add_argument("--results", default="results", help=f"results folder ({reads})")
    p.add_argument("--out", default=out, help=out_help)
    return p


def log(msg: str) -> None:
    print(f"slotcov reports: {msg}", file=sys.stderr)


def seed_of(path: Path) -> int:
    m = re.fullmatch(r"seed(\d+)", path.stem)
    if m is None:
        raise UserError(f"{path}: result files must be named seed<N>.json")
    return int(m.group(1))


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: unreadable JSON ({err}); delete it and rerun the step that writes it") from err


def details_file(results_dir, path) -> Path:
    """The details file of a result file: results/details/<its path under results/>."""
    return Path(results_dir, "details", Path(path).relative_to(results_dir))


def read_result(results_dir, path) -> dict:
    """A metrics or probe file with its details file (counts, the authors' FG-ARI, the COCO pipelines'
    sections; written beside it by `slotcov evaluate --details`) merged in, where that exists."""
    data = read_json(Path(path))
    details = details_file(results_dir, path)
    return {**read_json(details), **data} if details.exists() else data


def _numbers(data: dict, prefix: str = "") -> dict:
    return {prefix + k: v for k, v in data.items() if isinstance(v, (int, float))}


def load_results(results_dir, kind: str = "metrics") -> pd.DataFrame:
    """One row per result file under results/{kind}/{dataset}/{method}/seed{N}.json, details and provenance joined.

    The details file (results/details/{kind}/<same relative path>) adds its numbers; provenance
    (results/provenance/{kind}/<same relative path>) columns are prefixed `prov_`; `has_prov` says
    whether that file existed. A COCO file's pipeline sections (numbers of the model trained and
    scored under that pipeline) become columns `<pipeline>.<key>` (`dinosaur.fg_ari`), its primary
    pipeline's name the column `pipeline`.
    """
    rows = []
    for path in sorted(Path(results_dir, kind).glob("*/*/seed*.json")):
        if path.name.endswith(".provenance.json"):
            continue
        row = {"dataset": path.parent.parent.name, "method": path.parent.name, "seed": seed_of(path)}
        data = read_result(results_dir, path)
        row.update(_numbers(data))
        for name, section in (data.get("pipelines") or {}).items():
            row.update(_numbers(section, f"{name}."))
        if isinstance(data.get("pipeline"), str):
            row["pipeline"] = data["pipeline"]
        prov_path = Path(results_dir, "provenance", kind, *path.parts[-3:])
        row["has_prov"] = prov_path.exists()
        if row["has_prov"]:
            prov = read_json(prov_path)
            prov.setdefault("pipeline", prov.pop("protocol", None))  # provenance files of earlier slotcov
            row.update({f"prov_{k}": str(v) for k, v in prov.items() if v is not None})
        rows.append(row)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=KEYS)


def load_sweep(results_dir) -> pd.DataFrame:
    """Bottleneck sweep: one row per results/sweep/cmdsprites/covloss/beta*/seed{N}.json; beta is the file's
    SWEEP_KEY (slotcov evaluate records each numeric --set), never parsed from the folder's name."""
    rows = []
    for path in sorted(Path(results_dir, "sweep", "cmdsprites", "covloss").glob("beta*/seed*.json")):
        if path.name.endswith(".provenance.json"):
            continue
        data = read_json(path)
        if SWEEP_KEY not in data:
            log(f"skipping {path}: no {SWEEP_KEY} (evaluate the sweep run again with this slotcov)")
            continue
        rows.append({"beta": data[SWEEP_KEY], "seed": seed_of(path), "fg_ari": data.get("fg_ari", np.nan),
                     "slot_cov": data.get("slot_cov", np.nan)})
    return pd.DataFrame(rows, columns=["beta", "seed", "fg_ari", "slot_cov"])


def load_logs(results_dir, dataset: str) -> dict[str, pd.DataFrame]:
    """Training logs of a dataset with rows: "method/seedN" -> results/runs/{dataset}/{method}/seedN/log.csv
    ("method/seedN-PIPELINE" for a COCO run trained under another pipeline than the primary)."""
    logs = {}
    for path in sorted(Path(results_dir, "runs", dataset).glob("*/seed*/log.csv")):
        d = pd.read_csv(path)
        if len(d) and "step" in d:
            logs[f"{path.parent.parent.name}/{path.parent.name}"] = d
    return logs


def first_sample(results_dir, dataset: str, method: str) -> dict | None:
    """The samples NPZ of a cell's lowest seed that finished (its arrays and "seed"), or None."""
    for path in sorted(Path(results_dir, "samples", dataset, method).glob("seed*.npz"), key=seed_of):
        with np.load(path) as z:
            if "diverged" not in z.files:  # a diverged run's NPZ holds only that flag
                return {k: z[k] for k in z.files} | {"seed": seed_of(path)}
    return None


def coco_pipelines(metrics: pd.DataFrame) -> tuple[str, str]:
    """(primary, other) COCO pipeline of the metrics files: primary = the `pipeline` most files name."""
    coco = metrics[metrics["dataset"] == "coco"]
    names = coco["pipeline"].dropna() if "pipeline" in coco else pd.Series(dtype=str)
    primary = names.mode().iloc[0] if len(names) else paper.PAPER_PIPELINE["coco"]
    return primary, next(n for n in paper.COCO_PIPELINES if n != primary)


def claims_file(claims_dir, name: str) -> Path | None:
    """DIR/<name> of the claims ledger (None without --claims); a missing file is the user's to fix."""
    if claims_dir is None:
        return None
    path = Path(claims_dir, name)
    if not path.exists():
        raise UserError(f"{path} is missing; build the claims ledger into {claims_dir} first, or leave out --claims")
    return path


def provenance_table(results_dir) -> list[list[str]]:
    """One row (PROVENANCE_HEADER) per metrics and probing file: where and how its number was produced
    (Pipeline: the primary one scored on, the one trained on where that differs, then every other pipeline
    with a section: a model trained and scored under it, or block masks scored under it)."""
    rows = []
    for kind in ["metrics", "probe"]:
        df = load_results(results_dir, kind).sort_values(["dataset", "method", "seed"])
        for _, r in df.iterrows():
            def get(key, _r=r):
                v = _r.get(f"prov_{key}")
                return "--" if v is None or pd.isna(v) or v == "" else str(v)
            wall = get("wall_time_s")
            try:
                wall = f"{float(wall):.0f}"
            except ValueError:
                pass
            cell = f"{r['dataset']}/{r['method']}" + (" (probe)" if kind == "probe" else "")
            trained = get("train_pipeline")
            pipeline = get("pipeline") + (f" (trained: {trained})" if trained not in ("--", get("pipeline")) else "")
            pipeline += "".join(f", {p}" for p in paper.COCO_PIPELINES if p not in (get("pipeline"), r.get("pipeline"))
                                and (pd.notna(r.get(f"{p}.fg_ari", np.nan)) or r.get(f"{p}.diverged") == 1))
            rows.append([cell, str(r["seed"]), get("git_commit")[:8], get("preset"), pipeline,
                         f"{get('dataset_kind')} / {get('encoder_weights')}", get("device"), wall])
    return rows
