"""Tables, numbers.tex, figures and the report, built from synthetic result files in tmp_path."""
import contextlib
import io
import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from slotcov import paper

from slotcov.report import figures

from slotcov.report import latex as report

from slotcov.report import results

from slotcov.evaluate.evaluation import METRIC_KEYS, write_result
from slotcov.evaluate.probing import PROBE_KEYS
from slotcov.report import tables
from slotcov.errors import UserError

PROV = {"git_commit": "0123456789abcdef", "config_hash": "abc", "preset": "paper", "device": "NVIDIA H100",
        "slurm_job_id": "42", "wall_time_s": "3600.5", "versions": "torch 2"}


def write_cell(results, kind, dataset, method, seed, values, **prov):
    """A result file and its details file, split as `slotcov evaluate` / `slotcov probe` split them, and provenance."""
    path = results / kind / dataset / method / f"seed{seed}.json"
    write_result(values, path, results / "details" / kind / dataset / method / f"seed{seed}.json",
                 PROBE_KEYS if kind == "probe" else METRIC_KEYS)
    pipeline = "cmdsprites" if dataset == "cmdsprites" else "authors"
    defaults = {"pipeline": pipeline, "train_pipeline": "" if method == "blockmasks" else pipeline,
                "dataset_kind": "real", "encoder_weights": "none" if dataset == "cmdsprites" else "dino"}
    if kind == "probe":  # the authors' probe
        defaults.update(probe_protocol="authors", probe_resample_slots="true")
    prov_path = results / "provenance" / kind / dataset / method / f"seed{seed}.json"
    prov_path.parent.mkdir(parents=True, exist_ok=True)
    fields = {**PROV, **defaults, **prov}  # a field given as None is left out (an older file's layout)
    prov_path.write_text(json.dumps({k: v for k, v in fields.items() if v is not None}))
    return path


def coco(fg_ari, other, authors, frac=0.25, diff=3.0, n=5000):
    """A COCO result with models trained and scored under both pipelines (primary: authors)."""
    section = lambda ari, theirs: {"fg_ari": ari, "fg_ari_n": n, "fg_ari_authors": theirs,  # noqa: E731
                                   "fg_ari_metric_frac_differ": frac, "fg_ari_metric_mean_diff": diff}
    return {**section(fg_ari, authors), "pipeline": "authors",
            "pipelines": {"authors": section(fg_ari, authors), "dinosaur": section(other, other + 1)}}


def make_results(results, rng=np.random.default_rng(0)):
    """A full set of result files: metrics, probing, samples, logs and the sweep."""
    for seed, ari in enumerate([90.0, 92.0, 91.0]):
        write_cell(results, "metrics", "cmdsprites", "sa", seed, {"fg_ari": ari, "fg_ari_n": 320, "mbo": 50.0,
                                                                   "stripe": 1.2 + 0.1 * seed})
    write_cell(results, "metrics", "cmdsprites", "covloss", 0, {"fg_ari": 87.5, "fg_ari_n": 320},
               dataset_kind="replica")
    write_cell(results, "metrics", "cmdsprites", "covloss_var", 0, {"fg_ari": 86.0, "fg_ari_n": 320, "stripe": 1.6})
    write_cell(results, "metrics", "cmdsprites", "cosineloss_proj", 0, {"diverged": 1, "diverged_step": 7})
    write_cell(results, "metrics", "coco", "covloss", 0, coco(25.0, 21.0, 31.0),
               dataset_kind="synthetic-coco", encoder_weights="random",
               pipeline=None, train_pipeline=None, protocol="dinosaur")  # an earlier slotcov's provenance file
    write_cell(results, "metrics", "coco", "dinosaur", 0, coco(40.0, 38.0, 44.0, frac=0.4, diff=4.5))
    write_cell(results, "metrics", "coco", "blockmasks", 0, coco(22.0, 23.5, 30.0), pipeline="dinosaur")
    for seed in (0, 1):
        write_cell(results, "probe", "cmdsprites", "sa", seed,
                   {"shape_acc": 0.8 + 0.01 * seed, "color_r2": 0.9, "scale_r2": 0.7, "x_r2": 0.95, "y_r2": 0.96,
                    "n_train_objects": 10000, "n_test_objects": 2000})
    n, k = 8, 5
    for dataset, method in [("cmdsprites", "sa"), ("cmdsprites", "covloss"), ("coco", "sa"), ("coco", "dinosaur")]:
        size = 32
        logits = rng.normal(size=(n, k, size, size)) * 3
        masks = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        arrays = {"image": rng.uniform(size=(n, size, size, 3)).astype(np.float32),
                  "masks": masks.astype(np.float32),
                  "true_ids": rng.integers(0, 4, size=(n, 16, 16))}
        if method != "dinosaur":
            arrays["recon"] = rng.uniform(size=(n, size, size, 3)).astype(np.float32)
        path = results / "samples" / dataset / method / "seed0.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
    steps = np.arange(0, 1000, 100)
    for method in ("sa", "covloss"):
        path = results / "runs" / "cmdsprites" / method / "seed0" / "log.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"step": steps, "lr": 4e-4 * np.minimum(1, steps / 500), "loss": 1 / (steps + 10),
                      "recon": 1 / (steps + 10), "cov": 1e-3 / (steps + 1) if method == "covloss" else 0.0,
                      "var": 0.0, "cos": 0.0, "grad_norm": 1.0, "sec": steps / 10}).to_csv(path, index=False)
    for beta in (0.0, 0.1, 1.0, 10.0):
        for seed in (0, 1):
            path = results / "sweep" / "cmdsprites" / "covloss" / f"beta{beta:g}" / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"fg_ari": 80 + beta + seed, "slot_cov": 1e-3 / (1 + beta),
                                        "reg.cov_weight": beta}))


