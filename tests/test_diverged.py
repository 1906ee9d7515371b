"""A diverged run is a result: `slotcov train` records it and exits 0, evaluate and probe write
`{"diverged": 1, "diverged_step": N}`, the tables show "diverged k/n" beside the mean of the seeds
that finished, the claims ledger counts failures per cell; evaluate and probe refuse a run of
other settings than the config gives."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from slotcov.report import claims

from slotcov.report import results

from slotcov.report import tables
from slotcov.cli import main

ROOT = Path(__file__).resolve().parents[1]
LR = 1.0e+15  # Adam moves every weight by about lr at once: the first steps overflow to inf, then nan


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 60-scene split (enough for the test preset's probe) and the test preset with a diverging CovLoss."""
    from slotcov.data.mdsprites import convert_split, make_mdsprites

    root = tmp_path_factory.mktemp("diverged")
    make_mdsprites(60, 0, root / "r.tfrecords", workers=1)
    split = convert_split(root / "r.tfrecords", 0, 60, root / "split", resolution=16)
    preset = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    preset["cells"] = ["cmdsprites/sa", "cmdsprites/covloss"]
    preset["methods"]["cmdsprites"]["covloss"]["train"] = {"lr": LR}
    (root / "preset.yaml").write_text(yaml.safe_dump(preset))
    return root, split


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_diverged_run_is_evaluated_and_probed_as_a_result(setup, tmp_path, capsys):
    root, split = setup
    config, run = root / "preset.yaml", tmp_path / "run"
    code, out, err = cli(capsys, "train", "--config", config, "--cell", "cmdsprites/covloss", "--data", split,
                         "--out", run, "--device", "cpu", "--no-progress")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("slotcov train: cmdsprites/covloss seed 0 diverged: step "), err
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "diverged" and "loss" in rec["terms"] and not (run / "model.pt").exists()
    assert json.loads(out)["status"] == "diverged"
    code, _, err = cli(capsys, "train", "--config", config, "--cell", "cmdsprites/covloss", "--data", split,
                       "--out", run, "--device", "cpu", "--no-progress")  # the same command again: the record
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 0 and len(lines) == 1 and lines[0].endswith("run.json before: nothing trained"), err

    base = ["--config", config, "--cell", "cmdsprites/covloss", "--run", run, "--data", split, "--device", "cpu"]
    code, _, err = cli(capsys, "evaluate", *base, "--out", tmp_path / "m.json", "--details", tmp_path / "dm.json",
                       "--provenance", tmp_path / "pm.json", "--samples", tmp_path / "s.npz")
    assert code == 0, err
    assert json.loads((tmp_path / "m.json").read_text()) == {"diverged": 1, "diverged_step": rec["step"]}
    with np.load(tmp_path / "s.npz") as z:
        assert z.files == ["diverged"]
    code, _, err = cli(capsys, "probe", *base, "--out", tmp_path / "p.json", "--details", tmp_path / "dp.json",
                       "--provenance", tmp_path / "pp.json")
    assert code == 0, err
    assert json.loads((tmp_path / "p.json").read_text()) == {"diverged": 1, "diverged_step": rec["step"]}
    for prov in ("pm.json", "pp.json"):
        prov = json.loads((tmp_path / prov).read_text())
        assert prov["run_id"] == rec["run_id"] and prov["train_inputs"] == f"split {rec['inputs'][0]['digest']}"


def test_a_finished_run_is_scored_with_its_identity_and_other_settings_are_refused(setup, tmp_path, capsys):
    root, split = setup
    config, run = root / "preset.yaml", tmp_path / "run"
    assert cli(capsys, "train", "--config", config, "--cell", "cmdsprites/sa", "--data", split, "--out", run,
               "--device", "cpu", "--no-progress")[0] == 0
    rec = json.loads((run / "run.json").read_text())
    base = ["--config", config, "--cell", "cmdsprites/sa", "--run", run, "--data", split, "--device", "cpu",
            "--out", tmp_path / "m.json", "--details", tmp_path / "dm.json", "--provenance", tmp_path / "pm.json"]
    code, _, err = cli(capsys, "evaluate", *base)
    assert code == 0, err
    metrics, prov = (json.loads((tmp_path / f).read_text()) for f in ("m.json", "pm.json"))
    assert metrics["diverged"] == 0 and "fg_ari" in metrics and prov["run_id"] == rec["run_id"]
    for other in (["--seed", "1"], ["--set", "train.steps=3"]):
        code, _, err = cli(capsys, "evaluate", *base, *other)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, err
        assert f"{run}: trained with other settings than {config} gives cmdsprites/sa seed" in lines[0]
    code, _, err = cli(capsys, "probe", "--config", config, "--cell", "cmdsprites/sa", "--run", run, "--data", split,
                       "--seed", "1", "--out", tmp_path / "p.json", "--details", tmp_path / "dp.json",
                       "--provenance", tmp_path / "pp.json")
    assert code == 2 and "trained with other settings" in err and not (tmp_path / "p.json").exists()


