"""The `slotcov` command line: one subcommand per pipeline step.

Each subcommand lives in the module that does the work, as a function
`cli_<command>(argv: list[str]) -> int` (dashes become underscores) that parses its own arguments. This file only maps
names to those functions, so `slotcov CMD --help` leads straight to the code.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    # name: (module, one-line help)
    "model-summary": ("slotcov.train.models", "print a cell's layers and trainable parameter count"),
    "check-config": ("slotcov.config", "validate a config file and print the resolved cells"),
    "make-mdsprites": ("slotcov.data.mdsprites", "render the ColoredMDSprites replica as a GZIP TFRecord"),
    "convert-mdsprites": ("slotcov.data.mdsprites", "convert TFRecord records to memory-mapped split arrays"),
    "download": ("slotcov.data.download", "resumable, checksummed download of one file"),
    "make-coco": ("slotcov.data.coco", "write a small synthetic COCO-format split"),
    "prepare-coco": ("slotcov.data.coco", "resize a COCO split and its FG-ARI targets for a pipeline"),
    "extract-features": ("slotcov.data.features", "frozen ViT tokens of a prepared split into a feature store"),
    "train": ("slotcov.train.loop", "train one table cell (resumable)"),
    "evaluate": ("slotcov.evaluate.evaluation", "FG-ARI, mBO and MSE of a trained cell on the evaluation split"),
    "probe": ("slotcov.evaluate.probing", "property probing of frozen slots (Table 2)"),
    "tables": ("slotcov.report.tables", "Tables 1-3 as LaTeX and CSV from the metrics files"),
    "figures": ("slotcov.report.figures", "the paper's figures from the evaluation samples and logs"),
    "plots": ("slotcov.report.plots", "training curves as DVC plot data: one CSV per logged term, a line per run"),
    "claims": ("slotcov.report.claims", "the claims ledger: one verdict per claim of the paper, decided by rules fixed in advance"),
    "power": ("slotcov.report.power", "seeds per cell for 80% power of each claim's test, and their GPU-hours"),
    "report": ("slotcov.report.latex", "compile reports/report.pdf"),
    "bench": ("slotcov.bench", "run the benchmark suite and write bench/results.json"),
    "plan": ("slotcov.train.plan", "GPU-hours of a preset on a device and each train job's SLURM runtime"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: slotcov COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run `slotcov COMMAND --help` for a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"slotcov: unknown command '{name}'.\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    func = getattr(module, "cli_" + name.replace("-", "_"))
    from slotcov.errors import UserError

    try:
        return int(func(rest) or 0)
    except UserError as err:
        print(f"slotcov {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (which checkpoints first): outputs are atomic
        print(f"slotcov {name}: interrupted (SIGINT); run the same command again to redo or resume it",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