def cell(df, method, dataset=None, metric=None):
    sel = df["method"] == method
    if dataset:
        sel &= df["dataset"] == dataset
    if metric:
        sel &= df["metric"] == metric
    (row,) = df[sel].to_dict("records")
    return row


def test_tables_from_metrics_files(tmp_path):
    results = tmp_path / "results"
    make_results(results)
    out = tmp_path / "reports" / "tables"
    t = tables.tables(results, out)
    sa = cell(t["table1"], "sa", "cmdsprites")
    assert sa["mean"] == pytest.approx(91.0) and sa["std"] == pytest.approx(1.0) and sa["n"] == 3
    assert sa["paper"] == paper.TABLE1[("cmdsprites", "sa")] and sa["marks"] == ""
    tex1 = (out / "table1.tex").read_text()
    assert r"$91.00 \pm 1.00$\,{\scriptsize(3)}" in tex1 and "90.71" in tex1 and r"\toprule" in tex1
    # replica cell: marker on the cell and its footnote
    cov = cell(t["table1"], "covloss", "cmdsprites")
    assert cov["marks"] == "replica" and cov["n"] == 1 and np.isnan(cov["std"])
    assert r"87.50\,{\scriptsize(1)}$^{\dagger}$" in tex1 and "replica rendered by slotcov" in tex1
    # COCO covloss: synthetic data, random encoder, other pipeline (an older file's `protocol`); all footnoted
    cov = cell(t["table1"], "covloss", "coco", "fg_ari")
    assert set(cov["marks"].split(";")) == {"synthetic", "random", "pipeline"}
    assert "synthetic COCO-format" in tex1 and "random weights" in tex1
    assert "another pipeline than the paper's (scored on dinosaur instead of authors)" in tex1
    # COCO: the primary pipeline's FG-ARI, the other pipeline's beside it, the authors' metric as a column
    assert cov["mean"] == 25.0 and cov["paper"] == paper.TABLE1[("coco", "covloss")]
    assert cell(t["table1"], "covloss", "coco", "dinosaur.fg_ari")["mean"] == 21.0
    assert np.isnan(cell(t["table1"], "covloss", "coco", "dinosaur.fg_ari")["paper"])
    assert cell(t["table1"], "covloss", "coco", "fg_ari_authors")["mean"] == 31.0
    assert r"25.00\,{\scriptsize(1)}$^{\ddagger\S\P}$ & 21.00\,{\scriptsize(1)} & 31.00\,{\scriptsize(1)} & 29.55" in tex1
    assert "authors & dinosaur-trained & authors, authors' metric & paper" in tex1
    assert "FG-ARI of the models trained and scored under the authors pipeline" in tex1 and "64-image batches" in tex1
    assert "trained and scored under the dinosaur pipeline, -- where no model was trained under it" in tex1
    assert "cross-pipeline" not in tex1 and "DINOSAUR's pipeline" not in tex1
    # cells not run: a dash, no number
    assert cell(t["table1"], "cosineloss", "coco", "fg_ari")["n"] == 0
    assert re.search(r"CosineLoss & -- & 88\.82 & -- & -- & -- & 34\.23", tex1)
    # Table 2: 4 decimals, paper values beside
    shape = cell(t["table2"], "sa", metric="shape_acc")
    assert shape["mean"] == pytest.approx(0.805) and shape["n"] == 2
    tex2 = (out / "table2.tex").read_text()
    assert r"$0.8050 \pm 0.0071$" in tex2 and "0.8472" in tex2 and "ours (n=0)" in tex2
    # Table 3 with block masks reference (its own pipeline is DINOSAUR's: no mark)
    assert cell(t["table3"], "blockmasks", metric="fg_ari")["marks"] == ""
    assert cell(t["table3"], "blockmasks", metric="dinosaur.fg_ari")["mean"] == 23.5
    assert cell(t["table3"], "dinosaur", metric="fg_ari")["mean"] == pytest.approx(40.0)
    tex3 = (out / "table3.tex").read_text()
    assert re.search(r"DINOSAUR & 40\.00.* & 38\.00.* & 44\.00.* & 43\.86", tex3)
    csv = pd.read_csv(out / "table1.csv")
    assert list(csv.columns[:6]) == ["dataset", "method", "metric", "mean", "std", "n"] and len(csv) == 12
    assert set(csv[csv["dataset"] == "coco"]["metric"]) == {"fg_ari", "dinosaur.fg_ari", "fg_ari_authors"}