def write(results_dir: Path, kind: str, cell: str, seed: int, values: dict) -> None:
    path = results_dir / kind / cell / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def diverged_tree(tmp_path: Path) -> Path:
    """sa: 3 seeds finished; covloss: seed 1 diverged, 0 and 2 finished; cosineloss: its only seed diverged."""
    res = tmp_path / "results"
    for seed, ari in enumerate([90.0, 92.0, 91.0]):
        write(res, "metrics", "cmdsprites/sa", seed, {"fg_ari": ari, "fg_ari_n": 320, "diverged": 0})
    for seed, ari in [(0, 80.0), (2, 84.0)]:
        write(res, "metrics", "cmdsprites/covloss", seed, {"fg_ari": ari, "fg_ari_n": 320, "diverged": 0})
        write(res, "probe", "cmdsprites/covloss", seed, {"shape_acc": 0.5, "color_r2": 0.5, "diverged": 0})
    write(res, "metrics", "cmdsprites/covloss", 1, {"diverged": 1, "diverged_step": 7})
    write(res, "probe", "cmdsprites/covloss", 1, {"diverged": 1, "diverged_step": 7})
    write(res, "metrics", "cmdsprites/cosineloss", 0, {"diverged": 1, "diverged_step": 3})
    return res


def test_tables_show_diverged_k_of_n_beside_the_mean_of_the_finished_seeds(tmp_path):
    res = diverged_tree(tmp_path)
    t = tables.tables(res, tmp_path / "tables")
    t1 = pd.read_csv(tmp_path / "tables" / "table1.csv")
    cmd = t1[t1.dataset == "cmdsprites"].set_index("method")
    assert cmd.loc["covloss", "mean"] == pytest.approx(82.0) and cmd.loc["covloss", "n"] == 2
    assert (cmd.loc["covloss", "n_diverged"], cmd.loc["covloss", "n_runs"]) == (1, 3)
    assert (cmd.loc["sa", "n_diverged"], cmd.loc["sa", "n_runs"]) == (0, 3)
    assert cmd.loc["cosineloss", "n"] == 0 and cmd.loc["cosineloss", "n_diverged"] == 1
    tex = (tmp_path / "tables" / "table1.tex").read_text()
    assert r"$82.00 \pm 2.83$\,{\scriptsize(2)}\,{\scriptsize diverged 1/3}" in tex
    assert "& diverged 1/1" in tex and "stopped at a non-finite loss or gradient" in tex
    t2 = (tmp_path / "tables" / "table2.tex").read_text()
    assert "ours (n=2, diverged 1/3)" in t2
    numbers = (tmp_path / "numbers.tex").read_text()
    assert r"\newcommand{\TabOneCmdspritesCovlossDiverged}{1}" in numbers
    assert r"\newcommand{\TabOneCmdspritesCovlossRuns}{3}" in numbers
    from slotcov.report.pdf import _cell

    assert _cell(t["table1"].set_index(["dataset", "method"]).loc[("cmdsprites", "covloss")], 2) == \
        "82.00 ± 2.83 (2), diverged 1/3"


def test_the_claims_ledger_counts_failures_and_leaves_diverged_seeds_out_of_means(tmp_path):
    res = diverged_tree(tmp_path)
    assert claims.failure_rate(res, "metrics", "cmdsprites/covloss") == (1, 3)
    assert claims.failure_rate(res, "probe", "cmdsprites/covloss") == (1, 3)
    assert claims.failure_rate(res, "metrics", "coco/sa") == (0, 0)
    fg = {"source": "metrics", "value": "fg_ari", "transform": None}
    side = claims.read_side(res, "cmdsprites/covloss", fg)
    assert side["values"] == {0: 80.0, 2: 84.0} and side["diverged"] == {1}
    # a diverged run's training log (finite up to the divergence) enters no mean either: its run record says so
    for seed, status in [(0, "finished"), (3, "diverged")]:
        folder = res / "runs" / "cmdsprites" / "covloss" / f"seed{seed}"
        folder.mkdir(parents=True)
        pd.DataFrame({"step": [1, 2], "loss": [1.0, 0.5], "cov": [1e-3, 1e-4]}).to_csv(folder / "log.csv", index=False)
        (folder / "run.json").write_text(json.dumps({"status": status, "run_id": "x"}))
    log = claims.read_side(res, "cmdsprites/covloss", {"source": "log", "value": "cov", "transform": "log10"})
    assert log["values"] == {0: pytest.approx(-4.0)} and log["diverged"] == {3}
    summary, rows = claims.ledger(res)
    c1 = rows[(rows.a == "cmdsprites/sa") & (rows.b == "cmdsprites/covloss")].iloc[0]  # C1: FG-ARI, SA > CovLoss
    assert (c1["n_b"], c1["failed_b"], c1["mean_b"]) == (2, 1, pytest.approx(82.0))


def test_figures_skip_the_samples_of_a_diverged_seed(tmp_path):
    folder = tmp_path / "samples" / "cmdsprites" / "sa"
    folder.mkdir(parents=True)
    np.savez(folder / "seed0.npz", diverged=np.array(1))
    assert results.first_sample(tmp_path, "cmdsprites", "sa") is None
    np.savez(folder / "seed1.npz", image=np.zeros((1, 4, 4, 3), np.float32))
    assert results.first_sample(tmp_path, "cmdsprites", "sa")["seed"] == 1
