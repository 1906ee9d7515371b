"""Hand-made result trees for the claims ledger's tests: every cell a claim reads, with known effects."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from slotcov import paper
from slotcov.evaluate.evaluation import METRIC_KEYS, write_result
from slotcov.evaluate.probing import PROBE_KEYS

Z5 = np.array([-1.5, -0.5, 0.0, 0.5, 1.5]) / np.std([-1.5, -0.5, 0.0, 0.5, 1.5], ddof=1)  # mean 0, sd 1


def spread(mean: float, sd: float, n: int = 5) -> list[float]:
    """n seed values with exactly this mean and sd (ddof 1; one seed: the mean)."""
    if n == 1:
        return [mean]
    z = Z5 if n == 5 else (np.arange(n) - (n - 1) / 2) / np.std(np.arange(n), ddof=1)
    return list(mean + sd * z)


def write_seeds(results: Path, kind: str, cell: str, per_seed: list[dict], first: int = 0) -> None:
    """Result files and their details files, split as `slotcov evaluate` and `slotcov probe` write them."""
    for seed, values in enumerate(per_seed, first):
        relative = Path(kind, cell, f"seed{seed}.json")
        write_result(values, results / relative, results / "details" / relative,
                     PROBE_KEYS if kind == "probe" else METRIC_KEYS)


def write_diverged(results: Path, cell: str, seeds: list[int]) -> None:
    """Diverged seeds, as the trainer's contract writes them: no numbers, only where it stopped."""
    for seed in seeds:
        for kind in ("metrics", "probe"):
            if kind == "probe" and not cell.startswith("cmdsprites/"):
                continue
            path = results / kind / cell / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"diverged": 1, "diverged_step": 1234}))


def write_log(results: Path, cell: str, seed: int, cov: list) -> None:
    path = results / "runs" / cell / f"seed{seed}" / "log.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": np.arange(1, len(cov) + 1) * 10, "loss": 1.0, "cov": cov}).to_csv(path, index=False)


# Cell means of a tree that follows the paper (COCO's fg_ari as in Tables 1 and 3; where the paper prints no
# number, values on the side the claims assert).
FG = {"cmdsprites/" + m: v for (d, m), v in paper.TABLE1.items() if d == "cmdsprites"}
FG |= {"coco/" + m: v for (d, m), v in paper.TABLE1.items() if d == "coco"}
FG |= {"coco/" + m: v for m, v in paper.TABLE3.items()} | {"coco/blockmasks": paper.BLOCKMASKS,
                                                           "cmdsprites/covloss_var": 87.42}
MBO = {"cmdsprites/sa": 60.0, "cmdsprites/covloss": 55.0, "cmdsprites/cosineloss": 56.0, "cmdsprites/covloss_var": 55.0,
       "coco/sa": 15.0, "coco/covloss": 25.0, "coco/blockmasks": 18.0}
MSE = {"cmdsprites/sa": 1e-3, "cmdsprites/covloss": 2e-3, "cmdsprites/cosineloss": 2e-3, "coco/dinosaur": 0.2,
       "coco/dinosaur1024": 0.5}
STRIPE = {"coco/sa": 3.0, "coco/covloss": 1.5, "coco/cosineloss": 6.0}
SLOT_COV = {"coco/dinosaur": 0.01, "coco/dinosaur1024": 0.5, "coco/dinosaur1024_covloss": 0.01}


def paper_like(results: Path, n: int = 5, sd: float = 0.3) -> None:
    """Every cell with n seeds that follow the paper; small spread (sd on FG-ARI/mBO points, 2% on ratios)."""
    for i, (cell, fg) in enumerate(FG.items()):
        cols = {"fg_ari": spread(fg, sd, n), "mbo": spread(MBO.get(cell, 30.0), sd, n)}
        for key, table in (("mse", MSE), ("stripe", STRIPE), ("slot_cov", SLOT_COV)):
            cols[key] = spread(table.get(cell, 1.0), 0.02 * table.get(cell, 1.0), n)
        per_seed = [{k: v[s] for k, v in cols.items()} for s in range(n)]
        if cell.startswith("coco/"):
            per_seed = [{**v, "fg_ari_authors": v["fg_ari"] + 5, "pipeline": "authors",
                         "pipelines": {"authors": {**v, "fg_ari_authors": v["fg_ari"] + 5},
                                       "dinosaur": {**v, "fg_ari": 20.0 + v["fg_ari"] - fg if cell == "coco/sa" else
                                                    v["fg_ari"], "fg_ari_authors": v["fg_ari"] + 4}}} for v in per_seed]
        write_seeds(results, "metrics", cell, per_seed)
    for method, props in paper.TABLE2.items():
        cols = {p: spread(v, 2e-4, n) for p, v in props.items()}
        write_seeds(results, "probe", f"cmdsprites/{method}", [{p: v[s] for p, v in cols.items()} for s in range(n)])
    for seed, final in enumerate(spread(-10.0, 0.2, n)):
        write_log(results, "coco/covloss", seed, [1e-3, 1e-6, 10 ** final])
    write_seeds(results, "metrics", "cmdsprites/cosineloss_proj", [{"diverged": 1, "diverged_step": 500}] * 12)