def test_a_method_without_a_paper_value_gets_a_dash(tmp_path, monkeypatch):
    """A table row of a method the paper does not print (a new cell) shows "--" in the paper column."""
    results = tmp_path / "results"
    make_results(results)
    write_cell(results, "metrics", "cmdsprites", "newreg", 0, {"fg_ari": 70.0, "fg_ari_n": 320})
    monkeypatch.setattr(paper, "TABLE1_ROWS", [*paper.TABLE1_ROWS, "newreg"])
    t = tables.tables(results, tmp_path / "tables")
    row = cell(t["table1"], "newreg", "cmdsprites")
    assert row["mean"] == 70.0 and np.isnan(row["paper"])
    line = next(x for x in (tmp_path / "tables" / "table1.tex").read_text().splitlines() if x.startswith("newreg &"))
    assert line.split(" & ")[2] == "--"


def test_tables_captions_and_files_come_from_tables_TABLES(tmp_path):
    """Each table of TABLES is a CSV and a TeX file with TABLES' caption; `only` writes just the ones named."""
    results = tmp_path / "results"
    make_results(results)
    tables.tables(results, tmp_path / "all")
    for name, caption in tables.TABLES:
        assert f"\\caption{{{tables.tex_escape(caption)}}}\\label{{tab:{name}}}" in (tmp_path / "all" / f"{name}.tex").read_text()
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(
        f"{name}.{ext}" for name, _ in tables.TABLES for ext in ("csv", "tex"))
    assert (tmp_path / "numbers.tex").exists()  # every table: the numbers beside the folder, as before
    (tmp_path / "numbers.tex").unlink()
    tables.tables(results, tmp_path / "one", only=["table2"])  # one table, no numbers file unless given
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["table2.csv", "table2.tex"]
    assert not (tmp_path / "numbers.tex").exists()
    tables.tables(results, tmp_path / "none", tmp_path / "n.tex", only=[])
    assert (tmp_path / "n.tex").exists() and not (tmp_path / "none").exists()
    with pytest.raises(UserError, match="no table table9"):
        tables.tables(results, tmp_path / "x", only=["table9"])


def test_load_results_flattens_pipelines(tmp_path):
    make_results(tmp_path)
    df = results.load_results(tmp_path).set_index(["dataset", "method"])
    row = df.loc[("coco", "dinosaur")]
    assert row["fg_ari"] == 40.0 and row["authors.fg_ari"] == 40.0 and row["dinosaur.fg_ari"] == 38.0
    assert row["dinosaur.fg_ari_authors"] == 39.0 and row["pipeline"] == "authors"
    assert pd.isna(df.loc[("cmdsprites", "covloss"), "dinosaur.fg_ari"])  # no pipelines there
    assert results.coco_pipelines(results.load_results(tmp_path)) == ("authors", "dinosaur")


def test_result_files_hold_the_metric_keys_and_load_results_adds_the_details(tmp_path):
    make_results(tmp_path)
    on_disk = json.loads((tmp_path / "metrics" / "coco" / "dinosaur" / "seed0.json").read_text())
    assert set(on_disk) == {"fg_ari"}  # the DVC metric; counts, the authors' FG-ARI, pipelines: details
    details = json.loads((tmp_path / "details" / "metrics" / "coco" / "dinosaur" / "seed0.json").read_text())
    assert details["pipeline"] == "authors" and details["pipelines"]["dinosaur"]["fg_ari"] == 38.0
    probe = json.loads((tmp_path / "probe" / "cmdsprites" / "sa" / "seed0.json").read_text())
    assert set(probe) == set(paper.TABLE2_COLS)
    row = results.load_results(tmp_path).set_index(["dataset", "method"]).loc[("coco", "dinosaur")]
    assert row["fg_ari_n"] == 5000 and row["fg_ari_authors"] == 44.0 and row["dinosaur.fg_ari"] == 38.0


def test_a_pipeline_column_shows_only_models_trained_under_it(tmp_path):
    """COCO sa trained under the primary only: "--" in the other pipeline's column; covloss's model under the
    other pipeline diverged: "diverged 1/1" there; block masks are scored under both."""
    res = tmp_path / "results"
    section = {"fg_ari": 25.0, "fg_ari_authors": 26.0, "diverged": 0}
    write_cell(res, "metrics", "coco", "sa", 0, {**section, "pipeline": "authors", "pipelines": {"authors": section}})
    write_cell(res, "metrics", "coco", "covloss", 0, {**section, "pipeline": "authors", "pipelines": {
        "authors": section, "dinosaur": {"diverged": 1, "diverged_step": 7}}})
    write_cell(res, "metrics", "coco", "blockmasks", 0, coco(22.0, 23.5, 30.0))
    t = tables.tables(res, tmp_path / "tables")
    sa, cov = (cell(t["table1"], m, "coco", "dinosaur.fg_ari") for m in ("sa", "covloss"))
    assert (sa["n"], sa["n_runs"], cov["n"], cov["n_diverged"], cov["n_runs"]) == (0, 0, 0, 1, 1)
    assert cell(t["table1"], "covloss", "coco", "fg_ari")["n_diverged"] == 0  # its primary model finished
    tex1 = (tmp_path / "tables" / "table1.tex").read_text()
    assert re.search(r"Slot Attention & -- & 90\.71 & 25\.00\\,\{\\scriptsize\(1\)\}\S* & -- & 26\.00", tex1)
    assert re.search(r"CovLoss & .* & 25\.00\S* & diverged 1/1 & 26\.00", tex1)
    assert cell(t["table3"], "blockmasks", metric="dinosaur.fg_ari")["mean"] == 23.5


