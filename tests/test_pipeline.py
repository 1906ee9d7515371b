"""The whole `test` preset DAG, raw data to report: every table, figure and the PDF appear,
and the tables hold exactly the numbers of the metrics files they were made from."""
import json
import re

import pandas as pd
import pytest

from slotcov.evaluate.evaluation import METRIC_KEYS
from slotcov.report.plots import TERMS as PLOT_TERMS
from slotcov.report.results import read_result
from workflow_repo import snakemake

pytest_plugins = ["workflow_repo"]

FIGURES = ["recon_cmdsprites_sa", "recon_cmdsprites_covloss", "recon_cmdsprites_cosineloss",
           "recon_cmdsprites_sa_more", "masks_coco", "masks_coco_more", "masks_coco_dinosaur",
           "curves_cmdsprites", "curves_coco", "sweep_beta"]


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

    # every Table 1 and Table 3 number is the one in its metrics file (with its details file)
    t1 = pd.concat([pd.read_csv(tables / "table1.csv"), pd.read_csv(tables / "table3.csv")])
    checked = 0
    for row in t1.itertuples():
        metrics = repo / "results" / "metrics" / row.dataset / row.method / "seed0.json"
        if metrics.exists():  # COCO columns "dinosaur.fg_ari": that pipeline's section of the details
            data = read_result(repo / "results", metrics)
            section, _, key = row.metric.rpartition(".")
            numbers = data["pipelines"].get(section) if section else data
            if numbers is None:  # no model trained under that pipeline (the default trains the primary only)
                assert row.n == 0 and row.method != "blockmasks", row
                continue
            assert row.mean == pytest.approx(numbers[key], abs=1e-3), row
            checked += 1
    assert checked >= 10 and {"fg_ari", "dinosaur.fg_ari", "fg_ari_authors"} <= set(t1.metric)
    coco = json.loads((repo / "results" / "metrics" / "coco" / "sa" / "seed0.json").read_text())
    assert set(coco) <= set(METRIC_KEYS) and {"fg_ari", "mbo", "mse"} <= set(coco)
    details = json.loads((repo / "results" / "details" / "metrics" / "coco" / "sa" / "seed0.json").read_text())
    assert details["pipeline"] == "authors" and set(details["pipelines"]) == {"authors"}  # trained under it only
    assert details["fg_ari_authors"] == details["pipelines"]["authors"]["fg_ari_authors"]
    blocks = json.loads((repo / "results" / "details" / "metrics" / "coco" / "blockmasks" / "seed0.json").read_text())
    assert set(blocks["pipelines"]) == {"authors", "dinosaur"}  # not trained: scored under every pipeline
    assert not list((repo / "results" / "runs" / "coco").glob("*/seed*-*"))  # no run under another pipeline
    for term in PLOT_TERMS:  # the DVC plot data: one CSV per term, the runs that logged it
        curves = pd.read_csv(repo / "reports" / "plots" / f"{term}.csv")
        assert list(curves.columns) == ["step", term, "run"], term
    runs = set(pd.read_csv(repo / "reports" / "plots" / "loss.csv")["run"])
    assert runs == {f"{c.replace('/', '-')}-seed0" for c in ("cmdsprites/sa", "cmdsprites/covloss",
                                                               "cmdsprites/cosineloss", "coco/sa", "coco/dinosaur")
                    } | {f"coco-{m}-seed0" for m in ("covloss", "cosineloss", "dinosaur_covloss", "dinosaur1024",
                                                     "dinosaur1024_covloss")}
    t2 = pd.read_csv(tables / "table2.csv")
    probe = json.loads((repo / "results" / "probe" / "cmdsprites" / "sa" / "seed0.json").read_text())
    shape = t2[(t2.method == "sa") & (t2.metric == "shape_acc")]
    assert shape["mean"].iloc[0] == pytest.approx(probe["shape_acc"], abs=1e-4)


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
