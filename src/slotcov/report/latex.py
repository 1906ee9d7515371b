"""reports/report.pdf: the scope of reproducibility (one verdict per claim), Tables 1-3, the figures, the
provenance of every result and the claims ledger's detail.

The LaTeX source is written beside the PDF (or to --tex) and compiled with pdflatex; without
pdflatex on PATH, or when it lacks a package, the PDF is drawn with matplotlib (slotcov.report.pdf).

    slotcov report --tables reports/tables --figures reports/figures --results results
                   --numbers reports/numbers.tex [--claims reports/claims] --out reports/report.pdf
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from slotcov import paper

from slotcov.report import pdf as report_pdf
from slotcov.errors import UserError
from slotcov.report.figures import FIGURES
from slotcov.io import atomic_path, write_text
from slotcov.report.results import claims_file, load_results, log, provenance_table
from slotcov.report.tables import TABLES, default_numbers, tex_escape

LATEX_PACKAGES = "texlive-latex-base texlive-latex-recommended"  # as in scripts/install-latex.sh
INSTALL_HINT = f"install LaTeX: `bash scripts/install-latex.sh` (Debian packages: {LATEX_PACKAGES})"

TEMPLATE = r"""\documentclass[10pt,a4paper]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{graphicx}
\usepackage{booktabs}
\usepackage{array}
\usepackage{longtable}
\usepackage[font=small]{caption}
\usepackage[hidelinks]{hyperref}
%(numbers)s
\title{slotcov: reproduction report\\\large Exploring the Role of the Bottleneck in Slot-Based Models
Through Covariance Regularization}
\date{Generated %(date)s from the files under \texttt{%(results)s}}
\begin{document}
\maketitle
%(scope)s
Every number below is recomputed from the result files present when this report was built;
a dash marks a cell that has not run, and ``diverged $k/n$'' a cell where $k$ of its $n$ seeds stopped
at a non-finite loss (the mean is over the others). The paper's value stands beside each reproduced value;
marks flag cells that ran in another setting than the paper's (see the notes under each table
and the provenance table at the end).

\clearpage
\section{Tables}
%(tables)s
%(metric_section)s
\clearpage
\section{Figures}
%(figures)s
\clearpage
\section{Provenance}
One row per result file: where and how each number was produced.
{\scriptsize
\setlength{\tabcolsep}{3pt}
\begin{longtable}{@{}llllllp{3.8cm}r@{}}
\toprule
Cell & Seed & Commit & Preset & Pipeline & Data / encoder & Device & Wall (s) \\
\midrule
\endhead
%(provenance)s
\bottomrule
\end{longtable}
}
%(appendix)s
\end{document}
"""

METRIC_INTRO = (
    "The paper's COCO numbers came from the authors' FG-ARI code, which works on one evaluation batch "
    "at a time: unless some image of the batch has a zero denominator, it scores every image whose "
    "foreground is a single object 1.0, whatever the prediction. Its zero test runs in float32 and misses "
    "some exact zeros (\\texttt{fg\\_ari\\_authors\\_float32\\_batches} counts the batches it sent down "
    "the other rule). Every COCO result here (its details file) carries "
    "both that score (\\texttt{fg\\_ari\\_authors}, consecutive batches of 64 in file order; the authors' "
    "loader shuffled, so their batches, and scores, varied) and the correct one (\\texttt{fg\\_ari}).")


SCOPE_INTRO = ("One line per claim of the paper: its verdict under decision rules fixed before any run (appendix "
               "A), our effect with its interval at the claim's Holm level, the paper's own effect, the seeds "
               "found, the power of the test at those seeds and how many runs diverged.")


def metric_section(results_dir) -> str:
    """LaTeX: per COCO cell and pipeline, how far the paper authors' FG-ARI code moves the score (seed means)."""
    df = load_results(results_dir, "metrics")
    keys = ["fg_ari", "fg_ari_authors", "fg_ari_metric_frac_differ", "fg_ari_metric_mean_diff"]
    coco = df[df["dataset"] == "coco"]
    rows, fracs = [], []
    for name in paper.COCO_PIPELINES:
        cols = [f"{name}.{k}" for k in keys]
        if not set(cols) <= set(coco.columns):
            continue
        for method, g in coco.dropna(subset=cols).groupby("method", sort=False):
            ari, theirs, frac, diff = g[cols].mean()
            fracs.append(frac)
            rows.append(f"{paper.LABELS.get(method, method)} & {name} & {len(g)} & {ari:.2f} & {theirs:.2f} & "
                        f"{100 * frac:.1f} & {diff:+.2f} \\\\")
    head = "\\subsection*{How much the FG-ARI implementation moves COCO numbers}\n"
    if not rows:
        return f"{head}{METRIC_INTRO}\n\nNo COCO metrics file with both scores yet.\n"
    summary = (f" In this run, {100 * min(fracs):.1f}\\% to {100 * max(fracs):.1f}\\% of the evaluation images "
               "score differently under the two implementations, depending on cell and pipeline.")
    return (head + METRIC_INTRO + summary + "\n"
            "\\begin{table}[htbp]\n\\centering\\small\n\\begin{tabular}{llrrrrr}\n\\toprule\n"
            "Cell & pipeline & seeds & FG-ARI & authors' FG-ARI & images differing (\\%) & mean diff. (points) \\\\\n"
            "\\midrule\n" + "\n".join(rows) + "\n\\bottomrule\n\\end{tabular}\n"
            "\\caption{Per COCO cell and pipeline (means over seeds): the correct FG-ARI, the authors' FG-ARI, the "
            "share of images whose score differs and the mean per-image difference (authors minus correct).}\n"
            "\\end{table}\n")


