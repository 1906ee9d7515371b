"""reports/report.pdf without LaTeX: the report's content drawn page by page with matplotlib.

`slotcov report` uses this when pdflatex is not on PATH (or lacks a package the report needs),
so a machine without TeX still ends the workflow with a PDF. It shows the same content: on the first
page the scope of reproducibility (DIR/summary.csv with --claims: one line per claim), then the
tables (tables.TABLES, from reports/tables/<name>.csv, with the notes of their .tex), the
figures (reports/figures/*.png), the provenance table and, as an appendix, every test row of the
claims ledger (DIR/claims.csv); its first page says that it was built without LaTeX and why.
"""
from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pandas as pd

from slotcov import paper
from slotcov.report.claims import ROW_HEAD, SCOPE_HEADER, row_cells, scope_cells
from slotcov.errors import UserError
from slotcov.report.figures import FIGURES
from slotcov.io import atomic_path
from slotcov.report.results import PROVENANCE_HEADER, claims_file, log, provenance_table
from slotcov.report.tables import MARKS, TABLES, diverged_note

NO_LATEX = "built without LaTeX ({reason}); install TeX Live (make latex) for the typeset report"
PAGE = (8.27, 11.69)  # A4 portrait, inches
NOTE_FONT = 8
LEFT, WIDTH = 0.07, 0.86  # text column, as fractions of the page width
SCOPE_COLUMNS = ["id", "claim", "where", "kind", "rule", "verdict", "effect", "ci_low", "ci_high", "paper", "n_seeds",
                 "power", "n_failed", "n_runs"]
ROW_COLUMNS = ["id", "role", "test", "pipeline", "metric", "rule", "paper", "effect", "ci_low", "ci_high", "level",
               "paper_in_pi", "n_seeds", "verdict", "why"]
TEX_SYMBOLS = {"dagger": "†", "ddagger": "‡", "S": "§", "P": "¶", "sharp": "♯", "flat": "♭", "pm": "±",
               "approx": "≈"}
MARK_SYMBOLS = {key: TEX_SYMBOLS.get(tex.lstrip("\\"), tex) for key, (tex, _) in MARKS.items()}  # the tables' marks


class _Doc:
    """A PdfPages file of A4 pages, each with an optional heading and a numbered footer."""

    def __init__(self, path: Path, note: str):
        from matplotlib.backends.backend_pdf import PdfPages

        self.pdf = PdfPages(path, metadata={"Title": "slotcov: reproduction report",
                                            "Subject": note, "Creator": "slotcov report (matplotlib)"})
        self.pages = 0

    def page(self, heading: str | None = None):
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=PAGE)
        if heading:
            fig.text(LEFT, 0.955, _wrap(heading, 62), fontsize=13, weight="bold", va="top")
        return fig

    def save(self, fig) -> None:
        import matplotlib.pyplot as plt

        self.pages += 1
        fig.text(0.5, 0.025, f"slotcov report (built without LaTeX) · page {self.pages}",
                 fontsize=7, color="0.4", ha="center")
        self.pdf.savefig(fig)
        plt.close(fig)


def detex(text: str) -> str:
    """LaTeX of a caption or table note as plain text (the few macros the tables use)."""
    text = re.sub(r"\\(dagger|ddagger|S|P|sharp|flat|pm|approx)(?![A-Za-z])", lambda m: TEX_SYMBOLS[m.group(1)], text)
    text = re.sub(r"\\par\s*", "\n", text)
    text = re.sub(r"\\([%&_#$])", r"\1", text)
    text = re.sub(r"\\[A-Za-z]+\s*", "", text)  # size and spacing commands
    return re.sub(r"[{}$^]", "", text).strip()


def _wrap(text, width: int) -> str:
    return "\n".join(textwrap.fill(part, width) or " " for part in str(text).split("\n"))


