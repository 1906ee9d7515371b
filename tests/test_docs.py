"""The docs and the Makefile say only what exists: every `make` / `slotcov` command they show names a
real target / subcommand, every .PHONY target has a rule that does something, and pyproject.toml
asks for the Snakemake version the Snakefile requires. Static checks: nothing is run."""
import re
from pathlib import Path

from slotcov.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def make_rules(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines) of a Makefile's explicit rules."""
    rules, current = {}, None
    for line in text.splitlines():
        if line.startswith("\t") and current is not None:
            for target in current:
                rules[target][1].append(line.strip())
            continue
        m = re.match(r"^([^\s:=#][^:=]*?)\s*:(?![=:])\s*([^;#]*)", line)
        if m and not line.startswith("."):
            current = m[1].split()
            for target in current:
                rules.setdefault(target, ([], []))[0].extend(m[2].split())
        elif line.strip() and not line.startswith("#"):
            current = None
    return rules


def phony(text: str) -> list[str]:
    return [t for line in re.findall(r"^\.PHONY\s*:(.*)$", text, re.M) for t in line.split()]


def shown_commands(text: str) -> list[str]:
    """Inline `code` spans and lines of fenced code blocks, with a leading .venv/bin/ dropped."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    lines = [l for block in fenced for l in block.splitlines()]
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return [re.sub(r"^(\.venv|\$\(VENV\))/bin/", "", c.strip()) for c in lines + inline]


def test_every_phony_target_has_a_rule_that_does_something():
    text = (ROOT / "Makefile").read_text()
    rules = make_rules(text)
    assert phony(text), "no .PHONY line found"
    for target in phony(text):
        assert target in rules, f"make {target}: declared .PHONY but no rule"
        prerequisites, recipe = rules[target]
        assert recipe or prerequisites, f"make {target}: rule with neither recipe nor prerequisites"


def test_commands_in_the_docs_exist():
    targets = set(make_rules((ROOT / "Makefile").read_text()))
    checked = 0
    for doc in DOCS:
        for command in shown_commands(doc.read_text()):
            words = command.split()
            if len(words) < 2 or words[0] not in ("make", "slotcov"):
                continue
            name = words[1].rstrip(":")
            if words[0] == "make":
                assert name in targets, f"{doc.name}: `{command}`: no make target {name!r}"
            elif not name.startswith("-"):
                assert name in COMMANDS, f"{doc.name}: `{command}`: no slotcov subcommand {name!r}"
            checked += 1
    assert checked >= 10, "found almost no commands: is the parser still right?"


def test_parsers():
    rules = make_rules(".PHONY: a b\n\nX := 1\na: x y\n\techo a\n\nb:\n# c\nc: ; @true\n")
    assert rules == {"a": (["x", "y"], ["echo a"]), "b": ([], []), "c": ([], [])}
    assert phony(".PHONY: a b\n.PHONY: c\n") == ["a", "b", "c"]
    text = "Run `make demo` or:\n```bash\n.venv/bin/slotcov tables --out x   # c\n```\nthen `x`."
    assert shown_commands(text) == ["slotcov tables --out x   # c", "make demo", "x"]


def test_snakemake_version_agrees():
    snakefile = re.search(r'min_version\("([\d.]+)"\)', (ROOT / "Snakefile").read_text())[1]
    (pin,) = re.findall(r'^\s*"snakemake\s*([<>=!~][^"]*)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert pin.replace(" ", "") == f">={snakefile}", (pin, snakefile)


def test_the_readme_fits_one_screen_and_the_docs_speak_of_the_project():
    """The README stays short (details live in docs/), and no doc tells how it was written."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 120
    history = re.compile(r"\bissue\s+#?\d+|\bissue's\b|\blent\b|\bthis task\b|\bthe task that\b|\bsession\b", re.I)
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            assert not history.search(line), f"{doc.name}:{n}: {line.strip()}"