def test_metric_section(tmp_path):
    make_results(tmp_path)
    tex = report.metric_section(tmp_path)
    assert "DINOSAUR & authors & 1 & 40.00 & 44.00 & 40.0 & +4.50" in tex
    assert "CovLoss & dinosaur & 1 & 21.00 & 22.00 & 25.0 & +3.00" in tex
    assert "25.0\\% to 40.0\\% of the evaluation images" in tex
    assert "No COCO metrics file" in report.metric_section(tmp_path / "empty")


def test_table2_marks_a_probe_that_is_not_the_authors(tmp_path):
    """Probe provenance names probe.protocol and probe.resample_slots; Table 2 marks any other than the authors'."""
    from slotcov.report import pdf as report_pdf

    results = tmp_path / "results"
    make_results(results)
    scores = {"shape_acc": 0.8, "color_r2": 0.9, "scale_r2": 0.7, "x_r2": 0.95, "y_r2": 0.96}
    write_cell(results, "probe", "cmdsprites", "covloss", 0, scores, probe_resample_slots="false")
    write_cell(results, "probe", "cmdsprites", "cosineloss", 0, scores, probe_protocol="per_property")
    t = tables.tables(results, tmp_path / "tables")
    assert cell(t["table2"], "sa", metric="shape_acc")["marks"] == ""  # the authors' probe: no mark
    assert cell(t["table2"], "covloss", metric="shape_acc")["_detail"] == {"probe": "probe.resample_slots=false"}
    assert cell(t["table2"], "cosineloss", metric="shape_acc")["_detail"] == {"probe": "probe.protocol=per_property"}
    tex2 = (tmp_path / "tables" / "table2.tex").read_text()
    assert r"ours (n=1)$^{\flat}$" in tex2 and r"ours (n=2) &" in tex2
    assert ("probed otherwise than the authors' probe (probe.protocol=per\\_property; probe.resample\\_slots=false)"
            in tex2)
    assert report_pdf.MARK_SYMBOLS["probe"] == "♭" and "♭ probed otherwise" in report_pdf.detex(tex2)


def test_tables_follow_the_files(tmp_path):
    results = tmp_path / "results"
    make_results(results)
    out = tmp_path / "tables"
    tables.tables(results, out)
    write_cell(results, "metrics", "cmdsprites", "sa", 2, {"fg_ari": 94.0})
    (results / "metrics" / "coco" / "dinosaur" / "seed0.json").unlink()
    t = tables.tables(results, out)
    assert cell(t["table1"], "sa", "cmdsprites")["mean"] == pytest.approx(92.0)
    assert "92.00" in (out / "table1.tex").read_text()
    assert cell(t["table3"], "dinosaur", metric="fg_ari")["n"] == 0
    assert re.search(r"DINOSAUR & -- & -- & -- & 43\.86", (out / "table3.tex").read_text())
    assert "40.00" not in (out / "table3.tex").read_text()
    (results / "provenance" / "metrics" / "cmdsprites" / "covloss" / "seed0.json").unlink()
    t = tables.tables(results, out)
    assert cell(t["table1"], "covloss", "cmdsprites")["marks"] == "noprov"


