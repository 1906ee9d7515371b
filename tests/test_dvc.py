"""DVC on top of the workflow: per-cell metrics diffs between commits, and sharing the
data, features and checkpoints through a remote without Snakemake re-running anything."""
import json
import shutil

import pytest
import yaml

pytest.register_assert_rewrite("workflow_repo")

from workflow_repo import BIN, TARGETS, job_counts, plan, run, snakemake

pytest_plugins = ["workflow_repo"]
DVC_PRESET = "config.yaml"  # what dvc.yaml's stage runs; finished_repo puts the test preset there


def dvc(repo, *args):
    return run(repo, str(BIN / "dvc"), *args)


def stage_outs(repo) -> list[str]:
    """The paths the `workflow` stage of dvc.yaml declares (outs and metrics)."""
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["workflow"]
    return [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"] + stage["metrics"]]


def commit(repo, message: str) -> None:
    """Record the finished outputs in dvc.lock (as `dvc repro` would) and commit to git."""
    for out in stage_outs(repo):  # a subset run leaves some outputs unmade; the stage cmd makes them too
        (repo / out).mkdir(parents=True, exist_ok=True)
    dvc(repo, "commit", "-f", "-q", "workflow")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", message)


def provenance_fields(repo) -> set[str]:
    """The fields of a provenance file the run wrote (results/provenance/, outside the metrics folders)."""
    path = repo / TARGETS[0].replace("results/", "results/provenance/", 1)
    assert not (repo / TARGETS[0].replace(".json", ".provenance.json")).exists()
    fields = set(json.loads(path.read_text()))
    assert {"git_commit", "evaluated_at", "versions", "wall_time_s"} <= fields, fields
    return fields


def keys_of(obj) -> set[str]:
    """Every mapping key anywhere in a JSON document."""
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in keys_of(v)}
    return {k for v in obj for k in keys_of(v)} if isinstance(obj, list) else set()


def test_metrics_show_lists_result_numbers_only(finished_repo):
    shown = json.loads(dvc(finished_repo, "metrics", "show", "--json").stdout)
    keys = keys_of(shown)
    assert {TARGETS[0], TARGETS[1], "fg_ari", "mbo"} <= keys, shown
    assert not keys & provenance_fields(finished_repo), keys & provenance_fields(finished_repo)
    assert not any("provenance" in k for k in keys), keys


def test_metrics_diff_reports_the_changed_cell(finished_repo):
    repo = finished_repo
    commit(repo, "baseline")
    config = yaml.safe_load((repo / DVC_PRESET).read_text())  # the params file of dvc.yaml's stage
    reg = config["methods"].setdefault("cmdsprites", {}).setdefault("covloss", {}).setdefault("reg", {})
    reg["cov_weight"] = reg.get("cov_weight", 1.0) / 2
    (repo / DVC_PRESET).write_text(yaml.safe_dump(config))
    proc = snakemake(repo, "--cores", "2", *TARGETS, configfile=DVC_PRESET)
    assert job_counts(proc.stdout + proc.stderr) == {"train": 1, "evaluate": 1}
    commit(repo, "covloss: half the covariance weight")

    diff = json.loads(dvc(repo, "metrics", "diff", "HEAD~1", "--json").stdout)
    assert set(diff) == {"results/metrics/cmdsprites/covloss/seed0.json"}, diff  # sa was not re-run
    changed = diff["results/metrics/cmdsprites/covloss/seed0.json"]
    assert any(isinstance(v.get("diff"), (int, float)) for v in changed.values()), changed
    prov = provenance_fields(repo)
    assert not set(changed) & prov, changed  # numbers only: no commit, time stamp, versions, wall time
    assert all(isinstance(v.get("new"), (int, float)) for v in changed.values()), changed
    params = json.loads(dvc(repo, "params", "diff", "HEAD~1", "--json").stdout)
    assert "methods.cmdsprites.covloss.reg.cov_weight" in params[DVC_PRESET], params  # the path `dvc exp run -S` takes


def test_push_delete_pull_then_nothing_reruns(finished_repo, tmp_path):
    repo = finished_repo
    if run(repo, "git", "rev-parse", "HEAD", check=False).returncode != 0:
        commit(repo, "baseline")  # this test alone
    metrics = (repo / TARGETS[1]).read_text()
    dvc(repo, "remote", "add", "-f", "-d", "local", str(tmp_path / "remote"))
    dvc(repo, "push", "-q")
    for out in ["data/raw", "data/cmdsprites", "results/runs", "results/metrics"]:
        shutil.rmtree(repo / out)
    dvc(repo, "pull", "-q")
    assert (repo / TARGETS[1]).read_text() == metrics
    assert (repo / "results/runs/cmdsprites/covloss/seed0/model.pt").is_file()
    # DVC restores files with new modification times: mark them up to date (docs/dvc.md)
    snakemake(repo, "--touch", "--cores", "1", *TARGETS)
    counts, out = plan(repo, *TARGETS)
    assert counts == {}, out
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout
