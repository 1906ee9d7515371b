"""The headline numbers of the test preset's finished DAG, and their comparison with tests/reference/.

tests/reference/ holds what the test preset's DAG produced before the library was arranged into
stage packages (commit 5899367): `numbers.json` (each metrics, probe and sweep file's headline
numbers, COCO pipeline sections as `pipelines.<name>.<key>`) and `tables/table{1,2,3}.csv`.
test_pipeline.py compares the suite's finished DAG with them: a change that only moves code must
leave them in place. Keys and rows the reference lacks (new cells, metrics, columns) are not compared.
A result is its metrics file with its details file merged in (slotcov.report.results.read_result). The
reference holds no `dinosaur` section or column of a trained COCO cell: the test preset trains those
under the primary pipeline only (data.coco.train_pipelines), and a model is scored only under the
pipeline it was trained under.

When a change is meant to move these numbers, regenerate the reference from a repository copy in
which the test preset's DAG has run, and say why in the commit:
    .venv/bin/snakemake --cores 2 reports/tables reports/claims \\
        results/sweep/cmdsprites/covloss/beta0.1/seed0.json results/sweep/cmdsprites/covloss/beta10.0/seed0.json \\
        --configfile config/test.yaml
    .venv/bin/python tests/headline.py .      # writes tests/reference/ of this checkout
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pandas as pd

from slotcov.report.results import read_result

REFERENCE = Path(__file__).resolve().parent / "reference"
TABLES = ["table1", "table2", "table3"]
METRICS = ["fg_ari", "fg_ari_authors", "mbo", "mse", "slot_cov"]  # per file and per COCO pipeline section
PROBE = ["shape_acc", "color_r2", "scale_r2", "x_r2", "y_r2"]
ROW_KEY = ["dataset", "method", "metric"]

# Absolute tolerances. Floating-point results of training differ between CPUs (PyTorch, MKL and oneDNN pick
# kernels by instruction set). The test preset's whole DAG run here with PyTorch's generic kernels
# (ATEN_CPU_CAPABILITY=default) instead of the native AVX-512 ones moved these numbers by at most:
# FG-ARI / mBO 7.9e-4 points (COCO cells: 8 images, masks from 4 training steps), MSE 1.4e-7, slot
# covariance 2.1e-8, probe scores 2.9e-6; ColoredMDSprites FG-ARI not at all. The tolerances are about ten
# times those. A real change lands far outside: one more training step or another seed moves FG-ARI by
# whole points.
TOLERANCE = {"fg_ari": 1e-2, "fg_ari_authors": 1e-2, "mbo": 1e-2, "mse": 1e-5, "slot_cov": 1e-6,
             **dict.fromkeys(PROBE, 1e-4)}


def _numbers(data: dict, keys: list[str]) -> dict:
    out = {k: data[k] for k in keys if k in data}
    for name, section in (data.get("pipelines") or {}).items():
        out.update({f"pipelines.{name}.{k}": section[k] for k in keys if k in section})
    return out


def headline(repo: Path) -> dict[str, dict]:
    """Per result file (path under results/): its headline numbers."""
    out = {}
    for kind, keys in [("metrics", METRICS), ("probe", PROBE), ("sweep", METRICS)]:
        for path in sorted((repo / "results" / kind).rglob("seed*.json")):
            out[str(path.relative_to(repo / "results"))] = _numbers(read_result(repo / "results", path), keys)
    return out


def tolerance(key: str) -> float:
    """The tolerance of a number key (`pipelines.dinosaur.fg_ari`) or a table metric (`dinosaur.fg_ari`)."""
    return TOLERANCE[key.rpartition(".")[2]]


def off_reference(repo: Path) -> list[str]:
    """Every reference number of `repo`'s results and tables outside its tolerance (or missing)."""
    ref, got = json.loads((REFERENCE / "numbers.json").read_text()), headline(repo)
    off = []
    for path, numbers in ref.items():
        for key, want in numbers.items():
            have = got.get(path, {}).get(key)
            if have is None or not abs(have - want) <= tolerance(key):
                off.append(f"results/{path} {key}: {have} vs reference {want} (tolerance {tolerance(key)})")
    for name in TABLES:
        want = pd.read_csv(REFERENCE / "tables" / f"{name}.csv", keep_default_na=False, na_values=[""])
        have = pd.read_csv(repo / "reports" / "tables" / f"{name}.csv", keep_default_na=False, na_values=[""])
        have = have.set_index(ROW_KEY)
        for row in want.itertuples(index=False):
            key = tuple(getattr(row, k) for k in ROW_KEY)
            if key not in have.index:
                off.append(f"{name}.csv {key}: row missing")
                continue
            other = have.loc[key]
            for col in want.columns.drop(ROW_KEY):
                a, b = getattr(row, col), other[col]
                numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
                same = (pd.isna(a) and pd.isna(b)) or (
                    abs(a - b) <= tolerance(key[2]) if col in ("mean", "std") and not pd.isna(b)
                    else float(a) == float(b) if numeric else str(a) == str(b))
                if not same:
                    off.append(f"{name}.csv {key} {col}: {b!r} vs reference {a!r}")
    return off


def write_reference(repo: Path) -> None:
    """tests/reference/ from `repo`'s finished test-preset DAG."""
    (REFERENCE / "tables").mkdir(parents=True, exist_ok=True)
    numbers = headline(repo)
    assert numbers and all(math.isfinite(v) for d in numbers.values() for v in d.values())
    (REFERENCE / "numbers.json").write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    for name in TABLES:
        shutil.copyfile(repo / "reports" / "tables" / f"{name}.csv", REFERENCE / "tables" / f"{name}.csv")


if __name__ == "__main__":
    write_reference(Path(sys.argv[1]))