def test_numbers_macros(tmp_path):
    results = tmp_path / "results"
    make_results(results)
    tables.tables(results, tmp_path / "reports" / "tables")
    text = (tmp_path / "reports" / "numbers.tex").read_text()
    macros = dict(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{([^}]*)\}", text))
    assert len(macros) == text.count("\\newcommand")  # every macro name is letters only
    assert macros["TabOneCmdspritesSaMean"] == "91.00" and macros["TabOneCmdspritesSaStd"] == "1.00"
    assert macros["TabOneCmdspritesSaN"] == "3" and macros["TabOneCmdspritesSaPaper"] == "90.71"
    assert macros["TabOneCocoCosinelossMean"] == "--" and macros["TabOneCocoCosinelossN"] == "0"
    assert macros["TabTwoSaShapeAccMean"] == "0.8050" and macros["TabTwoCovlossYRTwoPaper"] == "0.9694"
    assert macros["TabThreeCocoDinosaurOneZeroTwoFourCovlossPaper"] == "35.35"
    assert macros["TabOneCocoCovlossDinosaurFgAriMean"] == "21.00" and macros["TabOneCocoCovlossFgAriAuthorsMean"] == "31.00"
    tables.tables(results, tmp_path / "t", numbers_path=tmp_path / "n.tex")
    assert (tmp_path / "n.tex").read_text() == text


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Results, tables and figures built once for the figure and report tests (figures are the slow part)."""
    root = tmp_path_factory.mktemp("built")
    results = root / "results"
    make_results(results)
    tables.tables(results, root / "reports" / "tables")
    (root / "reports" / "figures").mkdir(parents=True)
    (root / "reports" / "figures" / "curves_coco.png").write_text("stale")
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        written = figures.figures(results, root / "reports" / "figures")
    return {"root": root, "results": results, "written": written, "log": log.getvalue()}


def test_figures_from_samples_and_logs(built, tmp_path):
    out = built["root"] / "reports" / "figures"
    names = {p.name for p in built["written"]}
    for stem in ["recon_cmdsprites_sa", "recon_cmdsprites_covloss_more", "masks_coco", "masks_coco_dinosaur",
                 "curves_cmdsprites", "sweep_beta"]:
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    assert "recon_cmdsprites_cosineloss.png" not in names  # no samples for that cell
    assert {"stripe_scores.png", "stripe_scores.pdf"} <= names
    assert not (out / "curves_coco.png").exists()  # inputs gone: stale figure removed
    assert "skipping figure recon_cmdsprites_cosineloss" in built["log"]
    assert "skipping figure curves_coco" in built["log"]
    assert figures.figures(tmp_path, tmp_path / "figures") == []  # no inputs at all: nothing, no crash


def test_a_figure_asked_for_by_name_is_written_either_way(built, tmp_path, capsys):
    """The workflow's one job per figure: the figure named is drawn, or, without its inputs, a page saying so."""
    out = tmp_path / "figures"
    written = figures.figures(built["results"], out, only=["recon_cmdsprites_cosineloss", "sweep_beta"])
    assert sorted(p.name for p in written) == ["recon_cmdsprites_cosineloss.pdf", "recon_cmdsprites_cosineloss.png",
                                               "sweep_beta.pdf", "sweep_beta.png"]
    assert "figure recon_cmdsprites_cosineloss: no results/samples/cmdsprites/cosineloss" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    for name, _ in figures.FIGURES:  # every name of the list is drawn by draw() (or says what it lacks)
        fig, why = figures.draw(name, tmp_path / "nothing")
        assert fig is None and why.startswith("no results/"), name
    with pytest.raises(UserError, match="no figure masks_cocoa"):
        figures.figures(built["results"], out, only=["masks_cocoa"])


def test_stripe_figure_shows_each_cells_seeds_and_mean(tmp_path):
    """One panel per dataset, one bar (the mean) and one dot per finished seed per cell; cells without a stripe
    score (no key, or diverged) are left out."""
    import matplotlib.pyplot as plt

    make_results(tmp_path)
    metrics = figures.load_results(tmp_path)
    fig = figures._stripe_figure(metrics[metrics["stripe"].notna()])
    (ax,) = fig.axes  # the COCO files of make_results hold no stripe score
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["Slot Attention", "CovLoss + variance term"]
    assert [b.get_height() for b in ax.patches] == pytest.approx([1.3, 1.6])
    dots = [line.get_ydata() for line in ax.lines if line.get_marker() == "o"]
    assert [sorted(d) for d in dots] == [pytest.approx([1.2, 1.3, 1.4]), pytest.approx([1.6])]
    plt.close(fig)


def test_recon_and_mask_panels():
    img = np.zeros((1, 4, 4, 3))
    recon = np.full((1, 4, 4, 3), 0.5)
    masks = np.zeros((1, 2, 4, 4))
    masks[0, 0, :2], masks[0, 1, 2:] = 1, 1
    cols, rows = figures._recon_panels({"image": img, "recon": recon, "masks": masks}, 3)
    assert cols == ["Input", "Recon.", "Slot 1", "Slot 2"] and len(rows) == 1
    assert np.allclose(rows[0][2][:2], 0.5) and np.allclose(rows[0][2][2:], 1.0)  # white where the slot is absent
    cols, rows = figures._recon_panels({"image": img, "masks": masks}, 3)  # DINOSAUR: no reconstruction
    assert cols == ["Input", "Slot 1", "Slot 2"] and np.allclose(rows[0][1][:2], 0.0)
    true_ids = np.array([[[0, 0], [1, 2]]])  # half resolution, upsampled for display
    rows, notes = figures._mask_panels({"a": {"image": img + 0.5, "masks": masks, "true_ids": true_ids}}, 4, "t")
    assert len(rows) == 2 and len(rows[0]) == 1
    assert notes == [["2.00"], [""]]  # two 2 x 4 bands: the stripe score of each method panel, none on the truth
    assert not np.allclose(rows[0][0][0, 0], rows[0][0][3, 0])  # two slots, two colours
    assert np.allclose(rows[1][0][:2], 0.3)  # ignored ground-truth pixels: image dimmed, not coloured
    assert not np.allclose(rows[1][0][2:, :2], rows[1][0][2:, 2:])


