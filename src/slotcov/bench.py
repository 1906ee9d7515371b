"""`slotcov bench`: runs the benchmark suite kept in the repository's bench/ folder
(bench/run.py; with --profile, bench/profile_step.py)."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

from slotcov.errors import UserError


def cli_bench(argv: list[str]) -> int:
    name = "profile_step.py" if "--profile" in argv else "run.py"
    argv = [a for a in argv if a != "--profile"]
    script = Path.cwd() / "bench" / name
    if not script.exists():
        script = Path(__file__).resolve().parents[2] / "bench" / name
    if not script.exists():
        raise UserError(f"bench/{name} not found: run `slotcov bench` from the repository root")
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        return int(done.code or 0)
    return 0
