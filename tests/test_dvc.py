"""DVC on top of the workflow, as its users run it: `dvc repro` without the environment on PATH,
`dvc exp run -S` with a nested cell key, `dvc metrics show` / `diff` listing a few result numbers per
file, `dvc plots show` / `diff` drawing a chart per logged term (a line per run) and the report's
figures, and sharing the data, features and checkpoints through a remote without Snakemake
re-running anything."""
import json
import os
import shutil
import subprocess

import pytest
import yaml

pytest.register_assert_rewrite("workflow_repo")

from slotcov.evaluate.evaluation import METRIC_KEYS
from slotcov.evaluate.probing import PROBE_KEYS
from slotcov.report.claims import METRIC_KEYS as CLAIM_KEYS
from slotcov.report.figures import FIGURES
from slotcov.report.plots import TERMS
from workflow_repo import BIN, ENV, PRESET, REPO, TARGETS, job_counts, plan, run, snakemake

pytest_plugins = ["workflow_repo"]
DVC_PRESET = "config.yaml"  # what dvc.yaml's stage runs; the repositories here put the test preset there
KEY = "methods.cmdsprites.covloss.reg.cov_weight"  # docs/dvc.md's example of `dvc exp run -S`
WIDTH = 300  # the widest line `dvc metrics show` may print
# The environment without slotcov's: BIN off PATH, no active venv or conda env (as a shell that never activated it)
BARE = {k: v for k, v in ENV.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")} | {
    "PATH": os.pathsep.join(p for p in ENV["PATH"].split(os.pathsep) if p and os.path.realpath(p) != str(BIN.resolve()))}


def dvc(repo, *args, env=None, check=True):
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=env or ENV, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def stage_outs(repo) -> list[str]:
    """The paths the `workflow` stage of dvc.yaml declares (outs and metrics)."""
    stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["workflow"]
    return [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"] + stage["metrics"]]


def commit(repo, message: str) -> None:
    """Record the finished outputs in dvc.lock (as `dvc repro` would) and commit to git."""
    for out in stage_outs(repo):  # a subset run leaves some outputs unmade; the stage cmd makes them too
        (repo / out).mkdir(parents=True, exist_ok=True)
    dvc(repo, "commit", "-f", "-q", "workflow")
    git_commit(repo, message)


def git_commit(repo, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", message)


def git_init(repo) -> None:
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.name", "slotcov test")
    run(repo, "git", "config", "user.email", "test@slotcov.invalid")


def provenance_fields(repo) -> set[str]:
    """The fields of a provenance file the run wrote (results/provenance/, outside the metrics folders)."""
    path = repo / TARGETS[0].replace("results/", "results/provenance/", 1)
    fields = set(json.loads(path.read_text()))
    assert {"git_commit", "evaluated_at", "versions", "wall_time_s"} <= fields, fields
    return fields


def keys_of(obj) -> set[str]:
    """Every mapping key anywhere in a JSON document."""
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in keys_of(v)}
    return {k for v in obj for k in keys_of(v)} if isinstance(obj, list) else set()


def plot_charts(proc) -> tuple[dict, list]:
    """`dvc plots show/diff --json`: {plot id: [rendered items]} and the load errors."""
    shown = json.loads(proc.stdout)
    return shown["data"], shown.get("errors") or []


# ---------------------------------------------------------------------------- dvc.yaml and its stage command

def test_dvc_yaml_plots_every_term_and_figure():
    plots = [next(iter(p)) if isinstance(p, dict) else p for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]]
    assert [p for p in plots if p.endswith(".png")] == [f"reports/figures/{stem}.png" for stem, _ in FIGURES]
    assert [p for p in plots if p.endswith(".csv")] == [f"reports/plots/{term}.csv" for term in TERMS]
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["workflow"]
    assert stage["params"] == [{DVC_PRESET: None}] and stage["cmd"].startswith("sh workflow/snakemake.sh ")


