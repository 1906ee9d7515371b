"""The claims ledger on hand-made result trees: verdicts, intervals (checked against scipy), outputs, DVC."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from slotcov import claims, paper
from slotcov.cli import main
from slotcov.errors import UserError

IDS = [f"C{i}" for i in range(1, 12)]
# Every trained or evaluated cell a claim reads, with values that follow the paper's numbers.
PAPER_LIKE = {"cmdsprites/" + m: v for (d, m), v in paper.TABLE1.items() if d == "cmdsprites"}
PAPER_LIKE |= {"coco/" + m: v for (d, m), v in paper.TABLE1.items() if d == "coco"}
PAPER_LIKE |= {"coco/" + m: v for m, v in paper.TABLE3.items()} | {"coco/blockmasks": paper.BLOCKMASKS}


def write_metrics(results: Path, cell: str, values_per_seed: list[dict], kind: str = "metrics") -> None:
    for seed, values in enumerate(values_per_seed):
        path = results / kind / cell / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def write_fg(results: Path, cell: str, values: list[float]) -> None:
    write_metrics(results, cell, [{"fg_ari": v, "fg_ari_n": 320} for v in values])


def write_log(results: Path, cell: str, seed: int, cov: list) -> None:
    path = results / "runs" / cell / f"seed{seed}" / "log.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": np.arange(1, len(cov) + 1) * 10, "loss": 1.0, "cov": cov}).to_csv(path, index=False)


def rows(df: pd.DataFrame, cid: str, **where) -> pd.DataFrame:
    sel = df["id"] == cid
    for key, value in where.items():
        sel &= df[key] == value
    return df[sel]


def one(df: pd.DataFrame, cid: str, **where) -> dict:
    (row,) = rows(df, cid, **where).to_dict("records")
    return row


def full_tree(results: Path, n_seeds: int = 3, rng=None) -> None:
    """Every cell with `n_seeds` seeds near the paper's numbers, probing near Table 2, COVLOSS logs."""
    rng = rng or np.random.default_rng(0)
    for cell, value in PAPER_LIKE.items():
        cov = 2.0 if "1024" in cell else 1.0
        write_metrics(results, cell, [{"fg_ari": value + rng.normal(0, 0.2), "slot_cov": cov + rng.normal(0, 0.01)}
                                      for _ in range(n_seeds)])
    for method, props in paper.TABLE2.items():
        write_metrics(results, f"cmdsprites/{method}", [{p: v + rng.normal(0, 2e-4) for p, v in props.items()}
                                                        for _ in range(n_seeds)], kind="probe")
    for seed in range(n_seeds):
        write_log(results, "coco/covloss", seed, [1e-3, 1e-6, 10 ** rng.uniform(-10.5, -9.8)])


# ----------------------------------------------------------------------------- verdicts

def test_clearly_reproduced(tmp_path):
    write_fg(tmp_path, "cmdsprites/sa", [90.0, 91.0, 90.5])
    write_fg(tmp_path, "cmdsprites/covloss", [87.0, 87.5, 88.0])
    row = one(claims.ledger(tmp_path), "C1", part="sa > covloss")
    assert row["verdict"] == "reproduced"
    assert row["ours"] == pytest.approx(90.5 - 87.5)
    assert 0 < row["ci_low"] < row["ours"] < row["ci_high"]
    assert row["n_seeds"] == 3 and row["method"] == claims.WELCH
    assert row["paper"] == pytest.approx(90.71 - 87.42) and row["paper_in_ci"] == "yes"


def test_clearly_reversed_is_not_reproduced(tmp_path):
    write_fg(tmp_path, "cmdsprites/sa", [80.0, 80.5, 81.0])
    write_fg(tmp_path, "cmdsprites/covloss", [87.0, 87.5, 88.0])
    row = one(claims.ledger(tmp_path), "C1", part="sa > covloss")
    assert row["verdict"] == "not reproduced" and row["ci_high"] < 0
    assert row["paper_in_ci"] == "no"


