"""The whole `test` preset DAG, raw data to report: every table, figure and the PDF appear,
and the tables hold exactly the numbers of the metrics files they were made from."""
import json
import re

import pandas as pd
import pytest

from workflow_repo import snakemake

pytest_plugins = ["workflow_repo"]

FIGURES = ["recon_cmdsprites_sa", "recon_cmdsprites_covloss", "recon_cmdsprites_cosineloss",
           "recon_cmdsprites_sa_more", "masks_coco", "masks_coco_more", "masks_coco_dinosaur",
           "curves_cmdsprites", "curves_coco", "sweep_beta", "stripe_scores"]


@pytest.mark.slow
def test_test_preset_makes_every_table_figure_and_the_report(finished_all):
    repo = finished_all
    tables = repo / "reports" / "tables"
    for n in (1, 2, 3):
        assert (tables / f"table{n}.tex").stat().st_size > 0
    assert "\\newcommand" in (repo / "reports" / "numbers.tex").read_text()
    for name in FIGURES:
        assert (repo / "reports" / "figures" / f"{name}.png").exists(), name
        assert (repo / "reports" / "figures" / f"{name}.pdf").exists(), name
    assert (repo / "reports" / "report.pdf").read_bytes()[:5] == b"%PDF-"

    # every Table 1 and Table 3 number is the one in its metrics file
    t1 = pd.concat([pd.read_csv(tables / "table1.csv"), pd.read_csv(tables / "table3.csv")])
    checked = 0
    for row in t1.itertuples():
        metrics = repo / "results" / "metrics" / row.dataset / row.method / "seed0.json"
        if metrics.exists():  # COCO columns "dinosaur.fg_ari": that pipeline's section of the file
            data = json.loads(metrics.read_text())
            section, _, key = row.metric.rpartition(".")
            assert row.mean == pytest.approx((data["pipelines"][section] if section else data)[key], abs=1e-3), row
            checked += 1
    assert checked >= 10 and {"fg_ari", "dinosaur.fg_ari", "fg_ari_authors"} <= set(t1.metric)
    coco = json.loads((repo / "results" / "metrics" / "coco" / "sa" / "seed0.json").read_text())
    assert coco["pipeline"] == "authors" and set(coco["pipelines"]) == {"authors", "dinosaur"}
    assert coco["fg_ari_authors"] == coco["pipelines"]["authors"]["fg_ari_authors"]
    t2 = pd.read_csv(tables / "table2.csv")
    probe = json.loads((repo / "results" / "probe" / "cmdsprites" / "sa" / "seed0.json").read_text())
    shape = t2[(t2.method == "sa") & (t2.metric == "shape_acc")]
    assert shape["mean"].iloc[0] == pytest.approx(probe["shape_acc"], abs=1e-4)


@pytest.mark.slow
def test_the_ablation_cells_and_the_stripe_score_reach_the_claims_ledger(finished_all):
    """Both ablation cells train and are evaluated like the others, every metrics file (each COCO pipeline section
    too, block masks included) holds a stripe score, and the ledger gives every claim a verdict: one seed each, so
    "inconclusive", never "not run"."""
    metrics = finished_all / "results" / "metrics"
    for method in ("covloss_var", "cosineloss_proj"):
        data = json.loads((metrics / "cmdsprites" / method / "seed0.json").read_text())
        assert data["diverged"] == 1 or data["stripe"] >= 1.0, data
        assert (finished_all / "results" / "runs" / "cmdsprites" / method / "seed0" / "run.json").exists()
    for path in metrics.glob("*/*/seed0.json"):
        data = json.loads(path.read_text())
        if data.get("diverged") != 1:
            assert data["stripe"] >= 1.0, path
            assert all(section["stripe"] >= 1.0 for section in data.get("pipelines", {}).values()), path
    summary = pd.read_csv(finished_all / "reports" / "claims" / "summary.csv")
    assert "not run" not in set(summary["verdict"]), summary[summary["verdict"] == "not run"][["id", "why"]]
    for cid in ("C15", "C16", "C20", "C24"):
        assert summary.loc[summary["id"] == cid, "verdict"].item() == "inconclusive", cid


@pytest.mark.slow
def test_snakemake_html_report_of_the_finished_run(finished_all):
    out = finished_all / "reports" / "workflow-report.html"
    snakemake(finished_all, "--report", str(out))
    html = out.read_text()
    for name in FIGURES:
        assert f"{name}.png" in html, name
    for n in (1, 2, 3):
        assert f"table{n}.csv" in html
    assert "report.pdf" in html and "Tables" in html and "Figures" in html  # results and their categories
    assert "Table 2 of the paper: property probing" in html  # a caption from workflow/report/tables.rst
    assert "slotcov reproduces" in html  # the workflow description (workflow/report/workflow.rst)
    timed = set(re.findall(r'\{"rule": "(\w+)", "runtime": [\d.]+\}', html))  # the Statistics panel
    assert {"make_mdsprites", "train", "evaluate", "probe", "tables", "figures", "report"} <= timed, timed
