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

from slotcov import paper, reports
from slotcov.errors import UserError

PROV = {"git_commit": "0123456789abcdef", "config_hash": "abc", "preset": "paper", "device": "NVIDIA H100",
        "slurm_job_id": "42", "wall_time_s": "3600.5", "versions": "torch 2"}


def write_cell(results, kind, dataset, method, seed, values, **prov):
    path = results / kind / dataset / method / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    defaults = {"protocol": "cmdsprites" if dataset == "cmdsprites" else "stretched", "dataset_kind": "real",
                "encoder_weights": "none" if dataset == "cmdsprites" else "dino"}
    prov_path = results / "provenance" / kind / dataset / method / f"seed{seed}.json"
    prov_path.parent.mkdir(parents=True, exist_ok=True)
    prov_path.write_text(json.dumps({**PROV, **defaults, **prov}))
    return path


def make_results(results, rng=np.random.default_rng(0)):
    """A full set of result files: metrics, probing, samples, logs and the sweep."""
    for seed, ari in enumerate([90.0, 92.0, 91.0]):
        write_cell(results, "metrics", "cmdsprites", "sa", seed, {"fg_ari": ari, "fg_ari_n": 320, "mbo": 50.0})
    write_cell(results, "metrics", "cmdsprites", "covloss", 0, {"fg_ari": 87.5, "fg_ari_n": 320},
               dataset_kind="replica")
    write_cell(results, "metrics", "coco", "covloss", 0, {"fg_ari": 25.0, "fg_ari_n": 5000},
               dataset_kind="synthetic-coco", encoder_weights="random", protocol="dinosaur")
    write_cell(results, "metrics", "coco", "dinosaur", 0, {"fg_ari": 40.0, "fg_ari_n": 5000})
    write_cell(results, "metrics", "coco", "blockmasks", 0, {"fg_ari": 23.5, "fg_ari_n": 5000}, protocol="dinosaur")
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
            path.write_text(json.dumps({"fg_ari": 80 + beta + seed, "slot_cov": 1e-3 / (1 + beta)}))


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
    t = reports.tables(results, out)
    sa = cell(t["table1"], "sa", "cmdsprites")
    assert sa["mean"] == pytest.approx(91.0) and sa["std"] == pytest.approx(1.0) and sa["n"] == 3
    assert sa["paper"] == paper.TABLE1[("cmdsprites", "sa")] and sa["marks"] == ""
    tex1 = (out / "table1.tex").read_text()
    assert r"$91.00 \pm 1.00$\,{\scriptsize(3)}" in tex1 and "90.71" in tex1 and r"\toprule" in tex1
    # replica cell: marker on the cell and its footnote
    cov = cell(t["table1"], "covloss", "cmdsprites")
    assert cov["marks"] == "replica" and cov["n"] == 1 and np.isnan(cov["std"])
    assert r"87.50\,{\scriptsize(1)}$^{\dagger}$" in tex1 and "replica rendered by slotcov" in tex1
    # COCO covloss: synthetic data, random encoder, other protocol; all three footnoted
    coco = cell(t["table1"], "covloss", "coco")
    assert set(coco["marks"].split(";")) == {"synthetic", "random", "protocol"}
    assert "synthetic COCO-format" in tex1 and "random weights" in tex1 and "dinosaur instead of stretched" in tex1
    # cells not run: a dash, no number
    assert cell(t["table1"], "cosineloss", "coco")["n"] == 0
    assert re.search(r"CosineLoss & -- & 88\.82 & -- & 34\.23", tex1)
    # Table 2: 4 decimals, paper values beside
    shape = cell(t["table2"], "sa", metric="shape_acc")
    assert shape["mean"] == pytest.approx(0.805) and shape["n"] == 2
    tex2 = (out / "table2.tex").read_text()
    assert r"$0.8050 \pm 0.0071$" in tex2 and "0.8472" in tex2 and "ours (n=0)" in tex2
    # Table 3 with block masks reference (its own protocol is DINOSAUR's: no mark)
    assert cell(t["table3"], "blockmasks")["marks"] == ""
    assert cell(t["table3"], "dinosaur")["mean"] == pytest.approx(40.0)
    csv = pd.read_csv(out / "table1.csv")
    assert list(csv.columns[:6]) == ["dataset", "method", "metric", "mean", "std", "n"] and len(csv) == 6


def test_tables_follow_the_files(tmp_path):
    results = tmp_path / "results"
    make_results(results)
    out = tmp_path / "tables"
    reports.tables(results, out)
    write_cell(results, "metrics", "cmdsprites", "sa", 2, {"fg_ari": 94.0})
    (results / "metrics" / "coco" / "dinosaur" / "seed0.json").unlink()
    t = reports.tables(results, out)
    assert cell(t["table1"], "sa", "cmdsprites")["mean"] == pytest.approx(92.0)
    assert "92.00" in (out / "table1.tex").read_text()
    assert cell(t["table3"], "dinosaur")["n"] == 0
    assert re.search(r"DINOSAUR & -- & 43\.86", (out / "table3.tex").read_text())
    assert "40.00" not in (out / "table3.tex").read_text()
    (results / "provenance" / "metrics" / "cmdsprites" / "covloss" / "seed0.json").unlink()
    t = reports.tables(results, out)
    assert cell(t["table1"], "covloss", "cmdsprites")["marks"] == "noprov"


