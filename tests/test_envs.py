"""envs/environment.yaml (conda) pins exactly what envs/requirements.lock (pip freeze) pins, covers every
import of the package, and (with its post-deploy script) installs slotcov for `snakemake --sdm conda`."""
import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(lines) -> dict[str, str]:
    """name -> version of `name==version` lines (names normalised as pip does)."""
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return out


def test_environment_yaml_matches_the_lock():
    lock_lines = [l for l in (ROOT / "envs/requirements.lock").read_text().splitlines()
                  if l.strip() and not l.lstrip().startswith("#")]
    lock = pins(lock_lines)
    assert len(lock) == len(lock_lines), "every line of the lock must be a name==version pin"
    env = yaml.safe_load((ROOT / "envs/environment.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert len(pins(pip)) == len(pip), "every pip entry of environment.yaml must be a name==version pin"
    in_env = pins(pip)
    assert {k: v for k, v in lock.items() if in_env.get(k) != v} == {}, "pinned in the lock, not in environment.yaml"
    assert {k: v for k, v in in_env.items() if lock.get(k) != v} == {}, "pinned in environment.yaml, not in the lock"
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]


def test_pins_parser():
    assert pins(["Foo_Bar==1.0", "# x==2", "baz>=3", "zc.lockfile==4.0"]) == {"foo-bar": "1.0", "zc-lockfile": "4.0"}


# ---------------------------------------------------------------- `--sdm conda`: the env runs every job

ENV_FILE = ROOT / "envs/environment.yaml"
IMPLIED = {"torch.utils.tensorboard": "tensorboard"}  # torch submodules that need another distribution


def env_pins() -> dict[str, str]:
    env = yaml.safe_load(ENV_FILE.read_text())
    return pins(next(d["pip"] for d in env["dependencies"] if isinstance(d, dict)))


def third_party_imports() -> set[str]:
    """Dotted names of every non-stdlib module imported anywhere in src/slotcov and workflow/ (lazy imports too)."""
    names = set()
    for path in [*(ROOT / "src/slotcov").rglob("*.py"), *(ROOT / "workflow").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module)
    for path in [ROOT / "Snakefile", *(ROOT / "workflow").rglob("*.smk")]:  # Snakemake syntax: imports by line
        names |= set(re.findall(r"^\s*(?:from|import) ([\w.]+)", path.read_text(), re.M))
    return {n for n in names if n.split(".")[0] not in sys.stdlib_module_names and n.split(".")[0] != "slotcov"}


def test_the_env_pins_a_distribution_for_every_import():
    found = third_party_imports()
    assert {"torch", "numpy", "timm", "yaml", "snakemake"} <= {n.split(".")[0] for n in found}, found
    dists = importlib.metadata.packages_distributions()
    have = env_pins()
    missing = {}
    for name in sorted(found):
        needed = [IMPLIED[name]] if name in IMPLIED else dists.get(name.split(".")[0], [f"? ({name})"])
        for dist in needed:
            if re.sub(r"[-_.]+", "-", dist).lower() not in have:
                missing[name] = dist
    assert missing == {}, f"imported but not pinned in {ENV_FILE.name}: {missing}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", d)[0]).lower() for d in project}
    assert declared - set(have) == set(), "pyproject.toml dependencies the env lacks"


def test_every_rule_runs_in_the_env_and_snakemake_finds_its_post_deploy_script():
    from snakemake.sourcecache import LocalSourceFile

    common = (ROOT / "workflow/rules/common.smk").read_text()
    env_ref = re.search(r'^ENV = "([^"]+)"', common, re.M)[1]
    assert (ROOT / "workflow/rules" / env_ref).resolve() == ENV_FILE  # conda: paths are relative to the rule file
    for path in (ROOT / "workflow/rules").glob("*.smk"):
        for rule in re.split(r"\n\s*rule ", path.read_text())[1:]:
            if "shell:" not in rule:  # a target rule (tables, figures): inputs only, runs nothing
                continue
            assert re.search(r"\n\s+conda:\n\s+ENV\n", rule), f"{path.name}: rule {rule.split(':')[0]} lacks conda: ENV"
    # the name Snakemake derives for the script it runs once in each new env
    script = LocalSourceFile(str(ENV_FILE)).replace_suffix([".yaml", ".yml"], ".post-deploy.sh")
    assert Path(script.get_path_or_uri(secret_free=True)) == ROOT / "envs/environment.post-deploy.sh"


def fake_python(tmp_path) -> dict:
    """PATH with a `python` that records its arguments and working directory instead of installing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\necho "$PWD $*" >> {tmp_path}/calls\n')
    (bin_dir / "python").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_post_deploy_installs_this_repository(tmp_path):
    script = ROOT / "envs/environment.post-deploy.sh"
    proc = subprocess.run(["bash", str(script)], cwd=ROOT, env=fake_python(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "calls").read_text() == f"{ROOT} -m pip install --no-deps -e .\n"


def test_post_deploy_outside_the_repository_stops_with_the_fix(tmp_path):
    (tmp_path / "work").mkdir()
    proc = subprocess.run(["bash", str(ROOT / "envs/environment.post-deploy.sh")], cwd=tmp_path / "work",
                          env=fake_python(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 1 and "run snakemake from its root" in proc.stderr
    assert not (tmp_path / "calls").exists()