def test_grid_figure_shows_the_make_grid_mosaic(monkeypatch):
    """The figure's image is torchvision's make_grid of the panels, without its outer border."""
    import matplotlib
    import torchvision.utils

    matplotlib.use("Agg")
    import torch
    from torchvision.utils import make_grid

    rng = np.random.default_rng(1)
    panels = [[rng.uniform(size=(64, 48, 3)) for _ in range(3)] for _ in range(2)]  # 2 rows x 3 cols
    pad = 2  # 64 // 32
    grid = make_grid(torch.from_numpy(np.stack([p for row in panels for p in row])).permute(0, 3, 1, 2),
                     nrow=3, padding=pad, pad_value=figures.GAP).permute(1, 2, 0).numpy()[pad:-pad, pad:-pad]
    calls = []
    monkeypatch.setattr(torchvision.utils, "make_grid", lambda *a, **k: calls.append(k) or make_grid(*a, **k))
    fig = figures._grid_figure(panels, ["a", "b", "c"], ["r1", "r2"], "t")
    assert calls == [{"nrow": 3, "padding": pad, "pad_value": figures.GAP}]
    shown = np.asarray(fig.axes[0].images[0].get_array())
    assert shown.shape == (2 * 64 + pad, 3 * 48 + 2 * pad, 3) and np.array_equal(shown, grid)
    assert np.array_equal(shown[64 + pad:, 2 * (48 + pad):], panels[1][2])  # panel (1, 2) at its place
    assert np.all(shown[64:64 + pad] == figures.GAP) and np.all(shown[:, 48:48 + pad] == figures.GAP)
    ticks = fig.axes[0].get_xticks()
    assert list(ticks) == [24, 48 + pad + 24, 2 * (48 + pad) + 24]  # labels centred on the panels
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_tables_write_numbers_only_where_told(tmp_path):
    """`slotcov tables --numbers FILE` writes the tables into OUT and the macros into FILE, nothing else;
    `slotcov report --numbers FILE` reads that file, and says so when it is missing."""
    from slotcov.cli import main

    results = tmp_path / "results"
    make_results(results)
    before = {p for p in tmp_path.rglob("*")}
    out, numbers = tmp_path / "r" / "tables", tmp_path / "elsewhere" / "n.tex"
    assert main(["tables", "--results", str(results), "--out", str(out), "--numbers", str(numbers)]) == 0
    written = {p.relative_to(tmp_path).as_posix() for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    assert written == {f"r/tables/table{n}.{ext}" for n in (1, 2, 3) for ext in ("tex", "csv")} | {"elsewhere/n.tex"}
    assert not (tmp_path / "r" / "numbers.tex").exists()
    tex = report.render_report(out, tmp_path / "nofigures", results, numbers=numbers)
    assert r"\newcommand{\TabOneCmdspritesSaMean}{91.00}" in tex
    with pytest.raises(UserError, match=r"nowhere.tex is missing; run `slotcov tables --numbers"):
        report.render_report(out, tmp_path / "nofigures", results, numbers=tmp_path / "nowhere.tex")
    assert r"\newcommand" not in report.render_report(out, tmp_path / "nofigures", results)  # no default file


def write_claims(folder, results):
    """The claims ledger of a results tree, as `slotcov claims` writes it."""
    from slotcov.report import claims

    claims.write_ledger(results, folder)
    return folder


def pdf_pages(path) -> list[str]:
    """Text of each page of a PDF, whitespace collapsed (text extraction breaks lines anywhere)."""
    pypdf = pytest.importorskip("pypdf")  # a test dependency (pyproject.toml, envs/requirements.lock)
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(path).pages]


def test_report_without_pdflatex_draws_it_with_matplotlib(built, monkeypatch, tmp_path):
    from slotcov.report import pdf as report_pdf

    root = built["root"]
    monkeypatch.setenv("PATH", str(tmp_path))  # no pdflatex anywhere on PATH
    assert shutil.which("pdflatex") is None
    out = tmp_path / "nolatex" / "report.pdf"
    args = (root / "reports" / "tables", root / "reports" / "figures", built["results"])
    assert report.report(*args, out, claims_dir=write_claims(tmp_path / "claims", built["results"])) == out
    pages = pdf_pages(out)
    figures = sorted(p.stem for p in (root / "reports" / "figures").glob("*.png"))
    appendix = [i for i, page in enumerate(pages) if "Appendix: the claims ledger, every test" in page]
    assert appendix and appendix[0] == 1 + 3 + len(figures) + 1  # scope, tables, figures, provenance, appendix
    assert appendix == list(range(appendix[0], len(pages)))
    first = pages[0]  # the scope of reproducibility: one line per claim
    assert report_pdf.NO_LATEX.format(reason="pdflatex not found") in first and "Scope of reproducibility" in first
    assert all(f"C{i} " in first for i in range(1, 25)) and "Appendix: the claims ledger" in first
    assert "C1 ColoredMDSprites: Slot Attention beats both regularisers (FG-ARI) (Sec. 4.2.1, Table 1)" in first
    assert "superiority [1, ∞) not run -- 1.89 0 -- 0/3" in first  # no cmdsprites/cosineloss here
    assert "superiority [2, ∞) inconclusive 15 14.3 1 0.00 0/2" in first  # C13: dinosaur 40 - covloss 25, one seed each
    assert "C1 primary sa - cosineloss" in pages[appendix[0]] and "Slot Attention beats" not in pages[appendix[0]]
    table1, table2, table3 = pages[1:4]
    assert "Table 1. FG-ARI (%) on ColoredMDSprites and COCO" in table1
    assert "Slot Attention ours 91.00 ± 1.00 (3) – – – paper 90.71 20.00 – 20.00" in table1
    assert "CovLoss †‡§¶ ours 87.50 (1) 25.00 (1) 21.00 (1) 31.00 (1)" in table1
    assert "¶ trained or scored under another pipeline than the paper's (scored on dinosaur instead of authors)" \
        in table1
    assert "COCO: FG-ARI, trained and" in table1 and "cross-pipeline" not in table1  # the head wraps in its column
    assert "0.8050 ± 0.0071 (2)" in table2 and "0.8472" in table2 and "Shape (acc.)" in table2
    assert "Block masks (reference) ours 22.00 (1) 23.50 (1) 30.00 (1) paper 23.00" in table3
    assert "masks_coco.png" in " ".join(pages) and "Figure 1: Slot Attention reconstructions" in pages[4]
    assert "coco/covloss 0 01234567 paper dinosaur synthetic-coco / random NVIDIA H100 3600" in pages[appendix[0] - 1]
    assert r"\begin{table}" in (tmp_path / "nolatex" / "report.tex").read_text()  # the LaTeX source either way
    assert not list(out.parent.glob(".report.pdf.*"))

    pages = pdf_pages(report.report(*args, tmp_path / "noclaims.pdf"))  # no --claims: a title page, no claims
    assert len(pages) == 1 + 3 + len(figures) + 1 and "Claims" not in " ".join(pages)
    with pytest.raises(UserError, match=r"nowhere/summary.csv is missing; .* or leave out --claims"):
        report_pdf.build(*args, tmp_path / "x.pdf", claims_dir=tmp_path / "nowhere")
    (tmp_path / "claims" / "summary.csv").write_text("id,claim\nC1,x\n")
    with pytest.raises(UserError, match="summary.csv: no column where, kind, rule"):
        report_pdf.build(*args, tmp_path / "x.pdf", claims_dir=tmp_path / "claims")
    assert not (tmp_path / "x.pdf").exists()  # nothing partial left behind