def test_numbers_macros(tmp_path):
    results = tmp_path / "results"
    make_results(results)
    reports.tables(results, tmp_path / "reports" / "tables")
    text = (tmp_path / "reports" / "numbers.tex").read_text()
    macros = dict(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{([^}]*)\}", text))
    assert len(macros) == text.count("\\newcommand")  # every macro name is letters only
    assert macros["TabOneCmdspritesSaMean"] == "91.00" and macros["TabOneCmdspritesSaStd"] == "1.00"
    assert macros["TabOneCmdspritesSaN"] == "3" and macros["TabOneCmdspritesSaPaper"] == "90.71"
    assert macros["TabOneCocoCosinelossMean"] == "--" and macros["TabOneCocoCosinelossN"] == "0"
    assert macros["TabTwoSaShapeAccMean"] == "0.8050" and macros["TabTwoCovlossYRTwoPaper"] == "0.9694"
    assert macros["TabThreeCocoDinosaurOneZeroTwoFourCovlossPaper"] == "35.35"
    reports.tables(results, tmp_path / "t", numbers_path=tmp_path / "n.tex")
    assert (tmp_path / "n.tex").read_text() == text


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Results, tables and figures built once for the figure and report tests (figures are the slow part)."""
    root = tmp_path_factory.mktemp("built")
    results = root / "results"
    make_results(results)
    reports.tables(results, root / "reports" / "tables")
    (root / "reports" / "figures").mkdir(parents=True)
    (root / "reports" / "figures" / "curves_coco.png").write_text("stale")
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        written = reports.figures(results, root / "reports" / "figures")
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
    assert not (out / "curves_coco.png").exists()  # inputs gone: stale figure removed
    assert "skipping figure recon_cmdsprites_cosineloss" in built["log"]
    assert "skipping figure curves_coco" in built["log"]
    assert reports.figures(tmp_path, tmp_path / "figures") == []  # no inputs at all: nothing, no crash


def test_recon_and_mask_panels():
    img = np.zeros((1, 4, 4, 3))
    recon = np.full((1, 4, 4, 3), 0.5)
    masks = np.zeros((1, 2, 4, 4))
    masks[0, 0, :2], masks[0, 1, 2:] = 1, 1
    cols, rows = reports._recon_panels({"image": img, "recon": recon, "masks": masks}, 3)
    assert cols == ["Input", "Recon.", "Slot 1", "Slot 2"] and len(rows) == 1
    assert np.allclose(rows[0][2][:2], 0.5) and np.allclose(rows[0][2][2:], 1.0)  # white where the slot is absent
    cols, rows = reports._recon_panels({"image": img, "masks": masks}, 3)  # DINOSAUR: no reconstruction
    assert cols == ["Input", "Slot 1", "Slot 2"] and np.allclose(rows[0][1][:2], 0.0)
    true_ids = np.array([[[0, 0], [1, 2]]])  # half resolution, upsampled for display
    rows = reports._mask_panels({"a": {"image": img + 0.5, "masks": masks, "true_ids": true_ids}}, 4, "t")
    assert len(rows) == 2 and len(rows[0]) == 1
    assert not np.allclose(rows[0][0][0, 0], rows[0][0][3, 0])  # two slots, two colours
    assert np.allclose(rows[1][0][:2], 0.3)  # ignored ground-truth pixels: image dimmed, not coloured
    assert not np.allclose(rows[1][0][2:, :2], rows[1][0][2:, 2:])


def test_report_tex_without_pdflatex(built, monkeypatch):
    root = built["root"]
    monkeypatch.setattr(reports.shutil, "which", lambda name: None)
    out = root / "nopdf" / "report.pdf"
    with pytest.raises(UserError, match=r"install LaTeX: `bash scripts/install-latex.sh` \(Debian packages: "):
        reports.report(root / "reports" / "tables", root / "reports" / "figures", built["results"], out)
    tex = (root / "nopdf" / "report.tex").read_text()
    assert not out.exists()
    assert tex.count(r"\begin{table}") == 3 and r"\includegraphics" in tex and "figures/masks_coco.pdf" in tex
    assert "figures/recon_cmdsprites_cosineloss.pdf" not in tex
    assert r"\newcommand{\TabOneCmdspritesSaMean}{91.00}" in tex
    assert "coco/covloss & 0 & 01234567 & paper & dinosaur & synthetic-coco / random & NVIDIA H100 & 3600" in tex
    with pytest.raises(UserError, match="run `slotcov tables"):
        reports.report(root / "nowhere", root / "reports" / "figures", built["results"], out)


def test_report_pdf(request):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex missing in CI: " + reports.INSTALL_HINT)
        pytest.skip(reports.INSTALL_HINT)
    built = request.getfixturevalue("built")  # only after the check: building it is the slow part
    root = built["root"]
    out = root / "reports" / "report.pdf"
    assert reports.report(root / "reports" / "tables", root / "reports" / "figures", built["results"], out) == out
    assert out.read_bytes()[:5] == b"%PDF-"
    assert (root / "reports" / "report.tex").exists()
    assert not list(out.parent.glob(".report.pdf.*"))  # no temporary left behind


def test_cli(tmp_path):
    from slotcov.cli import main

    results = tmp_path / "results"
    make_results(results)
    assert main(["tables", "--results", str(results), "--out", str(tmp_path / "r" / "tables")]) == 0
    assert (tmp_path / "r" / "numbers.tex").exists() and (tmp_path / "r" / "tables" / "table2.csv").exists()
    (results / "metrics" / "cmdsprites" / "sa" / "seed0.json").write_text("{broken")
    assert main(["tables", "--results", str(results), "--out", str(tmp_path / "r" / "tables")]) == 2
