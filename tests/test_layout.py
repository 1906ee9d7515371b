"""The library's tree shows the workflow: one package per stage, imports only from earlier stages."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "slotcov"
RULES = Path(__file__).resolve().parents[1] / "workflow" / "rules"
# The stages in DAG order; the modules at the top of the package are shared by all of them.
STAGES = ["data", "train", "evaluate", "report"]
# A rule file whose stage lives inside another stage's package (docs/design.md, "Map").
RULE_HOME = {"features": "data.features", "probe": "evaluate.probing"}


def stage_of(module: str) -> int:
    """0 for a shared top-level module, else 1 + the index of its stage package."""
    parts = module.split(".")
    return STAGES.index(parts[1]) + 1 if len(parts) > 1 and parts[1] in STAGES else 0


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = path
    return out


def slotcov_imports(module: str, path: Path) -> set[str]:
    """Every slotcov module `module` imports, at any depth of its code."""
    found = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("slotcov")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("slotcov"):
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base for a in node.names}
    return found


@pytest.mark.parametrize("module", list(modules()))
def test_no_module_imports_a_later_stage(module):
    path = modules()[module]
    later = sorted(m for m in slotcov_imports(module, path) if stage_of(m) > stage_of(module))
    assert not later, f"{module} (stage {stage_of(module)}) imports later stages: {later}"


def test_every_rule_file_has_its_package():
    for rule_file in sorted(RULES.glob("*.smk")):
        if rule_file.stem in ("common", "report_inputs"):
            continue
        home = RULE_HOME.get(rule_file.stem, rule_file.stem)
        assert home in {m.removeprefix("slotcov.") for m in modules()}, f"{rule_file.name}: no slotcov.{home}"


def test_the_stage_order_check_catches_a_later_import(tmp_path):
    bad = tmp_path / "loop.py"
    bad.write_text("from slotcov.report.tables import build\n")
    imports = slotcov_imports("slotcov.train.loop", bad)
    assert any(stage_of(m) > stage_of("slotcov.train.loop") for m in imports)


def test_every_module_imports_on_its_own():
    """Each module imports first in a fresh interpreter (no import cycle that only another module's import hides),
    and `from package import submodule` does not import the package's re-exported module on the way."""
    import subprocess
    import sys

    names = [n for n in modules() if n != "slotcov"]
    script = ("import importlib, sys\n"
              f"for name in {names!r}:\n"
              "    for loaded in [m for m in sys.modules if m == 'slotcov' or m.startswith('slotcov.')]:\n"
              "        del sys.modules[loaded]\n"
              "    importlib.import_module(name)\n"
              "from slotcov.train import identity\n"
              "assert 'slotcov.train.loop' not in sys.modules, 'slotcov.train.loop imported by a submodule import'\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