def _table(doc: _Doc, heading: str, header: list[str], rows: list[list[str]], chars: list[int],
           notes: str = "", font: float = 8.0, intro: str = "") -> None:
    """Draw a table on as many pages as it needs; `chars` are the columns' relative widths (in characters
    at 9 pt, roughly), and each cell's text is wrapped to what fits its column at `font`. `intro` is text
    between the heading and the table on its first page."""
    line = font * 1.35 / 72 / PAGE[1]  # one text line as a fraction of the page height
    notes = _wrap(notes, int(WIDTH * PAGE[0] * 72 / (NOTE_FONT * 0.55))) if notes else ""
    notes_h = (notes.count("\n") + 1) * NOTE_FONT * 1.4 / 72 / PAGE[1] if notes else 0.0
    intro = _wrap(intro, 105) if intro else ""
    intro_h = (intro.count("\n") + 1) * 9 * 1.45 / 72 / PAGE[1] + 0.015 if intro else 0.0
    top, bottom = 0.895, 0.06 + notes_h + 0.02
    per_char = WIDTH * PAGE[0] * 72 / (font * 0.6) / sum(chars)  # characters of this font per unit of `chars`
    fit = [max(4, int(c * per_char * 0.92)) for c in chars]  # what fits a column beside its padding
    header = [_wrap(h, f) for h, f in zip(header, fit)]
    cells = [[_wrap(v, f) for v, f in zip(row, fit)] for row in rows] or [["(none)"] + [""] * (len(chars) - 1)]
    heights = [(max(c.count("\n") for c in row) + 1) * line + 0.6 * line for row in [header] + cells]
    pages, current, used = [], [], heights[0] + intro_h
    for row, h in zip(cells, heights[1:]):
        if current and used + h > top - bottom:
            pages.append(current)
            current, used = [], heights[0]
        current.append((row, h))
        used += h
    pages.append(current)
    widths = [c / sum(chars) for c in chars]
    for i, chunk in enumerate(pages):
        fig = doc.page(heading + (f" (continued, {i + 1}/{len(pages)})" if i else ""))
        shift = 0.0 if i else intro_h
        if shift:
            fig.text(LEFT, top + 0.01, intro, fontsize=9, va="top", linespacing=1.45)
        ax = fig.add_axes((LEFT, bottom, WIDTH, top - shift - bottom))
        ax.axis("off")
        table = ax.table(cellText=[r for r, _ in chunk], colLabels=header, colWidths=widths,
                         cellLoc="left", colLoc="left", loc="upper center")
        table.auto_set_font_size(False)
        table.set_fontsize(font)
        scale = 1 / (top - shift - bottom)  # cell heights are in axes fractions
        for (r, c), cell in table.get_celld().items():
            cell.PAD = 0.3 / chars[c]  # about a third of a character, not matplotlib's 10% of the width
            cell.set_height((heights[0] if r == 0 else chunk[r - 1][1]) * scale)
            cell.set_edgecolor("0.75")
            cell.set_linewidth(0.5)
            if r == 0:
                cell.set_facecolor("0.9")
                cell.get_text().set_weight("bold")
            elif r % 2 == 0:
                cell.set_facecolor("0.97")
        if notes and i == len(pages) - 1:  # right under the table
            below = top - shift - heights[0] - sum(h for _, h in chunk) - 0.015
            fig.text(LEFT, below, notes, fontsize=NOTE_FONT, va="top", linespacing=1.4)
        doc.save(fig)


def _cell(row: pd.Series, digits: int) -> str:
    """mean ± std (n) of a table cell, with "diverged k/n" when some of its seeds diverged."""
    note = diverged_note(row)
    if row["n"] == 0 or pd.isna(row["mean"]):
        return note or "–"
    text = f"{row['mean']:.{digits}f}"
    if row["n"] > 1:
        text += f" ± {row['std']:.{digits}f}"
    return f"{text} ({int(row['n'])})" + (f", {note}" if note else "")


def _label(key: str) -> str:
    return paper.LABELS.get(key, key).replace("$R^2$", "R²")


def _column(dataset: str, metric: str, with_dataset: bool) -> str:
    """A column head naming the dataset, the COCO pipeline and the FG-ARI implementation of its numbers
    (a pipeline section holds the models trained and scored under that pipeline)."""
    if metric == "fg_ari_authors":
        text = "FG-ARI, authors' code"
    elif metric.endswith(".fg_ari"):
        text = f"FG-ARI, trained and scored under {metric.split('.')[0]}"
    else:
        text = "FG-ARI" if metric == "fg_ari" else _label(metric)
    return f"{_label(dataset)}: {text}" if with_dataset else text