def _numbers(tables_dir: Path, numbers) -> str:
    """The numbers macros: the file given (it must exist), else default_numbers(tables_dir) if present."""
    if numbers is not None:
        if not Path(numbers).exists():
            raise UserError(f"{numbers} is missing; run `slotcov tables --numbers {numbers}` first")
        return Path(numbers).read_text()
    path = default_numbers(tables_dir)
    return path.read_text() if path.exists() else ""


def _figures_tex(figures_dir: Path) -> str:
    figs = [f"\\begin{{figure}}[htbp]\n\\centering\n\\includegraphics[width=\\linewidth,"
            f"height=0.8\\textheight,keepaspectratio]{{figures/{stem}.pdf}}\n"
            f"\\caption{{{caption}}}\n\\end{{figure}}\n"
            for stem, caption in FIGURES if (figures_dir / f"{stem}.pdf").exists()]
    return "\n".join(figs or ["No figure inputs were found (run \\texttt{slotcov figures})."])


def _provenance_rows(results_dir) -> str:
    rows = [" & ".join(tex_escape(f) for f in fields) + r" \\" for fields in provenance_table(results_dir)]
    return "\n".join(rows) if rows else r"\multicolumn{8}{c}{no result files} \\"


def render_report(tables_dir, figures_dir, results_dir, claims_dir=None, numbers=None) -> str:
    """The report's LaTeX source; figures are referenced as figures/<name>.pdf; with a claims folder, its
    summary.tex is the first page's scope table and its claims.tex the appendix."""
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    parts = []
    for name, _ in TABLES:
        path = tables_dir / f"{name}.tex"
        if not path.exists():
            raise UserError(f"{path} is missing; run `slotcov tables --out {tables_dir}` first")
        parts.append(path.read_text())
    scope, rows = claims_file(claims_dir, "summary.tex"), claims_file(claims_dir, "claims.tex")
    return TEMPLATE % {
        "numbers": _numbers(tables_dir, numbers),
        "date": time.strftime("%Y-%m-%d %H:%M"), "results": tex_escape(str(results_dir)),
        "tables": "\n".join(parts), "figures": _figures_tex(figures_dir), "metric_section": metric_section(results_dir),
        "scope": f"\\section*{{Scope of reproducibility}}\n{SCOPE_INTRO}\n{scope.read_text()}\n" if scope else "",
        "appendix": f"\\clearpage\n\\appendix\n\\section{{Claims ledger: rules, claims and every test}}\n"
                    f"{rows.read_text()}\n" if rows else "",
        "provenance": _provenance_rows(results_dir),
    }


