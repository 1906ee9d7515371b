"""`slotcov bench`: runs the benchmark suite kept in the repository's bench/ folder."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

from slotcov.errors import UserError


def cli_bench(argv: list[str]) -> int:
    script = Path.cwd() / "bench" / "run.py"
    if not script.exists():
        script = Path(__file__).resolve().parents[2] / "bench" / "run.py"
    if not script.exists():
        raise UserError("bench/run.py not found: run `slotcov bench` from the repository root")
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        return int(done.code or 0)
    return 0