def _paper_table(doc: _Doc, tables_dir: Path, number: int, name: str, caption: str) -> None:
    """Table `number` (of TABLES) from its CSV: a row of our values and a row of the paper's per method; the
    notes from its .tex."""
    csv, tex = tables_dir / f"{name}.csv", tables_dir / f"{name}.tex"
    if not csv.exists():
        raise UserError(f"{csv} is missing; run `slotcov tables --out {tables_dir}` first")
    s = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    source = tex.read_text() if tex.exists() else ""
    notes = re.search(r"\\footnotesize (.*)\}\s*\\end\{table\}", source, re.S)
    groups = list(dict.fromkeys(zip(s["dataset"], s["metric"])))
    one_metric = len({m for _, m in groups}) == 1
    header = ["Method", ""] + [_label(d) if one_metric else _column(d, m, len({d for d, _ in groups}) > 1)
                               for d, m in groups]
    rows = []
    for method in dict.fromkeys(s["method"]):
        cells = s[s["method"] == method].set_index(["dataset", "metric"])
        keys = {k for marks in cells["marks"].dropna() for k in str(marks).split(";") if k}
        symbols = "".join(MARK_SYMBOLS[k] for k in MARK_SYMBOLS if k in keys)
        digits = [2 if "fg_ari" in m else 4 for _, m in groups]
        rows.append([_label(method) + (f" {symbols}" if symbols else ""), "ours"]
                    + [_cell(cells.loc[g], d) for g, d in zip(groups, digits)])
        rows.append(["", "paper"] + ["–" if pd.isna(cells.loc[g, "paper"]) else f"{cells.loc[g, 'paper']:.{d}f}"
                                     for g, d in zip(groups, digits)])
    value_chars = max(14, 70 // max(1, len(groups)))
    heading = f"Table {number}. {caption}"
    _table(doc, heading, header, rows, [28, 7] + [value_chars] * len(groups),
           detex(notes.group(1)) if notes else "", font=9)


def _read_claims(path: Path, columns: list[str]) -> pd.DataFrame:
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)}; rebuild the claims ledger")
    return df.astype(object).where(df.notna(), None)


def _scope_page(doc: _Doc, path: Path, results_dir, note: str, sections: list[str]) -> None:
    """The first page: the title, then the scope of reproducibility (one line per claim) from summary.csv."""
    from slotcov.report.latex import SCOPE_INTRO

    df = _read_claims(path, SCOPE_COLUMNS)
    intro = (f"Exploring the Role of the Bottleneck in Slot-Based Models Through Covariance Regularization. "
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} from the files under {results_dir}; {note}.\n"
             f"Scope of reproducibility. {SCOPE_INTRO}")
    counts = df["verdict"].value_counts()
    tally = ", ".join(f"{counts[v]} {v}" for v in ("reproduced", "not reproduced", "inconclusive", "not run") if v in counts)
    _table(doc, "slotcov: reproduction report", SCOPE_HEADER, [scope_cells(r) for _, r in df.iterrows()],
           [41, 14, 10, 17, 6, 5, 5, 5], font=6, intro=intro,
           notes=f"{tally}. Rules, quotes and every test row: the appendix. Contents: " + "; ".join(sections) + ".")


def _claims_appendix(doc: _Doc, path: Path) -> None:
    """The appendix: every test row of the ledger (claims.csv), without the claims' text."""
    df = _read_claims(path, ROW_COLUMNS)
    keep = [0, 1, 2, 3, 5, 6, 7, 9, 10, 11]  # ROW_HEAD without rule and paper-in-PI
    rows = [[row_cells(r)[k] for k in keep] for _, r in df.iterrows()]
    _table(doc, "Appendix: the claims ledger, every test", [ROW_HEAD[k] for k in keep], rows,
           [4, 8, 18, 14, 6, 18, 6, 3, 13, 30], font=6,
           notes="Effect [interval]: at the row's level (the two-sided 1 - 2 x level interval); primary rows at "
                 "their claim's Holm level, secondary rows at 0.05 uncorrected. claims.md states the rules.")


