"""Through Snakemake on the test preset: a train job that runs again trains from step 0 on its
current inputs (forced, regenerated data, another COCO pipeline), never reporting the weights of
other inputs; a diverging preset completes the DAG up to the tables and the claims ledger; a COCO
cell trains under each pipeline of data.coco.train_pipelines.
Each test runs only the jobs its change needs in the finished DAG of test_pipeline.py."""
import json
from pathlib import Path

import pandas as pd
import pytest

from slotcov import paper
import torch
import yaml

pytest.register_assert_rewrite("workflow_repo")
from workflow_repo import PRESET, job_counts, snakemake

pytest_plugins = ["workflow_repo"]
SA_RUN = Path("results/runs/cmdsprites/sa/seed0")


@pytest.fixture(scope="module")
def repo(finished_all) -> Path:
    """The repository copy in which the test preset's whole DAG has run (after test_pipeline.py read it)."""
    return finished_all


def preset(repo: Path, name: str, change) -> str:
    """The test preset with `change` applied, as a file in the repository; returns its path."""
    config = yaml.safe_load((repo / PRESET).read_text())
    change(config)
    (repo / name).write_text(yaml.safe_dump(config))
    return name


def state(repo: Path, run: Path) -> tuple[dict, dict]:
    """The run record and the model weights of a run folder."""
    return (json.loads((repo / run / "run.json").read_text()),
            torch.load(repo / run / "model.pt", weights_only=True)["model"])