def test_report_with_an_incomplete_latex_falls_back_but_other_latex_errors_stop(built, monkeypatch, tmp_path):
    root = built["root"]
    fake = tmp_path / "bin" / "pdflatex"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\ncat "$(dirname "$0")/said.txt"\nexit 1\n')  # says what said.txt holds, fails
    (fake.parent / "said.txt").write_text("! LaTeX Error: File `booktabs.sty' not found.\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    args = (root / "reports" / "tables", root / "reports" / "figures", built["results"])
    pages = pdf_pages(report.report(*args, tmp_path / "r.pdf"))
    assert "built without LaTeX (pdflatex lacks booktabs.sty); install TeX Live" in pages[0]
    assert "booktabs.sty" in (tmp_path / "r.log").read_text()
    (fake.parent / "said.txt").write_text("! Undefined control sequence.\n")
    with pytest.raises(UserError, match=r"(?s)pdflatex failed on .*Undefined control sequence"):
        report.report(*args, tmp_path / "s.pdf")
    assert not (tmp_path / "s.pdf").exists()


def test_report_tex(built, tmp_path):
    root = built["root"]
    claims_dir = write_claims(tmp_path / "claims", built["results"])
    tex = report.render_report(root / "reports" / "tables", root / "reports" / "figures", built["results"],
                                claims_dir=claims_dir)
    assert tex.count(r"\begin{table}") == 4 and r"\includegraphics" in tex and "figures/masks_coco.pdf" in tex
    assert "How much the FG-ARI implementation moves" in tex
    assert "figures/recon_cmdsprites_cosineloss.pdf" not in tex
    assert r"\newcommand{\TabOneCmdspritesSaMean}{91.00}" in tex
    assert "coco/covloss & 0 & 01234567 & paper & dinosaur & synthetic-coco / random & NVIDIA H100 & 3600" in tex
    scope = "\\section*{Scope of reproducibility}\n" + report.SCOPE_INTRO + "\n" + (claims_dir / "summary.tex").read_text()
    assert tex.index("\\maketitle") < tex.index(scope) < tex.index("\\section{Tables}")  # the first page
    appendix = "\\appendix\n\\section{Claims ledger: rules, claims and every test}\n" + (claims_dir / "claims.tex").read_text()
    assert tex.index("\\section{Provenance}") < tex.index(appendix)
    plain = report.render_report(root / "reports" / "tables", root / "reports" / "figures", built["results"])
    assert "Scope of reproducibility" not in plain and "\\appendix" not in plain
    with pytest.raises(UserError, match="run `slotcov tables"):
        report.report(root / "nowhere", root / "reports" / "figures", built["results"], tmp_path / "r.pdf")


def test_report_pdf(request, tmp_path):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex missing in CI: " + report.INSTALL_HINT)
        pytest.skip(report.INSTALL_HINT)
    built = request.getfixturevalue("built")  # only after the check: building it is the slow part
    root = built["root"]
    out = root / "reports" / "report.pdf"
    assert report.report(root / "reports" / "tables", root / "reports" / "figures", built["results"], out,
                          claims_dir=write_claims(tmp_path / "claims", built["results"])) == out
    assert out.read_bytes()[:5] == b"%PDF-"
    assert (root / "reports" / "report.tex").exists()
    assert not list(out.parent.glob(".report.pdf.*"))  # no temporary left behind
    text = " ".join(pdf_pages(out))
    assert "Scope of reproducibility" in text and "COCO: COVLOSS lifts FG-ARI over Slot Attention" in text
    first = pdf_pages(out)[0]
    assert "Scope of reproducibility" in first and "C1 ColoredMDSprites" in first
    assert "without LaTeX" not in text and "ColoredMDSprites" in text


def test_cli(tmp_path):
    from slotcov.cli import main

    results = tmp_path / "results"
    make_results(results)
    assert main(["tables", "--results", str(results), "--out", str(tmp_path / "r" / "tables")]) == 0
    assert (tmp_path / "r" / "numbers.tex").exists() and (tmp_path / "r" / "tables" / "table2.csv").exists()
    (results / "metrics" / "cmdsprites" / "sa" / "seed0.json").write_text("{broken")
    assert main(["tables", "--results", str(results), "--out", str(tmp_path / "r" / "tables")]) == 2


def test_tables_report_the_mean_not_the_median(tmp_path):
    """Seeds whose mean and median differ: the table cell and the numbers macros carry the mean and std."""
    values = [10.0, 11.0, 30.0]  # mean 17, median 11
    for seed, ari in enumerate(values):
        write_cell(tmp_path / "results", "metrics", "cmdsprites", "sa", seed, {"fg_ari": ari})
    out = tables.tables(tmp_path / "results", tmp_path / "tables")
    row = cell(out["table1"], "sa", "cmdsprites")
    assert row["mean"] == pytest.approx(17.0) and row["mean"] != pytest.approx(np.median(values))
    assert row["std"] == pytest.approx(np.std(values, ddof=1)) and row["n"] == 3
    csv = pd.read_csv(tmp_path / "tables" / "table1.csv")
    assert csv[(csv["method"] == "sa") & (csv["dataset"] == "cmdsprites")]["mean"].item() == pytest.approx(17.0)
    assert f"$17.00 \\pm {np.std(values, ddof=1):.2f}$" in (tmp_path / "tables" / "table1.tex").read_text()
    assert "\\newcommand{\\TabOneCmdspritesSaMean}{17.00}" in (tmp_path / "numbers.tex").read_text()


def test_report_rules_pass_numbers_and_report_tex_as_declared_files(tmp_path):
    """numbers.tex is the `numbers` rule's output and the `report` rule's input; report.tex is an output; each
    table of TABLES and each figure of FIGURES is a file of its own job (a target by itself)."""
    from workflow_repo import copy_repo, plan

    repo = copy_repo(tmp_path)
    counts, out = plan(repo, "-p", "reports/numbers.tex")  # a target only a declared output can be
    assert counts["numbers"] == 1 and "report" not in counts and "table" not in counts
    assert "--numbers reports/numbers.tex --only" in out
    counts, out = plan(repo, "-p", "reports/report.tex")
    assert counts["report"] == 1 and counts["numbers"] == 1
    assert (counts["table"], counts["figure"]) == (len(tables.TABLES), len(figures.FIGURES))
    assert "--numbers reports/numbers.tex" in out.split("rule report:")[1] and "--tex reports/report.tex" in out
    counts, out = plan(repo, "-p", "reports/tables/table2.tex", "reports/figures/sweep_beta.pdf")
    assert (counts["table"], counts["figure"]) == (1, 1) and "--only table2" in out and "--only sweep_beta" in out
    counts, _ = plan(repo, "tables", "figures")  # the target rules: every table (and the numbers), every figure
    assert (counts["table"], counts["numbers"], counts["figure"]) == (len(tables.TABLES), 1, len(figures.FIGURES))


def test_fallback_pdf_has_a_symbol_for_every_table_mark():
    """The matplotlib report marks cells with the same symbols as the LaTeX tables (a new mark needs no second edit)."""
    from slotcov.report import pdf as report_pdf
    from slotcov.report import tables

    assert set(report_pdf.MARK_SYMBOLS) == set(tables.MARKS)
    assert all(len(s) == 1 and s != "\\" for s in report_pdf.MARK_SYMBOLS.values())
    assert report_pdf.detex(r"$^\sharp$ settings") == "♯ settings"


def test_the_sweep_axis_is_read_from_the_file_not_its_folder(tmp_path, capsys):
    """load_sweep takes beta from the file's `reg.cov_weight` (what slotcov evaluate records from --set)."""
    from slotcov.evaluate.evaluation import set_numbers

    assert set_numbers(["reg.cov_weight=1e-1", "reg.projection=[8, 8]", "train.amp=bf16"]) == {"reg.cov_weight": 0.1}
    folder = tmp_path / "sweep" / "cmdsprites" / "covloss"
    for name, data in [("beta9.9", {"fg_ari": 50.0, "slot_cov": 0.1, "reg.cov_weight": 0.5}),
                       ("beta1.0", {"fg_ari": 60.0, "slot_cov": 0.2})]:  # no axis recorded: not guessed
        (folder / name).mkdir(parents=True)
        (folder / name / "seed0.json").write_text(json.dumps(data))
    sweep = results.load_sweep(tmp_path)
    assert sweep.to_dict("records") == [{"beta": 0.5, "seed": 0, "fg_ari": 50.0, "slot_cov": 0.1}]
    assert "beta1.0/seed0.json: no reg.cov_weight" in capsys.readouterr().err
