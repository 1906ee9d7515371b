"""Tables 1-3 of the paper from the metrics and probing files: CSV, LaTeX and a numbers file.

Each cell is the mean +- std over the seeds that finished with n ("diverged k/n" beside it when
k of the n seeds found diverged), the paper's value beside it, and a mark wherever the run
differs from the paper's setting (replica or synthetic data, random-weight encoder, another
COCO pipeline, another probe, a reduced preset, non-paper knobs, no provenance).

    slotcov tables --results results --out reports/tables --numbers reports/numbers.tex
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from slotcov import paper
from slotcov.errors import UserError
from slotcov.io import atomic_path, write_text
from slotcov.report.results import cli_parser, coco_pipelines, load_results, log

TABLES = [  # file stem, caption (the report's order): read by the LaTeX and matplotlib reports and the workflow
    ("table1", "FG-ARI (%) on ColoredMDSprites and COCO (paper Table 1)."),
    ("table2", "Property probing on frozen ColoredMDSprites slots (paper Table 2)."),
    ("table3", "FG-ARI (%) on COCO for DINOSAUR (paper Table 3); block masks is DINOSAUR's reference baseline."),
]
# Deviations from the paper's setting, in footnote order: key -> (LaTeX math-mode mark, footnote).
MARKS = {
    "replica": (r"\dagger", "ran on the ColoredMDSprites replica rendered by slotcov, not DeepMind's dataset."),
    "synthetic": (r"\ddagger", "ran on synthetic COCO-format images, not COCO 2017."),
    "random": (r"\S", "frozen ViT encoder with random weights, not DINO."),
    "pipeline": (r"\P", "trained or scored under another pipeline than the paper's ({detail})."),
    "probe": (r"\flat", "probed otherwise than the authors' probe ({detail})."),
    "preset": ("*", "reduced preset ({detail}), not the paper's schedule."),
    "knobs": (r"\sharp", "settings that differ from the paper's ({detail})."),
    "noprov": ("?", "no provenance file: setting unknown."),
}


def default_numbers(tables_dir) -> Path:
    """Where the numbers file goes without --numbers: beside the tables folder."""
    return Path(tables_dir).parent / "numbers.tex"


# ----------------------------------------------------------------------------- shaping (pandas)

def _marks(group: pd.DataFrame, dataset: str, method: str) -> dict[str, str]:
    """Deviation keys of one cell (union over its seeds) -> footnote detail."""
    out: dict[str, str] = {}
    if not group["has_prov"].all():
        out["noprov"] = ""

    def values(col):
        return sorted(set(group[col].dropna())) if col in group else []

    kinds = values("prov_dataset_kind")
    if "replica" in kinds:
        out["replica"] = ""
    if "synthetic-coco" in kinds:
        out["synthetic"] = ""
    if "random" in values("prov_encoder_weights"):
        out["random"] = ""
    pipeline = _pipeline_departures(values, dataset, method)
    if pipeline:
        out["pipeline"] = pipeline
    probe = [f"probe.{k}={v}" for k, want in paper.PAPER_PROBE.items()
             for v in values(f"prov_probe_{k}") if v != str(want).lower()]
    if probe:
        out["probe"] = "; ".join(probe)
    knobs = _items(values("prov_non_paper"))  # each e.g. "train.amp=bf16; model.slot_init=glorot"
    if knobs:
        out["knobs"] = "; ".join(knobs)
    presets = [p for p in values("prov_preset") if p != "paper"]
    if presets:
        out["preset"] = "preset " + ", ".join(presets)
    return out


def _pipeline_departures(values, dataset: str, method: str) -> str:
    """The pipelines a cell was scored or trained on other than the paper's, as a footnote detail."""
    want = paper.BLOCKMASKS_PIPELINE if method == "blockmasks" else paper.PAPER_PIPELINE.get(dataset)
    scored = [p for p in values("prov_pipeline") if want and p != want]
    trained = [p for p in values("prov_train_pipeline") if p and want and p != want]
    return "; ".join(([f"scored on {', '.join(scored)} instead of {want}"] if scored else [])
                     + ([f"trained on {', '.join(trained)} instead of {want}"] if trained else []))


def _items(lists) -> list[str]:
    """The distinct items of "; "-joined lists, in order of first appearance."""
    return list(dict.fromkeys(item for text in lists for item in text.split("; ") if item))


