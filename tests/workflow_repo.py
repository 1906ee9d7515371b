"""Shared by the workflow tests (loaded with `pytest_plugins`): throwaway copies of the repository
in which the test preset has run.

`finished_repo`: a git + DVC repo with the cheap subset TARGETS made (two ColoredMDSprites cells:
7 jobs); each test leaves it finished when it ends. `finished_all`: the whole DAG (`all`), made
once per session; test_pipeline.py reads it, then test_rerun.py runs jobs in it again.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRESET = "config/test.yaml"
TARGETS = ["results/metrics/cmdsprites/sa/seed0.json", "results/metrics/cmdsprites/covloss/seed0.json"]
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in `cwd`; on failure (with check) show its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def snakemake(cwd: Path, *args: str, configfile: str = PRESET, check: bool = True) -> subprocess.CompletedProcess:
    # targets go before --configfile: Snakemake 9 takes every following word as a config file
    return run(cwd, str(BIN / "snakemake"), *args, "--configfile", configfile, check=check)


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from the first "Job stats" table of Snakemake's output ({} when nothing to do)."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def plan(cwd: Path, *targets: str, configfile: str = PRESET) -> tuple[dict[str, int], str]:
    """Dry run: (jobs per rule, full output)."""
    proc = snakemake(cwd, "-n", *targets, configfile=configfile)
    out = proc.stdout + proc.stderr
    return job_counts(out), out


def copy_repo(dst: Path) -> Path:
    """The project's files (tracked and not ignored) copied to `dst`."""
    files = run(REPO, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    return dst


# Every number-typed key of a preset (schema `type: number`), written in exponent forms that YAML 1.1
# reads as strings (1e-5, 1e+0) or as floats that JSON then writes in such a form (1.0e-5 -> 1e-05).
EXPONENTS = [
    ("methods:\n  cmdsprites:\n    covloss:\n      reg: {projection: [32, 32]}\n", """methods:
  cmdsprites:
    covloss: {reg: {projection: [32, 32], cov_weight: 1e0, var_weight: 0e0, gamma: 0e0, eps: 1e-4},
              model: {attn_sharpness: 1e0},
              train: {lr: 1e-5, decay_rate: 5e-1, grad_clip: 1e+0}}
    cosineloss: {reg: {cosine_weight: 1e-2, cosine_margin: 2e-1}}
"""),
    ("  betas: [0.1, 10.0]", "  betas: [1e-1, 1E+1]"),
    ("probe: {hidden: 16,", "monitor: {progress_every_s: 6e1}\nprobe: {lr: 1e-3, min_delta: 1e-2, hidden: 16,"),
    ("    train: {steps: 4, batch_size: 4,", "    train: {lr: 1.0e-5, steps: 4, batch_size: 4,"),  # COCO cells
    ("preset: test", "preset: exponents"),
]


def exponent_preset(repo: Path, folder: Path) -> Path:
    """The test preset as `exponents`, with every number-typed key in an exponent form (EXPONENTS)."""
    text = (repo / PRESET).read_text()
    for old, new in EXPONENTS:
        assert text.count(old) == 1, f"{PRESET} changed: update EXPONENTS ({old!r})"
        text = text.replace(old, new)
    path = folder / "exponents.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def fresh_repo(tmp_path_factory) -> Path:
    """A copy of the repository with nothing run (for dry runs)."""
    return copy_repo(tmp_path_factory.mktemp("fresh"))


@pytest.fixture(scope="session")
def finished_repo(tmp_path_factory) -> Path:
    """A git + DVC copy of the repository in which TARGETS have been made (test preset)."""
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    # dvc.yaml's stage runs (and lists as params) config.yaml: here it holds the test preset
    shutil.copy(repo / PRESET, repo / "config.yaml")
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.name", "slotcov test")
    run(repo, "git", "config", "user.email", "test@slotcov.invalid")
    if not (repo / ".dvc").exists():
        run(repo, str(BIN / "dvc"), "init", "-q")
    snakemake(repo, "--cores", "2", *TARGETS)
    return repo


@pytest.fixture(scope="session")
def finished_all(tmp_path_factory) -> Path:
    """A copy of the repository in which the test preset's whole DAG (`all`) has run, once."""
    if shutil.which("pdflatex") is None and os.environ.get("CI") == "true":
        pytest.fail("pdflatex missing under CI: .ci/run installs it with scripts/install-latex.sh")
    repo = copy_repo(tmp_path_factory.mktemp("all"))
    snakemake(repo, "all", "--cores", "2")  # without pdflatex the report is drawn with matplotlib
    return repo