def test_overlapping_is_inconclusive(tmp_path):
    write_fg(tmp_path, "cmdsprites/sa", [85.0, 90.0, 88.0])
    write_fg(tmp_path, "cmdsprites/cosineloss", [86.0, 89.0, 87.0])
    row = one(claims.ledger(tmp_path), "C1", part="sa > cosineloss")
    assert row["verdict"] == "inconclusive" and row["ci_low"] < 0 < row["ci_high"]


def test_one_seed_is_never_a_verdict(tmp_path):
    write_fg(tmp_path, "cmdsprites/sa", [95.0])  # far apart, but one seed on one side
    write_fg(tmp_path, "cmdsprites/covloss", [50.0, 51.0, 52.0])
    row = one(claims.ledger(tmp_path), "C1", part="sa > covloss")
    assert row["verdict"] == "inconclusive" and "cmdsprites/sa has 1 seed" in row["why"]
    assert row["ours"] == pytest.approx(44.0) and math.isnan(row["ci_low"]) and row["n_seeds"] == 1
    write_metrics(tmp_path, "coco/covloss", [{"fg_ari": 40.0}])  # one seed against a quoted number too
    row = one(claims.ledger(tmp_path), "C2", baseline=paper.QUOTED)
    assert row["verdict"] == "inconclusive" and row["ours"] == pytest.approx(20.0)


def test_missing_cell_is_not_run(tmp_path):
    write_fg(tmp_path, "cmdsprites/sa", [90.0, 91.0])
    df = claims.ledger(tmp_path)
    row = one(df, "C1", part="sa > cosineloss")
    assert row["verdict"] == "not run" and "cmdsprites/cosineloss" in row["why"]
    assert math.isnan(row["ours"])
    assert set(df["id"]) == set(IDS)  # every claim is listed, run or not
    assert set(rows(df, "C5")["verdict"]) == {"not run"}


def test_empty_tree_lists_every_claim_as_not_run(tmp_path):
    df = claims.ledger(tmp_path)
    assert list(dict.fromkeys(df["id"])) == IDS
    assert set(df["verdict"]) == {"not run"}
    assert len(df) == sum(len(c["parts"]) for c in paper.CLAIMS)  # one pipeline ("primary"), one FG-ARI


def test_equivalence_claim_c11(tmp_path):
    write_fg(tmp_path, "coco/sa", [19.0, 20.5, 21.0])
    assert one(claims.ledger(tmp_path), "C11")["verdict"] == "reproduced"
    write_fg(tmp_path, "coco/sa", [1.0, 0.5, 0.8])
    assert one(claims.ledger(tmp_path), "C11")["verdict"] == "not reproduced"
    write_fg(tmp_path, "coco/sa", [10.0, 20.0, 30.0])
    assert one(claims.ledger(tmp_path), "C11")["verdict"] == "inconclusive"


def test_c2_and_c4_are_judged_against_both_baselines(tmp_path):
    write_fg(tmp_path, "coco/covloss", [29.0, 30.0, 29.5])
    write_fg(tmp_path, "coco/sa", [28.0, 29.5, 30.5])  # our own SA is as good as COVLOSS
    df = claims.ledger(tmp_path)
    quoted, ours = one(df, "C2", baseline=paper.QUOTED), one(df, "C2", baseline=paper.OURS)
    assert quoted["verdict"] == "reproduced" and quoted["method"] == claims.ONE_SAMPLE
    assert quoted["ours"] == pytest.approx(29.5 - 20.0)
    assert ours["verdict"] == "inconclusive" and ours["method"] == claims.WELCH
    assert set(rows(df, "C4")["baseline"]) == {"-", paper.QUOTED, paper.OURS}


# ----------------------------------------------------------------------------- intervals against scipy

def test_welch_interval_matches_the_textbook_formula():
    a, b = [90.0, 91.5, 89.0, 92.0], [87.0, 87.5, 88.9]
    effect, low, high, method = claims.interval(a, b)
    va, vb, na, nb = np.var(a, ddof=1), np.var(b, ddof=1), len(a), len(b)
    se = math.sqrt(va / na + vb / nb)
    df = (va / na + vb / nb) ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * se
    diff = np.mean(a) - np.mean(b)
    assert method == claims.WELCH and effect == pytest.approx(diff)
    assert (low, high) == pytest.approx((diff - half, diff + half), rel=1e-10)