def _figures(doc: _Doc, figures_dir: Path) -> None:
    """One page per PNG under figures_dir, the report's figures first, in its order, with their captions."""
    import matplotlib.image as mpimg

    captions = dict(FIGURES)
    order = list(captions)
    pngs = sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    pngs.sort(key=lambda p: order.index(p.stem) if p.stem in captions else len(order))
    for i, png in enumerate(pngs, 1):
        image = mpimg.imread(png)
        fig = doc.page("Figures")
        w_in = WIDTH * PAGE[0]
        h_in = min(0.76 * PAGE[1], w_in * image.shape[0] / image.shape[1])
        top = 0.92
        ax = fig.add_axes((LEFT, top - h_in / PAGE[1], WIDTH, h_in / PAGE[1]))
        ax.imshow(image, interpolation="antialiased")
        ax.axis("off")
        caption = f"Figure {i}: {captions.get(png.stem, png.stem)} ({png.name})"
        fig.text(LEFT, top - h_in / PAGE[1] - 0.015, _wrap(caption, 100), fontsize=9, va="top")
        doc.save(fig)


def _title_page(doc: _Doc, results_dir, sections: list[str], note: str) -> None:
    fig = doc.page()
    fig.text(0.5, 0.85, "slotcov: reproduction report", fontsize=22, weight="bold", ha="center")
    fig.text(0.5, 0.81, "Exploring the Role of the Bottleneck in Slot-Based Models\nThrough Covariance Regularization",
             fontsize=13, ha="center", va="top", linespacing=1.4)
    fig.text(0.5, 0.72, f"Generated {time.strftime('%Y-%m-%d %H:%M')} from the files under {results_dir}",
             fontsize=10, ha="center")
    fig.text(0.5, 0.66, _wrap(note, 70), fontsize=11, ha="center", va="top", color="darkred",
             bbox={"boxstyle": "round,pad=0.6", "facecolor": "#fff3f0", "edgecolor": "darkred"})
    intro = ("Every number below is recomputed from the result files present when this report was built; "
             "a dash marks a cell that has not run, and \"diverged k/n\" a cell where k of its n seeds stopped "
             "at a non-finite loss (the mean is over the others). The paper's value stands beside each reproduced value; "
             "marks flag cells that ran in another setting than the paper's (see the notes under each table "
             "and the provenance table at the end).")
    fig.text(LEFT, 0.55, _wrap(intro, 95), fontsize=10, va="top", linespacing=1.5)
    fig.text(LEFT, 0.42, "Contents\n\n" + "\n".join(f"  {s}" for s in sections), fontsize=10, va="top",
             linespacing=1.6)
    doc.save(fig)


def build(tables_dir, figures_dir, results_dir, out_pdf, claims_dir=None, reason: str = "pdflatex not found") -> Path:
    """Write the report to `out_pdf` with matplotlib (atomically); return its path.

    `reason` says on the first page why it was not typeset (NO_LATEX).
    """
    import matplotlib

    matplotlib.use("Agg")
    tables_dir, figures_dir, out_pdf = Path(tables_dir), Path(figures_dir), Path(out_pdf)
    scope, claims = claims_file(claims_dir, "summary.csv"), claims_file(claims_dir, "claims.csv")
    provenance = provenance_table(results_dir)
    n_figures = len(list(figures_dir.glob("*.png"))) if figures_dir.is_dir() else 0
    sections = ([f"Tables ({len(TABLES)})", f"Figures ({n_figures})", f"Provenance ({len(provenance)} result files)"]
                + (["Appendix: the claims ledger"] if claims else []))
    rc = {"pdf.fonttype": 42, "font.family": "DejaVu Sans"}  # TrueType: the text stays searchable
    with matplotlib.rc_context(rc), atomic_path(out_pdf, suffix=".pdf") as tmp:
        note = NO_LATEX.format(reason=reason)
        doc = _Doc(tmp, note)
        try:
            if scope:
                _scope_page(doc, scope, results_dir, note, sections)
            else:
                _title_page(doc, results_dir, sections, note)
            for number, (name, caption) in enumerate(TABLES, 1):
                _paper_table(doc, tables_dir, number, name, caption)
            _figures(doc, figures_dir)
            _table(doc, "Provenance", PROVENANCE_HEADER, provenance, [26, 5, 10, 9, 12, 22, 18, 8],
                   notes="One row per result file: where and how each number was produced.", font=7)
            if claims:
                _claims_appendix(doc, claims)
        finally:
            doc.pdf.close()
    log(f"wrote {out_pdf} ({doc.pages} pages, {note})")
    return out_pdf