NOTE_ITEMS = 4  # settings a footnote names; the rest is counted (every cell's full list: provenance non_paper)


def _note_detail(key: str, details: list[str]) -> str:
    """The footnote detail of a mark over a table's cells: the non-paper settings counted, the first few named."""
    if key != "knobs":
        return "; ".join(details)
    items = _items(details)
    if len(items) <= NOTE_ITEMS:
        return "; ".join(items)
    return (f"{len(items)} settings, e.g. {'; '.join(items[:NOTE_ITEMS])}; "
            "each cell's list: provenance field non_paper")


def _seed_runs(sel: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    """Per row of `sel` (one seed's files): whether a run counts for `metric`'s column and whether it diverged.

    A plain metric is the primary pipeline's: every seed's file is a run, its `diverged` flag says which
    stopped. A pipeline's column (`dinosaur.fg_ari`) counts only the seeds with a model trained and scored
    under that pipeline (block masks: scored), flagged by that section's `diverged`.
    """
    section = metric.split(".")[0] + "." if "." in metric else ""
    flag = section + "diverged"
    diverged = sel[flag].eq(1) if flag in sel else pd.Series(False, index=sel.index)
    if not section:
        return pd.Series(True, index=sel.index), diverged
    found = sel[metric].notna() if metric in sel else pd.Series(False, index=sel.index)
    return found | diverged, diverged


def _column_stats(sel: pd.DataFrame, methods: list[str], metric: str) -> pd.DataFrame:
    """One table column per method: mean, std (ddof 1), n and seeds over the seeds that finished, and
    n_diverged of the n_runs seeds found (_seed_runs)."""
    found, diverged = _seed_runs(sel, metric)
    runs = diverged[found].groupby(sel.loc[found, "method"]).agg(["size", "sum"])
    done = sel[found & ~diverged]  # a diverged seed has no numbers and never enters a mean
    values = done[["method", "seed", metric]].dropna() if metric in done else pd.DataFrame(
        columns=["method", "seed", metric])
    stats = values.groupby("method").agg(mean=(metric, "mean"), std=(metric, "std"), n=(metric, "size"),
                                         seeds=("seed", lambda s: " ".join(str(v) for v in sorted(s))))
    out = stats.reindex(methods).rename_axis("method").reset_index()
    out.insert(1, "metric", metric)
    out["n_diverged"] = out["method"].map(runs["sum"]).fillna(0).astype(int)
    out["n_runs"] = out["method"].map(runs["size"]).fillna(0).astype(int)
    return out


def summarize(df: pd.DataFrame, dataset: str, methods: list[str], metrics: list[str],
              paper_values: dict) -> pd.DataFrame:
    """Long table: one row per (method, metric) with mean, std (ddof 1), n, seeds, paper, marks.

    mean, std, n and seeds are over the seeds that finished; n_diverged of the n_runs seeds found
    diverged (their files hold `"diverged": 1` and no numbers), per column (_seed_runs).
    """
    sel = df[df["dataset"] == dataset]
    rank = {name: i for i, name in enumerate(methods + metrics)}  # method-major, in the order given
    out = (pd.concat([_column_stats(sel, methods, metric) for metric in metrics], ignore_index=True)
           .sort_values(["method", "metric"], key=lambda col: col.map(rank), kind="stable").reset_index(drop=True))
    out[["mean", "std"]] = out[["mean", "std"]].astype(float)
    out["n"] = out["n"].fillna(0).astype(int)
    out["seeds"] = out["seeds"].astype(object).fillna("")
    out = out[["method", "metric", "mean", "std", "n", "seeds", "n_diverged", "n_runs"]]
    out.insert(0, "dataset", dataset)
    out["paper"] = [paper_values.get(key, np.nan) for key in zip(out["method"], out["metric"])]
    finished = sel[~_seed_runs(sel, "fg_ari")[1]]  # marks: the settings of the seeds that finished
    detail = {m: _marks(g, dataset, m) for m, g in finished.groupby("method")}
    out["_detail"] = [detail.get(m, {}) for m in out["method"]]
    out.insert(len(out.columns) - 1, "marks", [";".join(d) for d in out["_detail"]])
    return out


def coco_metrics(other: str) -> list[str]:
    """Table columns of a COCO cell: primary FG-ARI, that of the models trained and scored under the `other`
    pipeline (-- where none was: data.coco.train_pipelines), the authors' FG-ARI on the primary."""
    return ["fg_ari", f"{other}.fg_ari", "fg_ari_authors"]


def build(metrics: pd.DataFrame, probe: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The long tables table1..3 (summarize) of the loaded metrics and probing files."""
    # paper values stand beside the primary pipeline's rows, not the other pipeline's ("dinosaur.fg_ari")
    cols = {"cmdsprites": ["fg_ari"], "coco": coco_metrics(coco_pipelines(metrics)[1])}
    t1 = pd.concat([summarize(metrics, ds, paper.TABLE1_ROWS, cols[ds],
                              {(m, c): paper.TABLE1[(ds, m)] for m in paper.TABLE1_ROWS for c in cols[ds]
                               if "." not in c and (ds, m) in paper.TABLE1})  # no paper value: "--"
                    for ds in paper.TABLE1_COLS], ignore_index=True)
    t2 = summarize(probe, "cmdsprites", list(paper.TABLE2), paper.TABLE2_COLS,
                   {(m, c): v for m, d in paper.TABLE2.items() for c, v in d.items()})
    t3 = summarize(metrics, "coco", list(paper.TABLE3) + ["blockmasks"], cols["coco"],
                   {(m, c): v for m, v in {**paper.TABLE3, "blockmasks": paper.BLOCKMASKS}.items()
                    for c in cols["coco"] if "." not in c})
    return {"table1": t1, "table2": t2, "table3": t3}


# ----------------------------------------------------------------------------- LaTeX

def tex_escape(text: str) -> str:
    return re.sub(r"([\\&%$#_{}~^])", lambda m: {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}",
                                                  "^": r"\textasciicircum{}"}.get(m.group(1), "\\" + m.group(1)),
                  str(text))


def _sup(keys) -> str:
    marks = "".join(MARKS[k][0] for k in MARKS if k in keys)
    return f"$^{{{marks}}}$" if marks else ""  # math mode: Type 1 cmsy glyphs, no bitmap text-companion fonts


def diverged_note(row) -> str:
    """"diverged k/n" for a cell where k of its n seeds diverged, else ""."""
    return f"diverged {row['n_diverged']}/{row['n_runs']}" if row.get("n_diverged", 0) else ""


def _cell_tex(row, digits: int, with_n: bool = True, marks: bool = True) -> str:
    note = diverged_note(row) if with_n else ""  # without n (Table 2) the row's label carries it
    if row["n"] == 0:
        return (note + (_sup(row["_detail"]) if marks else "")) if note else "--"
    text = f"{row['mean']:.{digits}f}"
    if row["n"] > 1:
        text = f"${text} \\pm {row['std']:.{digits}f}$"
    if with_n:
        text += r"\,{\scriptsize(" + str(row["n"]) + ")}"
    if note:
        text += r"\,{\scriptsize " + note + "}"
    return text + (_sup(row["_detail"]) if marks else "")


def _paper_tex(value, digits: int) -> str:
    return "--" if pd.isna(value) else f"{value:.{digits}f}"


def _notes(summary: pd.DataFrame) -> str:
    """Footnotes for the marks used in a table, with the details of every cell that has them."""
    lines = []
    for key, (mark, text) in MARKS.items():
        details = sorted({d[key] for d in summary["_detail"] if key in d})
        if details:
            lines.append(_sup([key]) + " " + tex_escape(text.format(detail=_note_detail(key, details))))
    lines.append(r"Cells: mean $\pm$ std over seeds, number of seeds in parentheses; -- = not run.")
    if summary.get("n_diverged", pd.Series(dtype=int)).any():
        lines.append("diverged $k/n$: $k$ of the $n$ seeds found stopped at a non-finite loss or gradient; "
                     "mean, std and count are over the seeds that finished.")
    return "\\par\n".join(lines)


def _table_env(name: str, colspec: str, body: str, notes: str, colsep: str = "6pt") -> str:
    """The LaTeX table `name` (its caption from TABLES, label tab:<name>) around a tabular."""
    caption = tex_escape(dict(TABLES)[name])
    return (f"\\begin{{table}}[htbp]\n\\centering\n\\caption{{{caption}}}\\label{{tab:{name}}}\n"
            f"\\small\\setlength{{\\tabcolsep}}{{{colsep}}}\n\\begin{{tabular}}{{{colspec}}}\n\\toprule\n{body}\\bottomrule\n\\end{{tabular}}\n"
            f"\\par\\smallskip\\parbox{{0.95\\linewidth}}{{\\footnotesize {notes}}}\n\\end{{table}}\n")


def _coco_cells(s: pd.DataFrame, method: str) -> list[str]:
    """The three COCO numbers of a method (marks on the first) and the paper's value."""
    rows = s[(s["method"] == method) & (s["dataset"] == "coco")]
    return ([_cell_tex(r, 2, marks=i == 0) for i, (_, r) in enumerate(rows.iterrows())]
            + [_paper_tex(rows.iloc[0]["paper"], 2)])


def _coco_header(s: pd.DataFrame) -> tuple[str, str]:
    """COCO column heads and the note that says which pipeline and metric each column is."""
    other = next(m for m in s["metric"] if "." in m).split(".")[0]
    primary = next(n for n in paper.COCO_PIPELINES if n != other)
    head = f"{primary} & {other}-trained & {primary}, authors' metric & paper"
    note = (f"COCO columns: FG-ARI of the models trained and scored under the {primary} pipeline (the tables' "
            f"primary pipeline); FG-ARI of the models trained and scored under the {other} pipeline, -- where "
            f"no model was trained under it (data.coco.train_pipelines; block masks are not trained and are "
            f"scored under both); and the paper authors' FG-ARI code (64-image batches in file order) under the "
            f"{primary} pipeline. The paper's COCO values came from the authors' pipeline and FG-ARI code "
            "(their loader shuffled, so their batches differed).")
    return head, tex_escape(note)


def _table1_tex(s: pd.DataFrame) -> str:
    coco_head, coco_note = _coco_header(s[s["dataset"] == "coco"])
    head = (" & \\multicolumn{2}{c}{ColoredMDSprites} & \\multicolumn{4}{c}{COCO} \\\\\n"
            "\\cmidrule(lr){2-3}\\cmidrule(lr){4-7}\nMethod & ours & paper & " + coco_head + " \\\\\n\\midrule\n")
    body = ""
    for method in paper.TABLE1_ROWS:
        row = s[(s["method"] == method) & (s["dataset"] == "cmdsprites")].iloc[0]
        cells = [_cell_tex(row, 2), _paper_tex(row["paper"], 2)] + _coco_cells(s, method)
        body += paper.LABELS.get(method, method) + " & " + " & ".join(cells) + " \\\\\n"
    return _table_env("table1", "lrrrrrr", head + body, coco_note + "\\par\n" + _notes(s), colsep="3pt")


def _table2_tex(s: pd.DataFrame) -> str:
    head = "Method & & " + " & ".join(paper.LABELS[c] for c in paper.TABLE2_COLS) + " \\\\\n\\midrule\n"
    body = ""
    for i, method in enumerate(paper.TABLE2):
        rows = s[s["method"] == method].set_index("metric")
        n = int(rows["n"].max())
        ours = [_cell_tex(rows.loc[c], 4, with_n=False, marks=False) for c in paper.TABLE2_COLS]  # marks on the label
        note = diverged_note(rows.iloc[0])
        label = f"ours (n={n}{', ' + note if note else ''})" + _sup(rows["_detail"].iloc[0])
        body += paper.LABELS.get(method, method) + f" & {label} & " + " & ".join(ours) + " \\\\\n"
        body += " & paper & " + " & ".join(_paper_tex(rows.loc[c, "paper"], 4) for c in paper.TABLE2_COLS)
        body += " \\\\\n" + ("\\midrule\n" if i < len(paper.TABLE2) - 1 else "")
    return _table_env("table2", "ll" + "c" * len(paper.TABLE2_COLS), head + body, _notes(s), colsep="3pt")


def _table3_tex(s: pd.DataFrame) -> str:
    coco_head, coco_note = _coco_header(s)
    body = "Method & " + coco_head + " \\\\\n\\midrule\n"
    for method in list(paper.TABLE3) + ["blockmasks"]:
        cells = _coco_cells(s, method)
        if method == "blockmasks":
            body += "\\midrule\n"
            cells[-1] = f"$\\approx${paper.BLOCKMASKS:.0f} (DINOSAUR's evaluation)"
        if method == "dinosaur1024":
            cells[-1] += " (unstable)"
        body += f"{paper.LABELS.get(method, method)} & " + " & ".join(cells) + " \\\\\n"
    return _table_env("table3", "lrrrr", body, coco_note + "\\par\n" + _notes(s), colsep="4pt")


TEX = {"table1": _table1_tex, "table2": _table2_tex, "table3": _table3_tex}  # the LaTeX of each of TABLES


# ----------------------------------------------------------------------------- numbers macros

def _macro_name(*parts: str) -> str:
    digits = "Zero One Two Three Four Five Six Seven Eight Nine".split()
    words = []
    for part in parts:
        for word in re.split(r"[^A-Za-z0-9]+", part):
            word = re.sub(r"\d", lambda m: digits[int(m.group())], word)
            words.append(word[:1].upper() + word[1:])
    return "".join(words)


def _number_macros(prefix: str, s: pd.DataFrame, digits: int, by_metric: bool) -> list[str]:
    lines = []
    for _, row in s.iterrows():
        key = (prefix, row["method"], row["metric"]) if by_metric else (prefix, row["dataset"], row["method"])
        if not by_metric and row["metric"] != "fg_ari":  # COCO's extra columns: other pipeline, authors' metric
            key += (row["metric"],)
        name = _macro_name(*key)
        fmt = (lambda v: "--" if pd.isna(v) else f"{v:.{digits}f}")
        lines += [f"\\newcommand{{\\{name}Mean}}{{{fmt(row['mean'])}}}",
                  f"\\newcommand{{\\{name}Std}}{{{fmt(row['std'])}}}",
                  f"\\newcommand{{\\{name}N}}{{{row['n']}}}",
                  f"\\newcommand{{\\{name}Diverged}}{{{row['n_diverged']}}}",
                  f"\\newcommand{{\\{name}Runs}}{{{row['n_runs']}}}",
                  f"\\newcommand{{\\{name}Paper}}{{{fmt(row['paper'])}}}"]
    return lines


def numbers_tex(t: dict[str, pd.DataFrame]) -> str:
    """A \\newcommand for the mean, std, n, diverged and run counts and paper value of every table cell
    (\\TabOneCmdspritesSaMean)."""
    lines = ["% Generated by `slotcov tables` from the result files; do not edit."]
    lines += _number_macros("TabOne", t["table1"], 2, by_metric=False)
    lines += _number_macros("TabTwo", t["table2"], 4, by_metric=True)
    lines += _number_macros("TabThree", t["table3"], 2, by_metric=False)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- files

def tables(results_dir, out_dir, numbers_path=None, only=None) -> dict[str, pd.DataFrame]:
    """Write each table of TABLES as <name>.tex/.csv into `out_dir` and the numbers macros to `numbers_path`
    (default_numbers). `only`: the names of the tables to write, and the numbers file only when `numbers_path`
    is given (the workflow's one job per file)."""
    out_dir = Path(out_dir)
    names = [name for name, _ in TABLES] if only is None else list(only)
    unknown = sorted(set(names) - set(TEX))
    if unknown:
        raise UserError(f"no table {', '.join(unknown)}; the tables are {', '.join(name for name, _ in TABLES)}")
    if numbers_path is None and only is None:
        numbers_path = default_numbers(out_dir)
    metrics, probe = load_results(results_dir, "metrics"), load_results(results_dir, "probe")
    log(f"{len(metrics)} metrics files, {len(probe)} probing files under {results_dir}")
    result = build(metrics, probe)
    for name in names:
        write_text(out_dir / f"{name}.tex", TEX[name](result[name]))
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            result[name].drop(columns="_detail").to_csv(tmp, index=False, float_format="%.6g")
    if names:
        log(f"wrote {', '.join(names)} (.tex, .csv) into {out_dir}")
    if numbers_path is not None:
        write_text(numbers_path, numbers_tex(result))
        log(f"wrote {numbers_path}")
    return result


def cli_tables(argv: list[str]) -> int:
    p = cli_parser("tables", "Tables 1-3 (LaTeX + CSV) and numbers.tex from the metrics and probing files.",
                   "metrics/, probe/, details/, provenance/", "reports/tables", "folder for <table>.tex/.csv")
    p.add_argument("--numbers", help="\\newcommand file of every number (default: OUT/../numbers.tex; "
                   "with --only: written only when given)")
    p.add_argument("--only", nargs="*", metavar="TABLE", help="write only these tables "
                   f"({', '.join(name for name, _ in TABLES)}); none: only --numbers")
    args = p.parse_args(argv)
    tables(args.results, args.out, args.numbers, args.only)
    return 0