def test_one_sample_interval_matches_the_textbook_formula():
    a, c = [29.0, 31.0, 27.5], 20.0
    effect, low, high, method = claims.interval(a, c)
    half = stats.t.ppf(0.975, len(a) - 1) * np.std(a, ddof=1) / math.sqrt(len(a))
    diff = np.mean(a) - c
    assert method == claims.ONE_SAMPLE and effect == pytest.approx(diff)
    assert (low, high) == pytest.approx((diff - half, diff + half), rel=1e-10)


def test_zero_spread_gives_a_point_interval():
    assert claims.interval([3.0, 3.0], [1.0, 1.0])[1:3] == (2.0, 2.0)
    assert claims.interval([3.0, 3.0], 1.0)[1:3] == (2.0, 2.0)


@pytest.mark.parametrize("op,low,high,expected", [
    (">", 0.1, 2.0, "reproduced"), (">", -2.0, -0.1, "not reproduced"), (">", -1.0, 1.0, "inconclusive"),
    ("<", -2.0, -0.1, "reproduced"), ("<", 0.1, 2.0, "not reproduced"), ("<", -1.0, 1.0, "inconclusive"),
    (">", 0.0, 1.0, "inconclusive")])
def test_verdict_rules(op, low, high, expected):
    assert claims.verdict(op, low, high)[0] == expected


# ----------------------------------------------------------------------------- C10, C8, pipelines

def test_c10_reads_the_final_covariance_term_of_each_log(tmp_path):
    for seed, final in enumerate([1e-10, 3e-11, 2e-10]):
        write_log(tmp_path, "coco/covloss", seed, [1e-2, 1e-5, "", final])  # a blank cell is skipped
    row = one(claims.ledger(tmp_path), "C10")
    logs = np.log10([1e-10, 3e-11, 2e-10])
    assert row["verdict"] == "reproduced" and row["mean_a"] == pytest.approx(logs.mean())
    assert row["ours"] == pytest.approx(logs.mean() + 9) and row["n_seeds"] == 3
    for seed in range(3):  # the term went low, then back up: the final value decides
        write_log(tmp_path, "coco/covloss", seed, [1e-12, 1e-12, 1e-3 * (seed + 1)])
    assert one(claims.ledger(tmp_path), "C10")["verdict"] == "not reproduced"


def test_c10_without_a_cov_column_is_not_run(tmp_path):
    path = tmp_path / "runs" / "coco" / "covloss" / "seed0" / "log.csv"
    path.parent.mkdir(parents=True)
    path.write_text("step,loss\n1,0.5\n")
    assert one(claims.ledger(tmp_path), "C10")["verdict"] == "not run"


def test_c8_uses_slot_covariance(tmp_path):
    write_metrics(tmp_path, "coco/dinosaur", [{"fg_ari": 44.0 + s, "slot_cov": 0.010 + 1e-3 * s} for s in range(3)])
    write_metrics(tmp_path, "coco/dinosaur1024", [{"fg_ari": 15.0 + s, "slot_cov": 0.5 + 1e-2 * s} for s in range(3)])
    df = claims.ledger(tmp_path)
    assert one(df, "C8", metric="slot_cov")["verdict"] == "reproduced"
    assert one(df, "C8", metric="fg_ari")["verdict"] == "reproduced"
    assert math.isnan(one(df, "C8", metric="slot_cov")["paper"])  # the paper prints no number for it


