"""envs/environment.yaml (conda) pins exactly what envs/requirements.lock (pip freeze) pins."""
import re
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