def differ(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def trained_every_step(repo: Path, run: Path, record: dict, steps: int) -> None:
    """The job made all `steps` updates itself (none resumed) and logged each step once."""
    assert record["status"] == "finished" and record["steps"] == steps and record["resumed_from"] == 0, record
    log = pd.read_csv(repo / run / "log.csv")
    assert list(log.step) == sorted(set(log.step)) and log.step.iloc[-1] == steps
    assert not (repo / run / "ckpt.pt").exists()


def test_forcerun_of_a_finished_cell_trains_from_step_0(repo):
    before, weights = state(repo, SA_RUN)
    target = str(SA_RUN / "run.json")
    proc = snakemake(repo, "--cores", "2", target, "--forcerun", target)
    assert job_counts(proc.stdout + proc.stderr) == {"train": 1}
    after, again = state(repo, SA_RUN)
    trained_every_step(repo, SA_RUN, after, 10)
    job_log = (repo / "logs/train/cmdsprites/sa/seed0.log").read_text()
    assert '"status": "finished"' in job_log and '"steps": 10, "resumed_from": 0' in job_log, job_log
    assert after["run_id"] == before["run_id"]  # the same settings and inputs: the same run, trained again


def test_a_diverging_preset_completes_the_dag_up_to_tables_and_claims(repo):
    name = preset(repo, "diverge.yaml", lambda c: (
        c.update(cells=["cmdsprites/sa", "cmdsprites/covloss"]),
        c["methods"]["cmdsprites"]["covloss"].update(train={"lr": 1.0e+30})))  # overflows in the first steps
    proc = snakemake(repo, "--cores", "2", "tables", "reports/claims", configfile=name)
    counts = job_counts(proc.stdout + proc.stderr)  # sa's evaluate and probe rerun after an earlier test's train
    assert counts["train"] == 1 and counts["table"] == 3 and counts["claims"] == 1, counts
    record = json.loads((repo / "results/runs/cmdsprites/covloss/seed0/run.json").read_text())
    assert record["status"] == "diverged" and not (repo / "results/runs/cmdsprites/covloss/seed0/model.pt").exists()
    for kind in ("metrics", "probe"):
        data = json.loads((repo / f"results/{kind}/cmdsprites/covloss/seed0.json").read_text())
        assert data == {"diverged": 1, "diverged_step": record["step"]}
    t1 = pd.read_csv(repo / "reports/tables/table1.csv")
    covloss = t1[(t1.dataset == "cmdsprites") & (t1.method == "covloss")].iloc[0]
    assert (covloss["n"], covloss["n_diverged"], covloss["n_runs"]) == (0, 1, 1)
    assert "diverged 1/1" in (repo / "reports/tables/table1.tex").read_text()
    rows = pd.read_csv(repo / "reports/claims/claims.csv")  # every test row: its sides' diverged seeds
    assert (rows.loc[rows.b == "cmdsprites/covloss", "failed_b"] == 1).all()
    summary = pd.read_csv(repo / "reports/claims/summary.csv").set_index("id")  # a failure rate per claim
    on_covloss = [c["id"] for c in paper.CLAIMS if "cmdsprites/covloss" in (c["primary"]["a"], c["primary"]["b"])
                  and c["primary"]["source"] == "metrics"]
    assert on_covloss and (summary.loc[on_covloss, "failure_rate"] > 0).all(), summary.loc[on_covloss]


def test_a_regenerated_data_split_retrains(repo):
    before, weights = state(repo, SA_RUN)
    name = preset(repo, "replica1.yaml", lambda c: c["data"]["cmdsprites"].update(replica={"seed": 1}))
    proc = snakemake(repo, "--cores", "2", str(SA_RUN / "run.json"), configfile=name)
    assert job_counts(proc.stdout + proc.stderr) == {"make_mdsprites": 1, "convert_mdsprites": 1, "train": 1}
    after, again = state(repo, SA_RUN)
    trained_every_step(repo, SA_RUN, after, 10)
    assert after["run_id"] != before["run_id"] and after["inputs"] != before["inputs"]
    assert differ(weights, again), "the weights of the old data were reported for the new"
    job_log = (repo / "logs/train/cmdsprites/sa/seed0.log").read_text()
    assert "model.pt of another run (changed: the content of the split input); training from step 0" in job_log, \
        job_log


def test_another_coco_pipeline_retrains_the_cell_and_its_metrics_name_the_new_run(repo):
    """A stale model: only where a COCO cell's features come from changes; the cell trains again on them."""
    run, metrics = Path("results/runs/coco/sa/seed0"), "results/metrics/coco/sa/seed0.json"
    before, weights = state(repo, run)
    assert [(r["kind"], r["pipeline"]) for r in before["inputs"]] == [("split", "authors"), ("features", "authors")]
    proc = snakemake(repo, "--cores", "2", metrics, "--config", "data={coco: {primary: dinosaur}}")
    assert job_counts(proc.stdout + proc.stderr) == {"prepare_coco": 1, "extract_features": 1, "train": 1,
                                                      "evaluate": 1}
    after, again = state(repo, run)
    trained_every_step(repo, run, after, 4)
    assert [(r["kind"], r["pipeline"]) for r in after["inputs"]] == [("split", "dinosaur"), ("features", "dinosaur")]
    assert differ(weights, again), "the weights trained on the authors pipeline were reported for dinosaur's"
    job_log = (repo / "logs/train/coco/sa/seed0.log").read_text()
    assert ("model.pt of another run (changed: the split input (authors -> dinosaur); the features input "
            "(authors -> dinosaur)); training from step 0") in job_log, job_log
    assert json.loads((repo / metrics.replace("results/", "results/details/", 1)).read_text())["pipeline"] == "dinosaur"
    prov = json.loads((repo / "results/provenance/metrics/coco/sa/seed0.json").read_text())
    assert prov["run_id"] == after["run_id"]
    assert prov["train_inputs"] == "; ".join(f"{r['kind']} (dinosaur) {r['digest']}" for r in after["inputs"])


def test_a_coco_cell_trains_under_each_listed_pipeline_and_each_model_is_scored_on_its_own(repo):
    """data.coco.train_pipelines [authors, dinosaur]: a second model on dinosaur's features, in its own run folder;
    the metrics' dinosaur section is that model's score on dinosaur's evaluation split, the primary's stays."""
    metrics = "results/metrics/coco/sa/seed0.json"
    proc = snakemake(repo, "--cores", "2", metrics, "--config", "data={coco: {train_pipelines: [authors, dinosaur]}}")
    counts = job_counts(proc.stdout + proc.stderr)  # train: only if an earlier test left seed0 on other inputs
    assert counts["train_under"] == 1 and counts["evaluate"] == 1, counts
    assert set(counts) <= {"prepare_coco", "extract_features", "train", "train_under", "evaluate"}, counts
    primary, _ = state(repo, Path("results/runs/coco/sa/seed0"))
    under, _ = state(repo, Path("results/runs/coco/sa/seed0-dinosaur"))
    trained_every_step(repo, Path("results/runs/coco/sa/seed0-dinosaur"), under, 4)
    assert {r["pipeline"] for r in primary["inputs"]} == {"authors"}
    assert {r["pipeline"] for r in under["inputs"]} == {"dinosaur"} and under["run_id"] != primary["run_id"]
    details = json.loads((repo / metrics.replace("results/", "results/details/", 1)).read_text())
    assert details["pipeline"] == "authors" and set(details["pipelines"]) == {"authors", "dinosaur"}
    top = json.loads((repo / metrics).read_text())
    assert top == {k: v for k, v in details["pipelines"]["authors"].items() if k in top}
    assert details["pipelines"]["dinosaur"]["fg_ari"] != details["pipelines"]["authors"]["fg_ari"]
    prov = json.loads((repo / metrics.replace("results/", "results/provenance/", 1)).read_text())
    assert prov["pipelines"] == (f"authors: scored on authors, trained on authors (run {primary['run_id']}); "
                                 f"dinosaur: scored on dinosaur, trained on dinosaur (run {under['run_id']})")
    assert prov["run_id"] == primary["run_id"] and prov["train_pipeline"] == prov["pipeline"] == "authors"