def test_each_coco_pipeline_and_fg_ari_variant_is_its_own_row(tmp_path):
    """Contract: top-level keys = the primary pipeline; `pipelines: {authors: ..., dinosaur: ...}`."""
    def files(authors, dinosaur):
        return [{"fg_ari": a, "fg_ari_authors": a + 1, "pipeline": "authors",
                 "pipelines": {"authors": {"fg_ari": a, "fg_ari_authors": a + 1},
                               "dinosaur": {"fg_ari": d, "fg_ari_authors": d + 1}}} for a, d in zip(authors, dinosaur)]
    write_metrics(tmp_path, "coco/dinosaur", files([44.0, 45.0, 44.5], [30.0, 30.5, 31.0]))
    write_metrics(tmp_path, "coco/dinosaur_covloss", files([42.0, 42.5, 43.0], [40.0, 40.5, 41.0]))
    df = claims.ledger(tmp_path)
    c7 = rows(df, "C7")
    assert sorted(zip(c7["pipeline"], c7["metric"])) == [("authors", "fg_ari"), ("authors", "fg_ari_authors"),
                                                        ("dinosaur", "fg_ari"), ("dinosaur", "fg_ari_authors")]
    assert set(rows(df, "C7", pipeline="authors")["verdict"]) == {"reproduced"}
    assert set(rows(df, "C7", pipeline="dinosaur")["verdict"]) == {"not reproduced"}
    assert one(df, "C7", pipeline="dinosaur", metric="fg_ari")["ours"] == pytest.approx(40.5 - 30.5)
    assert set(rows(df, "C1")["pipeline"]) == {"-"}  # ColoredMDSprites has no pipelines


def test_three_seed_tree_gives_every_claim_an_interval(tmp_path):
    full_tree(tmp_path, n_seeds=3)
    df = claims.ledger(tmp_path)
    assert set(df["id"]) == set(IDS) and (df["n_seeds"] == 3).all()
    assert np.isfinite(df[["ours", "ci_low", "ci_high"]].to_numpy(float)).all()
    assert (df["verdict"] != "not run").all()
    # values follow the paper, spread is small: every part the paper supports with a number is reproduced
    assert set(df["verdict"]) == {"reproduced"}, df[df["verdict"] != "reproduced"][["id", "part", "why"]]


# ----------------------------------------------------------------------------- outputs

def test_cli_writes_the_four_files(tmp_path):
    full_tree(tmp_path / "results", n_seeds=2)
    out = tmp_path / "claims"
    assert main(["claims", "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    table = pd.read_csv(out / "claims.csv")
    assert {"id", "claim", "paper", "ours", "ci_low", "ci_high", "n_seeds", "verdict", "pipeline", "metric",
            "method", "baseline"} <= set(table.columns)
    assert list(dict.fromkeys(table["id"])) == IDS
    data = json.loads((out / "claims.json").read_text())
    assert len(data) == len(table) and not any("." in key for key in data)
    assert {row["verdict"] for row in data.values()} <= set(claims.VERDICTS)
    md = (out / "claims.md").read_text()
    assert all(f"| {cid} |" in md for cid in IDS) and "Welch" in md
    assert "- **C5** (Sec. 4.2.2, Table 2):" in md and "Rows: 5 reproduced." in md  # per-claim tally
    tex = (out / "claims.tex").read_text()
    assert "\\begin{longtable}" in tex and "shape\\_acc" in tex and "fg_ari" not in tex


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="--results"):
        claims.cli_claims(["--results", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    bad = tmp_path / "metrics" / "cmdsprites" / "sa" / "seed0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(UserError, match="seed0.json"):
        claims.ledger(tmp_path)


def test_dvc_metrics_diff_shows_a_changed_verdict(tmp_path):
    """claims.json is a DVC metric: a verdict that changes between commits appears in `dvc metrics diff`."""
    dvc = Path(sys.executable).parent / "dvc"
    if not dvc.exists():
        pytest.skip("dvc is not installed in this environment")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def run(*cmd):
        return subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, text=True)

    run("git", "init", "-q")
    run("git", "config", "user.email", "t@t")
    run("git", "config", "user.name", "t")
    run(str(dvc), "init", "-q")
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - reports/claims/claims.json\n")
    write_fg(tmp_path / "results", "cmdsprites/sa", [90.0, 91.0, 90.5])
    write_fg(tmp_path / "results", "cmdsprites/covloss", [87.0, 87.5, 88.0])
    claims.write_ledger(tmp_path / "results", tmp_path / "reports" / "claims")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "ledger")
    write_fg(tmp_path / "results", "cmdsprites/covloss", [95.0, 95.5, 96.0])
    claims.write_ledger(tmp_path / "results", tmp_path / "reports" / "claims")
    diff = json.loads(run(str(dvc), "metrics", "diff", "--json").stdout)["reports/claims/claims.json"]
    assert diff["C1/sa-gt-covloss/fg_ari.verdict"] == {"old": "reproduced", "new": "not reproduced"}
