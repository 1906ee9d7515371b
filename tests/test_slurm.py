"""End-to-end checks of the SLURM profile against the local cluster (`make slurm-up`)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "profiles" / "local"
NOT_UP = "run `make slurm-up` (as root on Debian) to start the local SLURM cluster"

# Small jobs and quicker polling for tests; the profile's own values suit real training.
# The plugin polls after `init` s, then waits 10 s longer each round in which nothing
# finished (5 -> 5, 20, 45 s); a trivial job takes ~10-16 s here (two snakemake start-ups).
TEST_ARGS = [
    "--slurm-init-seconds-before-status-checks", "5",
    "--seconds-between-status-checks", "5",
    "--default-resources", "slurm_partition=gpu", "mem_mb=500", "runtime=10",
]

TINY_WORKFLOW = """
rule all:
    input: "gpu.txt", "cpu.txt"

rule gpu_job:
    output: "gpu.txt"
    resources: gpu=1
    shell: "echo $SLURM_JOB_ID {config[tag]} > {output}"

rule cpu_job:
    output: "cpu.txt"
    shell: "echo $SLURM_JOB_ID {config[tag]} > {output}"
"""


def cluster_up() -> tuple[bool, str]:
    """Whether the local SLURM cluster answers and has a node that takes jobs (and why not)."""
    if shutil.which("sinfo") is None:
        return False, "sinfo not found"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False, "sinfo timed out"
    if out.returncode != 0:
        return False, f"sinfo failed: {out.stderr.strip()}"
    states = out.stdout.split()
    if not any(s in ("idle", "mixed", "allocated", "completing") for s in states):
        return False, f"no node accepts jobs (states: {states or 'none'})"
    return True, "up"


def require_cluster():
    """Skip (or fail under CI=true) when the cluster is not up."""
    ok, why = cluster_up()
    if ok:
        return
    msg = f"SLURM cluster not up ({why}): {NOT_UP}"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def run_snakemake(profile: Path, workdir: Path, targets=(), extra_args=(), timeout=300):
    """Run snakemake with `profile` in `workdir`; fail the test with its log on error.

    Targets go first: list options such as --configfile would swallow them.
    """
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(profile), *targets, *extra_args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_snakemake_slurm(workdir: Path, targets=(), extra_args=()):
    """Run snakemake through the repo's SLURM profile with fast polling and small default resources.

    Pass `--configfile` (and `-s <Snakefile>` if not in `workdir`) in `extra_args`: the
    profile's `configfile: config/paper.yaml` is relative to the working directory.
    """
    return run_snakemake(SLURM_PROFILE, workdir, targets, [*TEST_ARGS, *extra_args])


def scontrol_job(job_id: str) -> str:
    """`scontrol show job` text (finished jobs stay visible: MinJobAge is a day)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, f"scontrol show job {job_id}: {out.stderr}"
    return out.stdout


def write_tiny_workflow(workdir: Path, tag: str) -> Path:
    """Write the two-rule workflow and its config; returns the config path."""
    (workdir / "Snakefile").write_text(TINY_WORKFLOW)
    config = workdir / "tiny.yaml"
    config.write_text(f"tag: {tag}\n")
    return config


@pytest.mark.parametrize("profile", [SLURM_PROFILE, LOCAL_PROFILE], ids=["slurm", "local"])
def test_profile_options_parse(profile, monkeypatch):
    """Every key in the profile is an option of the installed snakemake/plugin and parses."""
    from snakemake.cli import parse_args

    monkeypatch.chdir(REPO)
    try:
        _, args = parse_args(["--profile", str(profile), "-n"])
    except SystemExit as e:  # argparse: unrecognized option in the profile
        pytest.fail(f"{profile}/config.yaml has an option snakemake does not know (exit {e.code})")
    assert args.retries == 2
    assert [str(c) for c in args.configfile] == ["config/paper.yaml"]
    if profile == SLURM_PROFILE:
        assert args.executor == "slurm"
        assert args.slurm_status_command == "squeue"
        assert str(args.slurm_logdir) == "logs/slurm"
        assert {"slurm_partition", "runtime", "mem_mb"} <= set(args.default_resources.keys())
    else:
        assert args.executor is None and "gpu" in args.resources


@pytest.mark.slurm
def test_slurm_up_is_idempotent():
    """Re-running scripts/slurm-up.sh on a running cluster succeeds and leaves it up."""
    require_cluster()
    if os.geteuid() != 0:
        pytest.skip("scripts/slurm-up.sh needs root")
    out = subprocess.run(["bash", str(REPO / "scripts" / "slurm-up.sh")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ready" in out.stdout
    assert cluster_up()[0]


@pytest.mark.slurm
def test_tiny_workflow_runs_on_slurm(tmp_path):
    """A GPU rule and a CPU rule each run as a real SLURM job; the GPU one asked for gpu:1."""
    require_cluster()
    config = write_tiny_workflow(tmp_path, "viaslurm")
    run_snakemake_slurm(tmp_path, ["all"], ["--configfile", str(config)])

    ids = {}
    for rule, out in [("gpu_job", "gpu.txt"), ("cpu_job", "cpu.txt")]:
        words = (tmp_path / out).read_text().split()
        assert len(words) == 2 and words[1] == "viaslurm", f"{out}: {words}"
        assert words[0].isdigit(), f"{out} has no SLURM job id: {words}"
        ids[rule] = words[0]
        info = scontrol_job(words[0])
        assert "JobState=COMPLETED" in info
        assert f"Comment=rule_{rule}" in info
    assert ids["gpu_job"] != ids["cpu_job"]
    gres = re.compile(r"TresPer\w+=.*gres[:/]gpu[:=]1\b")
    assert gres.search(scontrol_job(ids["gpu_job"]))
    assert not gres.search(scontrol_job(ids["cpu_job"]))
    assert (tmp_path / "logs" / "slurm").is_dir()


@pytest.mark.slurm
def test_test_preset_cell_runs_through_sbatch(tmp_path):
    """The project's `test` preset: one ColoredMDSprites cell, data to metrics and probe, every job via sbatch."""
    require_cluster()
    from workflow_repo import copy_repo

    repo = copy_repo(tmp_path / "repo")
    env_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = env_bin + os.pathsep + os.environ.get("PATH", "")  # jobs inherit it: `slotcov` resolves
    targets = ["results/metrics/cmdsprites/sa/seed0.json", "results/probe/cmdsprites/sa/seed0.json"]
    run_snakemake(SLURM_PROFILE, repo, targets, [*TEST_ARGS, "--configfile", "config/test.yaml"], timeout=900)

    for out in targets:
        prov = json.loads((repo / out.replace("results/", "results/provenance/", 1)).read_text())
        job = prov["slurm_job_id"]
        assert job.isdigit(), f"{out} was not computed inside a SLURM job: {prov}"
        info = scontrol_job(job)
        assert "JobState=COMPLETED" in info
    details = json.loads((repo / targets[0].replace("results/", "results/details/", 1)).read_text())
    assert details["fg_ari_n"] > 0
    submitted = {p.parent.name for p in (repo / "logs" / "slurm").rglob("*.log")}
    for rule in ("make_mdsprites", "convert_mdsprites", "train", "evaluate", "probe"):
        assert any(rule in name for name in submitted) or (repo / "logs" / "slurm" / f"rule_{rule}").exists(), \
            f"no SLURM log for rule {rule}: {sorted(submitted)}"