def stage_script(cwd, env: dict) -> subprocess.CompletedProcess:
    """workflow/snakemake.sh --version started by `timeout`, not by a python process (not as DVC starts it)."""
    return subprocess.run(["timeout", "60", "sh", "workflow/snakemake.sh", "--version"], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_stage_command_finds_snakemake_of_an_active_env_then_dot_venv(tmp_path):
    (tmp_path / "workflow").mkdir()
    shutil.copy(REPO / "workflow" / "snakemake.sh", tmp_path / "workflow")
    env = BIN.parent  # a venv or conda env: bin/snakemake, bin/python
    for var in ("CONDA_PREFIX", "VIRTUAL_ENV"):  # an activated conda env or venv
        proc = stage_script(tmp_path, BARE | {var: str(env)})
        assert proc.returncode == 0 and proc.stdout.strip()[:1].isdigit(), proc.stderr
        assert f"running {env}/bin/snakemake" in proc.stderr
    system = shutil.which("snakemake", path=BARE["PATH"])
    proc = stage_script(tmp_path, BARE)
    if system is None:  # nothing found: one line naming the fix
        assert proc.returncode == 127 and len(proc.stderr.strip().splitlines()) == 1
        assert "run 'make install'" in proc.stderr, proc.stderr
    (tmp_path / ".venv").symlink_to(env, target_is_directory=True)  # the Makefile's venv
    proc = stage_script(tmp_path, BARE)
    assert proc.returncode == 0 and f"running {tmp_path}/.venv/bin/snakemake" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------- the whole DAG under DVC

@pytest.fixture(scope="module")
def dvc_all(finished_all, tmp_path_factory):
    """A git + DVC copy of the finished whole DAG, the test preset in config.yaml (what dvc.yaml's stage runs)."""
    repo = tmp_path_factory.mktemp("dvc") / "repo"
    shutil.copytree(finished_all, repo, symlinks=True)  # modification times kept: Snakemake has nothing to do
    shutil.copy(repo / PRESET, repo / DVC_PRESET)
    git_init(repo)
    git_commit(repo, "clone")
    return repo


@pytest.fixture(scope="module")
def history(dvc_all):
    """Two commits made as a user makes them, without the environment on PATH: `dvc repro` (after deleting one
    output), then `dvc exp run -S KEY=0.5`. Their processes, for the tests to read."""
    repo = dvc_all
    (repo / "reports" / "plots" / "loss.csv").unlink()
    repro = dvc(repo, "repro", env=BARE)
    git_commit(repo, "baseline")
    exp = dvc(repo, "exp", "run", "-S", f"{DVC_PRESET}:++{KEY}=0.5", env=BARE)
    git_commit(repo, "covloss: half the covariance weight")
    return {"repro": repro, "exp": exp}


def test_repro_runs_the_environments_snakemake_without_activation(dvc_all, history):
    out = history["repro"].stdout + history["repro"].stderr
    assert f"workflow/snakemake.sh: running {BIN}/snakemake" in out, out  # the python running DVC
    assert job_counts(out) == {"plots": 1, "all": 1}, out  # the deleted output, nothing else
    assert (dvc_all / "reports" / "plots" / "loss.csv").exists() and (dvc_all / "dvc.lock").exists()


def test_exp_run_sets_the_documented_nested_key(dvc_all, history):
    config = yaml.safe_load((dvc_all / DVC_PRESET).read_text())
    assert config["methods"]["cmdsprites"]["covloss"]["reg"]["cov_weight"] == 0.5
    assert config["methods"]["cmdsprites"]["covloss"]["reg"]["projection"] == [32, 32]  # the rest kept
    counts = job_counts(history["exp"].stdout + history["exp"].stderr)
    assert {k: counts.get(k) for k in ("train", "evaluate", "probe")} == {"train": 1, "evaluate": 1, "probe": 1}
    params = json.loads(dvc(dvc_all, "params", "diff", "HEAD~1", "--json").stdout)
    assert list(params[DVC_PRESET]) == [KEY], params


def test_metrics_show_lists_a_few_numbers_per_file(dvc_all, history):
    shown = dvc(dvc_all, "metrics", "show").stdout
    widest = max(map(len, shown.splitlines()))
    assert widest <= WIDTH, f"dvc metrics show: a line of {widest} characters:\n{shown}"
    data = json.loads(dvc(dvc_all, "metrics", "show", "--json").stdout)
    files = {path: value.get("data") for rev in data.values() for path, value in rev["data"].items()}
    assert TARGETS[0] in files and "results/probe/cmdsprites/sa/seed0.json" in files
    assert {f"reports/claims/metrics/C{i}.json" for i in range(1, 25)} <= set(files)
    keys = keys_of(list(files.values()))
    assert keys <= set(METRIC_KEYS) | set(PROBE_KEYS) | set(CLAIM_KEYS), keys
    assert {"fg_ari", "mbo", "mse", "shape_acc", "verdict_code", "effect"} <= keys, keys
    assert not keys & provenance_fields(dvc_all)
    assert all(isinstance(v, (int, float)) or v is None for f in files.values() for v in f.values()), files


def test_metrics_diff_lists_the_changed_cells_numbers(dvc_all, history):
    diff = json.loads(dvc(dvc_all, "metrics", "diff", "HEAD~1", "--json").stdout)
    cells = {path for path in diff if path.startswith("results/")}
    assert cells == {"results/metrics/cmdsprites/covloss/seed0.json", "results/probe/cmdsprites/covloss/seed0.json"}
    assert "fg_ari" in diff["results/metrics/cmdsprites/covloss/seed0.json"], diff
    claims = {path: change for path, change in diff.items() if path.startswith("reports/claims/metrics/")}
    assert claims, diff  # the claims that read cmdsprites/covloss: their effect
    for change in diff.values():
        assert all(isinstance(v.get("new"), (int, float)) or v.get("new") is None for v in change.values()), change
        assert not set(change) & provenance_fields(dvc_all), change


def test_plots_show_draws_a_chart_per_term_a_line_per_run_and_the_figures(dvc_all, history):
    proc = dvc(dvc_all, "plots", "show", "--json")
    charts, errors = plot_charts(proc)
    assert errors == [] and "failed to load" not in proc.stderr, errors or proc.stderr
    from slotcov.cells import EVAL_ONLY
    from slotcov.config import load

    runs = {c.replace("/", "-") + "-seed0" for c in load(dvc_all / PRESET)["cells"] if c not in EVAL_ONLY}
    (loss,) = charts["reports/plots/loss.csv"]
    assert loss["type"] == "vega" and {row["run"] for row in loss["content"]["data"]["values"]} == runs
    assert loss["content"]["encoding"]["color"]["field"] == "run"  # one line per run (.dvc/plots/runs.json)
    assert all(charts[f"reports/plots/{term}.csv"] for term in ("recon", "cov", "grad_norm", "lr"))
    for stem, _ in FIGURES:
        assert [item["type"] for item in charts[f"reports/figures/{stem}.png"]] == ["image"], stem
    html = dvc(dvc_all, "plots", "show", "-o", str(dvc_all / "dvc_plots"))
    assert "failed to load" not in html.stderr and (dvc_all / "dvc_plots" / "index.html").exists()


def test_plots_diff_draws_both_commits_curves(dvc_all, history):
    proc = dvc(dvc_all, "plots", "diff", "HEAD~1", "--json")
    charts, errors = plot_charts(proc)
    assert errors == [] and "failed to load" not in proc.stderr, errors or proc.stderr
    (loss,) = charts["reports/plots/loss.csv"]
    values = loss["content"]["data"]["values"]
    assert {row["rev"] for row in values} == {"HEAD~1", "workspace"}

    covloss = [curve(values, rev, "cmdsprites-covloss-seed0") for rev in ("HEAD~1", "workspace")]
    assert covloss[0] and covloss[0] != covloss[1]  # retrained with half the weight
    assert curve(values, "HEAD~1", "cmdsprites-sa-seed0") == curve(values, "workspace", "cmdsprites-sa-seed0")
    assert {item["revisions"][0] for item in charts["reports/figures/curves_cmdsprites.png"]} == {"HEAD~1", "workspace"}


def curve(values: list[dict], rev: str, run_name: str) -> list:
    """One run's loss curve at one revision, from a chart's data."""
    return [row["loss"] for row in values if row["rev"] == rev and row["run"] == run_name]


# ---------------------------------------------------------------------------- sharing through a remote

def test_push_delete_pull_then_nothing_reruns(finished_repo, tmp_path):
    repo = finished_repo
    if run(repo, "git", "rev-parse", "HEAD", check=False).returncode != 0:
        commit(repo, "baseline")
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