def _pdflatex(pdflatex: str, tex_path: Path, figures_dir, out_pdf: Path, latex_log: Path) -> str | None:
    """Compile `tex_path` (twice, in a temporary folder) into out_pdf; return the file TeX lacks, if that failed."""
    with tempfile.TemporaryDirectory(prefix="slotcov-report-") as tmp:
        tmp = Path(tmp)
        shutil.copyfile(tex_path, tmp / "report.tex")
        if Path(figures_dir).is_dir():
            shutil.copytree(figures_dir, tmp / "figures")
        for _ in range(2):
            proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                                  cwd=tmp, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                write_text(latex_log, proc.stdout)
                missing = re.findall(r"! LaTeX Error: File `([^']+)' not found", proc.stdout)
                if missing:  # an incomplete TeX installation, not an error in the report
                    return missing[0]
                tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
                raise UserError(f"pdflatex failed on {tex_path} (full log: {latex_log}):\n{tail}")
        with atomic_path(out_pdf, suffix=".pdf") as dst:
            shutil.copyfile(tmp / "report.pdf", dst)
    return None


def report(tables_dir, figures_dir, results_dir, out_pdf, claims_dir=None, numbers=None, tex=None,
           latex_log=None) -> Path:
    """Write the LaTeX source (`tex`, default beside the PDF), then compile it into `out_pdf` with pdflatex.

    Without pdflatex on PATH, or when it lacks a package the report uses, the PDF is drawn with
    matplotlib instead (slotcov.report.pdf): the same tables, claims, figures and provenance,
    saying on its first page why. Any other pdflatex failure is an error. A failed pdflatex's
    output goes to `latex_log` (default: beside the PDF, .log).
    """
    out_pdf = Path(out_pdf)
    tex_path = Path(tex) if tex else out_pdf.with_suffix(".tex")
    latex_log = Path(latex_log) if latex_log else out_pdf.with_suffix(".log")
    write_text(tex_path, render_report(tables_dir, figures_dir, results_dir, claims_dir, numbers))
    log(f"wrote {tex_path}")
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        log(f"pdflatex not found: drawing {out_pdf} with matplotlib instead; {INSTALL_HINT}")
        return report_pdf.build(tables_dir, figures_dir, results_dir, out_pdf, claims_dir)
    missing = _pdflatex(pdflatex, tex_path, figures_dir, out_pdf, latex_log)
    if missing:
        log(f"pdflatex lacks {missing} (log: {latex_log}): drawing {out_pdf} with matplotlib; {INSTALL_HINT}")
        return report_pdf.build(tables_dir, figures_dir, results_dir, out_pdf, claims_dir,
                                reason=f"pdflatex lacks {missing}")
    log(f"wrote {out_pdf}")
    return out_pdf


def cli_report(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slotcov report", description="Compile the tables, claims, figures and "
                                "provenance into one PDF with pdflatex (the .tex is written beside it); "
                                "without pdflatex, the same content drawn with matplotlib.")
    p.add_argument("--tables", default="reports/tables")
    p.add_argument("--figures", default="reports/figures")
    p.add_argument("--results", default="results", help="results folder (metrics/, probe/, provenance/)")
    p.add_argument("--numbers", metavar="FILE", help="numbers macros of `slotcov tables` "
                   "(default: TABLES/../numbers.tex where it exists)")
    p.add_argument("--claims", metavar="DIR", help="claims ledger folder (summary and rows, .csv and .tex) to include")
    p.add_argument("--out", default="reports/report.pdf")
    p.add_argument("--tex", metavar="FILE", help="where the LaTeX source goes (default: OUT with .tex)")
    p.add_argument("--latex-log", metavar="FILE", help="pdflatex's output when it fails (default: OUT with .log)")
    args = p.parse_args(argv)
    report(args.tables, args.figures, args.results, args.out, args.claims, args.numbers, args.tex, args.latex_log)
    return 0
