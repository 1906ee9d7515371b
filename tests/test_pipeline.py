"""The whole `test` preset DAG, raw data to report: every table, figure and the PDF appear,
the tables hold exactly the numbers of the metrics files they were made from, and the numbers
are those the DAG made before the library moved into stage packages (tests/reference/); a
deleted figure or table is rebuilt on its own."""
import json
import re

import pandas as pd
import pytest

pytest.register_assert_rewrite("workflow_repo")
import headline  # noqa: E402
from slotcov.cells import PAPER_CELLS  # noqa: E402
from slotcov.evaluate.evaluation import METRIC_KEYS  # noqa: E402
from slotcov.report.plots import TERMS as PLOT_TERMS  # noqa: E402
from slotcov.report.results import read_result  # noqa: E402
from workflow_repo import job_counts, plan, snakemake  # noqa: E402

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
    assert runs == {f"{c.replace('/', '-')}-seed0" for c in PAPER_CELLS}  # every trained cell of the preset
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
        data = read_result(finished_all / "results", path)  # with its details: every COCO pipeline's section
        if data.get("diverged") != 1:
            assert data["stripe"] >= 1.0, path
            assert all(section["stripe"] >= 1.0 for section in data.get("pipelines", {}).values()), path
    summary = pd.read_csv(finished_all / "reports" / "claims" / "summary.csv")
    not_run = summary[summary["verdict"] == "not run"]  # only a claim on a pipeline no COCO model trained under
    assert all("data.coco.train_pipelines must list dinosaur" in why for why in not_run["why"]), not_run[["id", "why"]]
    assert len(not_run) <= 1, not_run[["id", "why"]]
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
    assert "Property probing on frozen ColoredMDSprites slots (paper Table 2)." in html  # tables.TABLES' caption
    assert "Bottleneck sweep: FG-ARI and slot covariance" in html  # figures.FIGURES' caption
    assert "summary.csv" in html and "claims.csv" in html  # the Claims category's entries (reports/claims)
    assert "slotcov reproduces" in html  # the workflow description (workflow/report/workflow.rst)
    timed = set(re.findall(r'\{"rule": "(\w+)", "runtime": [\d.]+\}', html))  # the Statistics panel
    assert {"make_mdsprites", "train", "evaluate", "probe", "table", "figure", "claims", "report"} <= timed, timed


@pytest.mark.slow
@pytest.mark.trained_numbers
def test_the_test_dag_makes_the_numbers_it_made_before_the_move(finished_all):
    """Every headline number and table cell of tests/reference/ (made before the stage packages), within the
    tolerances of tests/headline.py (training's floating point differs between CPUs)."""
    off = headline.off_reference(finished_all)
    assert not off, "numbers moved from tests/reference/ (tests/headline.py says how to regenerate it):\n" + \
        "\n".join(off)


def test_the_reference_comparison_sees_a_moved_number_and_a_missing_row(tmp_path):
    """headline.off_reference on a copy of the reference passes, and fails for one number moved by twice its
    tolerance, a changed table cell or a missing table row."""
    ref = json.loads((headline.REFERENCE / "numbers.json").read_text())
    for path, numbers in ref.items():
        file = tmp_path / "results" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        sections = {}
        for key, value in numbers.items():
            *section, leaf = key.split(".")
            node = sections
            for part in section:
                node = node.setdefault(part, {})
            node[leaf] = value
        file.write_text(json.dumps({**sections, "n_new": 1}))  # a key the reference lacks is not compared
    tables = tmp_path / "reports" / "tables"
    tables.mkdir(parents=True)
    for name in headline.TABLES:
        (tables / f"{name}.csv").write_bytes((headline.REFERENCE / "tables" / f"{name}.csv").read_bytes())
    assert headline.off_reference(tmp_path) == []
    file = tmp_path / "results" / "metrics" / "coco" / "sa" / "seed0.json"
    data = json.loads(file.read_text())
    data["pipelines"]["authors"]["fg_ari"] += 2 * headline.tolerance("fg_ari")
    file.write_text(json.dumps(data))
    t1 = pd.read_csv(tables / "table1.csv")
    t1.loc[0, "marks"] = "replica"
    t1.drop(index=3).to_csv(tables / "table1.csv", index=False)
    off = headline.off_reference(tmp_path)
    assert len(off) == 3 and "metrics/coco/sa/seed0.json pipelines.authors.fg_ari" in off[0], off
    assert "marks" in off[1] and "row missing" in off[2], off


@pytest.mark.slow
def test_a_deleted_figure_or_table_is_rebuilt_on_its_own(finished_all):
    """Each figure and table file is a declared output: deleting one makes `all` (and the target rules
    `figures`, `tables`) plan its job, and asking for the file rebuilds it."""
    repo = finished_all
    for path in (repo / "reports" / "figures").glob("sweep_beta.*"):
        path.unlink()
    counts, _ = plan(repo, "all")
    assert counts == {"figure": 1, "report": 1, "all": 1}, counts
    proc = snakemake(repo, "--cores", "2", "figures")
    assert job_counts(proc.stdout + proc.stderr) == {"figure": 1, "figures": 1}
    assert (repo / "reports" / "figures" / "sweep_beta.png").stat().st_size > 0
    (repo / "reports" / "tables" / "table1.csv").unlink()
    proc = snakemake(repo, "--cores", "2", "reports/tables/table1.csv")
    assert job_counts(proc.stdout + proc.stderr) == {"table": 1}
    assert "cmdsprites,sa,fg_ari" in (repo / "reports" / "tables" / "table1.csv").read_text()
    proc = snakemake(repo, "--cores", "2", "all")  # the report again: leave the DAG finished
    assert job_counts(proc.stdout + proc.stderr) == {"report": 1, "all": 1}
