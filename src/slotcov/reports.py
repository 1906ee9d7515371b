"""The paper's artifacts rebuilt from the result files: Tables 1-3, the figures, one PDF.

Everything here reads only the files present under `results/` (docs/design.md), so a
cell that has not run shows a dash and a deleted result never survives as a stale number.
Each table cell is the mean +- std over seeds with n, the paper's value beside it, and a
marker wherever the run differs from the paper's setting (replica or synthetic data,
random-weight encoder, another evaluation protocol, a reduced preset, no provenance).

    slotcov tables  --results results --out reports/tables [--numbers reports/numbers.tex]
    slotcov figures --results results --out reports/figures
    slotcov report  --tables reports/tables --figures reports/figures --results results --out reports/report.pdf
                    [--claims reports/claims]   (no pdflatex on PATH: drawn with matplotlib, slotcov.report_pdf)
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from slotcov import paper
from slotcov.errors import UserError
from slotcov.io import atomic_path, write_text

LATEX_PACKAGES = "texlive-latex-base texlive-latex-recommended"  # as in scripts/install-latex.sh
INSTALL_HINT = f"install LaTeX: `bash scripts/install-latex.sh` (Debian packages: {LATEX_PACKAGES})"

# Deviations from the paper's setting, in footnote order: key -> (LaTeX math-mode mark, footnote).
MARKS = {
    "replica": (r"\dagger", "ran on the ColoredMDSprites replica rendered by slotcov, not DeepMind's dataset."),
    "synthetic": (r"\ddagger", "ran on synthetic COCO-format images, not COCO 2017."),
    "random": (r"\S", "frozen ViT encoder with random weights, not DINO."),
    "protocol": (r"\P", "evaluated under another protocol than the paper's ({detail})."),
    "preset": ("*", "reduced preset ({detail}), not the paper's schedule."),
    "knobs": (r"\sharp", "settings the paper's runs did not use ({detail})."),
    "noprov": ("?", "no provenance file: setting unknown."),
}


def _log(msg: str) -> None:
    print(f"slotcov reports: {msg}", file=sys.stderr)


# ----------------------------------------------------------------------------- loading

def _seed_of(path: Path) -> int:
    m = re.fullmatch(r"seed(\d+)", path.stem)
    if m is None:
        raise UserError(f"{path}: result files must be named seed<N>.json")
    return int(m.group(1))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: unreadable JSON ({err}); delete it and rerun the step that writes it") from err


def load_results(results_dir, kind: str = "metrics") -> pd.DataFrame:
    """One row per result file under results/{kind}/{dataset}/{method}/seed{N}.json, provenance joined.

    Provenance (results/provenance/{kind}/<same relative path>) columns are prefixed `prov_`;
    `has_prov` says whether that file existed. A COCO
    file's pipeline sections become columns `<pipeline>.<key>` (`dinosaur.fg_ari`), its primary
    pipeline's name the column `pipeline`.
    """
    rows = []
    for path in sorted(Path(results_dir, kind).glob("*/*/seed*.json")):
        if path.name.endswith(".provenance.json"):
            continue
        row = {"dataset": path.parent.parent.name, "method": path.parent.name, "seed": _seed_of(path)}
        data = _read_json(path)
        row.update({k: v for k, v in data.items() if isinstance(v, (int, float))})
        for name, section in (data.get("pipelines") or {}).items():
            row.update({f"{name}.{k}": v for k, v in section.items() if isinstance(v, (int, float))})
        if isinstance(data.get("pipeline"), str):
            row["pipeline"] = data["pipeline"]
        prov_path = Path(results_dir, "provenance", kind, *path.parts[-3:])
        row["has_prov"] = prov_path.exists()
        if row["has_prov"]:
            row.update({f"prov_{k}": str(v) for k, v in _read_json(prov_path).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def load_sweep(results_dir) -> pd.DataFrame:
    """Bottleneck sweep: one row per results/sweep/cmdsprites/covloss/beta{b}/seed{N}.json."""
    rows = []
    for path in sorted(Path(results_dir, "sweep", "cmdsprites", "covloss").glob("beta*/seed*.json")):
        if path.name.endswith(".provenance.json"):
            continue
        try:
            beta = float(path.parent.name.removeprefix("beta"))
        except ValueError:
            _log(f"skipping {path}: folder name is not beta<number>")
            continue
        data = _read_json(path)
        rows.append({"beta": beta, "seed": _seed_of(path), "fg_ari": data.get("fg_ari", np.nan),
                     "slot_cov": data.get("slot_cov", np.nan)})
    return pd.DataFrame(rows, columns=["beta", "seed", "fg_ari", "slot_cov"])


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
    want = paper.BLOCKMASKS_PROTOCOL if method == "blockmasks" else paper.PAPER_PROTOCOL.get(dataset)
    other = [p for p in values("prov_protocol") if want and p != want]
    if other:
        out["protocol"] = f"{', '.join(other)} instead of {want}"
    knobs = [k for k in values("prov_non_paper") if k]  # e.g. "train.amp=bf16; model.slot_init=glorot"
    if knobs:
        out["knobs"] = "; ".join(knobs)
    presets = [p for p in values("prov_preset") if p != "paper"]
    if presets:
        out["preset"] = "preset " + ", ".join(presets)
    return out


def summarize(df: pd.DataFrame, dataset: str, methods: list[str], metrics: list[str],
              paper_values: dict) -> pd.DataFrame:
    """Long table: one row per (method, metric) with mean, std (ddof 1), n, seeds, paper, marks."""
    rows = []
    for method in methods:
        group = df[(df["dataset"] == dataset) & (df["method"] == method)] if len(df) else df
        marks = _marks(group, dataset, method) if len(group) else {}
        for metric in metrics:
            vals = group[metric].dropna() if metric in group else pd.Series(dtype=float)
            rows.append({
                "dataset": dataset, "method": method, "metric": metric,
                "mean": vals.mean() if len(vals) else np.nan,
                "std": vals.std(ddof=1) if len(vals) > 1 else np.nan,
                "n": len(vals),
                "seeds": " ".join(str(s) for s in sorted(group.loc[vals.index, "seed"])) if len(vals) else "",
                "paper": paper_values.get((method, metric), np.nan),
                "marks": ";".join(marks), "_detail": marks,
            })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- tables

def _tex_escape(text: str) -> str:
    return re.sub(r"([\\&%$#_{}~^])", lambda m: {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}",
                                                  "^": r"\textasciicircum{}"}.get(m.group(1), "\\" + m.group(1)),
                  str(text))


def _sup(keys) -> str:
    marks = "".join(MARKS[k][0] for k in MARKS if k in keys)
    return f"$^{{{marks}}}$" if marks else ""  # math mode: Type 1 cmsy glyphs, no bitmap text-companion fonts


def _cell_tex(row, digits: int, with_n: bool = True, marks: bool = True) -> str:
    if row["n"] == 0:
        return "--"
    text = f"{row['mean']:.{digits}f}"
    if row["n"] > 1:
        text = f"${text} \\pm {row['std']:.{digits}f}$"
    if with_n:
        text += r"\,{\scriptsize(" + str(row["n"]) + ")}"
    return text + (_sup(row["_detail"]) if marks else "")


def _paper_tex(value, digits: int) -> str:
    return "--" if pd.isna(value) else f"{value:.{digits}f}"


def _notes(summary: pd.DataFrame) -> str:
    """Footnotes for the marks used in a table, with the details of every cell that has them."""
    lines = []
    for key, (mark, text) in MARKS.items():
        details = sorted({d[key] for d in summary["_detail"] if key in d})
        if details:
            lines.append(_sup([key]) + " " + _tex_escape(text.format(detail="; ".join(details))))
    lines.append(r"Cells: mean $\pm$ std over seeds, number of seeds in parentheses; -- = not run.")
    return "\\par\n".join(lines)


def _table_env(caption: str, label: str, colspec: str, body: str, notes: str, colsep: str = "6pt") -> str:
    return (f"\\begin{{table}}[htbp]\n\\centering\n\\caption{{{caption}}}\\label{{{label}}}\n"
            f"\\small\\setlength{{\\tabcolsep}}{{{colsep}}}\n\\begin{{tabular}}{{{colspec}}}\n\\toprule\n{body}\\bottomrule\n\\end{{tabular}}\n"
            f"\\par\\smallskip\\parbox{{0.95\\linewidth}}{{\\footnotesize {notes}}}\n\\end{{table}}\n")


def coco_pipelines(metrics: pd.DataFrame) -> tuple[str, str]:
    """(primary, other) COCO pipeline of the metrics files: primary = the `pipeline` most files name."""
    coco = metrics[metrics["dataset"] == "coco"] if len(metrics) else metrics
    names = coco["pipeline"].dropna() if "pipeline" in coco else pd.Series(dtype=str)
    primary = names.mode().iloc[0] if len(names) else paper.PAPER_PROTOCOL["coco"]
    return primary, next(n for n in paper.COCO_PIPELINES if n != primary)


def coco_metrics(other: str) -> list[str]:
    """Table columns of a COCO cell: primary FG-ARI, the `other` pipeline's, the authors' FG-ARI on the primary."""
    return ["fg_ari", f"{other}.fg_ari", "fg_ari_authors"]


def _coco_cells(s: pd.DataFrame, method: str) -> list[str]:
    """The three COCO numbers of a method (marks on the first) and the paper's value."""
    rows = s[(s["method"] == method) & (s["dataset"] == "coco")]
    return ([_cell_tex(r, 2, marks=i == 0) for i, (_, r) in enumerate(rows.iterrows())]
            + [_paper_tex(rows.iloc[0]["paper"], 2)])


def _coco_header(s: pd.DataFrame) -> tuple[str, str]:
    """COCO column heads and the note that says which pipeline and metric each column is."""
    other = next(m for m in s["metric"] if "." in m).split(".")[0]
    primary = next(n for n in paper.COCO_PIPELINES if n != other)
    head = f"{primary} & {other} & {primary}, authors' metric & paper"
    note = (f"COCO columns: FG-ARI under the {primary} pipeline (the tables' primary pipeline), under the "
            f"{other} pipeline, and the paper authors' FG-ARI code (64-image batches in file order) under the "
            f"{primary} pipeline. The paper's COCO values came from the authors' pipeline and FG-ARI code "
            "(their loader shuffled, so their batches differed).")
    return head, _tex_escape(note)


def _table1_tex(s: pd.DataFrame) -> str:
    coco_head, coco_note = _coco_header(s[s["dataset"] == "coco"])
    head = (" & \\multicolumn{2}{c}{ColoredMDSprites} & \\multicolumn{4}{c}{COCO} \\\\\n"
            "\\cmidrule(lr){2-3}\\cmidrule(lr){4-7}\nMethod & ours & paper & " + coco_head + " \\\\\n\\midrule\n")
    body = ""
    for method in paper.TABLE1_ROWS:
        row = s[(s["method"] == method) & (s["dataset"] == "cmdsprites")].iloc[0]
        cells = [_cell_tex(row, 2), _paper_tex(row["paper"], 2)] + _coco_cells(s, method)
        body += paper.LABELS[method] + " & " + " & ".join(cells) + " \\\\\n"
    return _table_env("FG-ARI (\\%) on ColoredMDSprites and COCO (paper Table 1).", "tab:one",
                      "lrrrrrr", head + body, coco_note + "\\par\n" + _notes(s), colsep="3pt")


def _table2_tex(s: pd.DataFrame) -> str:
    head = "Method & & " + " & ".join(paper.LABELS[c] for c in paper.TABLE2_COLS) + " \\\\\n\\midrule\n"
    body = ""
    for i, method in enumerate(paper.TABLE2):
        rows = s[s["method"] == method].set_index("metric")
        n = int(rows["n"].max())
        ours = [_cell_tex(rows.loc[c], 4, with_n=False, marks=False) for c in paper.TABLE2_COLS]  # marks on the label
        label = f"ours (n={n})" + _sup(rows["_detail"].iloc[0])
        body += paper.LABELS[method] + f" & {label} & " + " & ".join(ours) + " \\\\\n"
        body += " & paper & " + " & ".join(_paper_tex(rows.loc[c, "paper"], 4) for c in paper.TABLE2_COLS)
        body += " \\\\\n" + ("\\midrule\n" if i < len(paper.TABLE2) - 1 else "")
    return _table_env("Property probing on frozen ColoredMDSprites slots (paper Table 2).", "tab:two",
                      "ll" + "c" * len(paper.TABLE2_COLS), head + body, _notes(s), colsep="3pt")


def _table3_tex(s: pd.DataFrame) -> str:
    coco_head, coco_note = _coco_header(s)
    body = "Method & " + coco_head + " \\\\\n\\midrule\n"
    for method in list(paper.TABLE3) + ["blockmasks"]:
        cells = _coco_cells(s, method)
        if method == "blockmasks":
            body += "\\midrule\n"
            cells[-1] = f"$\\approx${paper.BLOCKMASKS:.0f} (DINOSAUR's protocol)"
        if method == "dinosaur1024":
            cells[-1] += " (unstable)"
        body += f"{paper.LABELS[method]} & " + " & ".join(cells) + " \\\\\n"
    return _table_env("FG-ARI (\\%) on COCO for DINOSAUR (paper Table 3); block masks is DINOSAUR's "
                      "reference baseline.", "tab:three", "lrrrr", body, coco_note + "\\par\n" + _notes(s), colsep="4pt")


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
                  f"\\newcommand{{\\{name}Paper}}{{{fmt(row['paper'])}}}"]
    return lines


def tables(results_dir, out_dir, numbers_path=None) -> dict[str, pd.DataFrame]:
    """Write table{1,2,3}.tex/.csv into `out_dir` and the numbers macros (default out_dir/../numbers.tex)."""
    out_dir = Path(out_dir)
    numbers_path = Path(numbers_path) if numbers_path else out_dir.parent / "numbers.tex"
    metrics, probe = load_results(results_dir, "metrics"), load_results(results_dir, "probe")
    _log(f"{len(metrics)} metrics files, {len(probe)} probing files under {results_dir}")
    # paper values stand beside the primary pipeline's rows, not the other pipeline's ("dinosaur.fg_ari")
    cols = {"cmdsprites": ["fg_ari"], "coco": coco_metrics(coco_pipelines(metrics)[1])}
    t1 = pd.concat([summarize(metrics, ds, paper.TABLE1_ROWS, cols[ds],
                              {(m, c): paper.TABLE1[(ds, m)] for m in paper.TABLE1_ROWS for c in cols[ds] if "." not in c})
                    for ds in paper.TABLE1_COLS], ignore_index=True)
    t2 = summarize(probe, "cmdsprites", list(paper.TABLE2), paper.TABLE2_COLS,
                   {(m, c): v for m, d in paper.TABLE2.items() for c, v in d.items()})
    t3 = summarize(metrics, "coco", list(paper.TABLE3) + ["blockmasks"], cols["coco"],
                   {(m, c): v for m, v in {**paper.TABLE3, "blockmasks": paper.BLOCKMASKS}.items()
                    for c in cols["coco"] if "." not in c})
    result = {"table1": t1, "table2": t2, "table3": t3}
    for name, (s, tex) in {"table1": (t1, _table1_tex(t1)), "table2": (t2, _table2_tex(t2)),
                           "table3": (t3, _table3_tex(t3))}.items():
        write_text(out_dir / f"{name}.tex", tex)
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            s.drop(columns="_detail").to_csv(tmp, index=False, float_format="%.6g")
    lines = ["% Generated by `slotcov tables` from the result files; do not edit."]
    lines += _number_macros("TabOne", t1, 2, by_metric=False)
    lines += _number_macros("TabTwo", t2, 4, by_metric=True)
    lines += _number_macros("TabThree", t3, 2, by_metric=False)
    write_text(numbers_path, "\n".join(lines) + "\n")
    _log(f"wrote {out_dir}/table{{1,2,3}}.{{tex,csv}} and {numbers_path}")
    return result


# ----------------------------------------------------------------------------- figures

def _save(fig, out_dir: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        with atomic_path(path, suffix="." + ext) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", pad_inches=0.05)
        paths.append(path)
    plt.close(fig)
    return paths


def _drop_stale(out_dir: Path, name: str, why: str) -> None:
    _log(f"skipping figure {name}: {why}")
    for ext in ("png", "pdf"):
        (out_dir / f"{name}.{ext}").unlink(missing_ok=True)


def _first_sample(results_dir: Path, dataset: str, method: str):
    """The samples NPZ of the lowest seed of a cell, or None."""
    paths = sorted(Path(results_dir, "samples", dataset, method).glob("seed*.npz"), key=_seed_of)
    if not paths:
        return None
    with np.load(paths[0]) as z:
        return {k: z[k] for k in z.files} | {"seed": _seed_of(paths[0])}


def _resize_nearest(a: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes of `a` to `shape`."""
    ys = (np.arange(shape[0]) * a.shape[-2] / shape[0]).astype(int)
    xs = (np.arange(shape[1]) * a.shape[-1] / shape[1]).astype(int)
    return a[..., ys[:, None], xs[None, :]]


def _palette(k: int) -> np.ndarray:
    import matplotlib

    return np.asarray(matplotlib.colormaps["tab20"](np.arange(k) % 20))[:, :3]


def _overlay(image: np.ndarray, ids: np.ndarray, keep: np.ndarray | None = None, alpha: float = 0.55) -> np.ndarray:
    """Colour an id map over an image; pixels where `keep` is False show the image dimmed."""
    ids = _resize_nearest(ids, image.shape[:2])
    colour = _palette(int(ids.max()) + 1)[ids]
    out = (1 - alpha) * image + alpha * colour
    if keep is not None:
        keep = _resize_nearest(keep, image.shape[:2])
        out = np.where(keep[..., None], out, 0.6 * image)
    return np.clip(out, 0, 1)


def _grid_figure(panels: list[list[np.ndarray]], col_labels: list[str], row_labels: list[str], title: str,
                 cell_inches: float = 1.1):
    """One image of equally sized panels (rows x cols) with labels: one axes, so it draws fast."""
    import matplotlib.pyplot as plt

    h, w = panels[0][0].shape[:2]
    pad = max(1, h // 32)
    n_rows, n_cols = len(panels), len(panels[0])
    mosaic = np.full((n_rows * (h + pad) - pad, n_cols * (w + pad) - pad, 3), 0.7)  # grey gaps
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            mosaic[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = panel
    fig, ax = plt.subplots(figsize=(cell_inches * n_cols + 1.0, cell_inches * n_rows * h / w + 0.6))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([c * (w + pad) + w / 2 for c in range(n_cols)], col_labels, fontsize=8)
    ax.set_yticks([r * (h + pad) + h / 2 for r in range(n_rows)], row_labels, fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _recon_panels(sample: dict, n_rows: int) -> tuple[list[str], list[list[np.ndarray]]]:
    """Per example: input, reconstruction, each slot's alpha-masked reconstruction (white elsewhere)."""
    image, masks = sample["image"][:n_rows], sample["masks"][:n_rows]
    recon = sample.get("recon")
    base = recon[:n_rows] if recon is not None else image
    k = masks.shape[1]
    cols = ["Input"] + (["Recon."] if recon is not None else []) + [f"Slot {i + 1}" for i in range(k)]
    rows = []
    for r in range(len(image)):
        m = _resize_nearest(masks[r], image.shape[1:3])[..., None]
        rows.append([image[r]] + ([recon[r]] if recon is not None else [])
                    + [np.clip(base[r] * m[i] + (1 - m[i]), 0, 1) for i in range(k)])
    return cols, rows


def _mask_panels(samples: dict[str, dict], n_cols: int, title: str) -> list[list[np.ndarray]]:
    """Rows: each method's arg-max mask over the image, then the ground truth, on the same images."""
    ref = next(iter(samples.values()))
    n = min(n_cols, *(len(s["image"]) for s in samples.values()))
    for name, s in samples.items():
        if s["image"].shape[1:] != ref["image"].shape[1:] or not np.allclose(s["image"][:n], ref["image"][:n], atol=1e-3):
            _log(f"warning: {title}: {name} samples show other images than the first row's")
    rows = [[_overlay(s["image"][c], s["masks"][c].argmax(0)) for c in range(n)] for s in samples.values()]
    gt = [ref["true_ids"][c].astype(int) for c in range(n)]
    rows.append([_overlay(ref["image"][c], gt[c], keep=gt[c] > 0) for c in range(n)])
    return rows


def _curves_figure(logs: dict[str, pd.DataFrame], title: str):
    """One panel per logged term (all-zero terms left out), one line per run: colour = method, style = seed."""
    import matplotlib.pyplot as plt

    methods = sorted({name.split("/")[0] for name in logs})
    styles = ["-", "--", ":", "-."]

    def look(name):
        method, seed = name.split("/")
        return {"color": f"C{methods.index(method) % 10}", "linestyle": styles[int(seed.removeprefix("seed")) % 4]}

    terms = [t for t in ["loss", "recon", "cov", "var", "cos", "grad_norm", "lr"]
             if any(t in d and d[t].abs().sum() > 0 for d in logs.values())]
    cols = min(3, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows + 0.6), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        plotted = [(name, d) for name, d in logs.items() if term in d and d[term].abs().sum() > 0]
        for name, d in plotted:
            ax.plot(d["step"], d[term], linewidth=1, **look(name))
        values = pd.concat([d[term] for _, d in plotted]).dropna()
        if len(values) and (values > 0).all() and values.max() / values.min() > 20:
            ax.set_yscale("log")
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], linewidth=1, **look(name)) for name in logs]
    fig.legend(handles, list(logs), loc="lower center", ncol=min(6, len(logs)), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 * (1 + (len(logs) - 1) // 6), 1, 1))
    return fig


def _sweep_figure(sweep: pd.DataFrame):
    """FG-ARI and slot covariance vs beta (log x; symlog when beta = 0 is present), mean +- std."""
    import matplotlib.pyplot as plt

    stats = sweep.groupby("beta").agg(["mean", "std", "count"]).sort_index()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, col, label in [(axes[0], "fg_ari", "FG-ARI (%)"), (axes[1], "slot_cov", "slot covariance")]:
        mean, std = stats[(col, "mean")], stats[(col, "std")].fillna(0)
        ax.errorbar(stats.index, mean, yerr=std, marker="o", capsize=3)
        positive = stats.index[stats.index > 0]
        if (stats.index <= 0).any():
            ax.set_xscale("symlog", linthresh=positive.min() if len(positive) else 1.0)
        else:
            ax.set_xscale("log")
        if col == "slot_cov" and (mean > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel(r"covariance weight $\beta$")
        ax.set_ylabel(label)
    n = int(stats[("fg_ari", "count")].min())
    fig.suptitle(f"Bottleneck sweep on ColoredMDSprites (CovLoss), mean $\\pm$ std over seeds (n$\\geq${n})",
                 fontsize=10)
    fig.tight_layout()
    return fig


def figures(results_dir, out_dir) -> list[Path]:
    """Write every figure whose inputs exist (PNG + PDF) into `out_dir`; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType in PDFs, not Type 3
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for method in paper.TABLE1_ROWS:  # Figs 2-4 (first 3 examples) and 6-8 (more examples)
        sample = _first_sample(results_dir, "cmdsprites", method)
        for name, n_rows in [(f"recon_cmdsprites_{method}", 3), (f"recon_cmdsprites_{method}_more", 8)]:
            if sample is None:
                _drop_stale(out_dir, name, f"no results/samples/cmdsprites/{method}/seed*.npz")
                continue
            title = f"{paper.LABELS[method]} on ColoredMDSprites (seed {sample['seed']})"
            cols, panels = _recon_panels(sample, n_rows)
            fig = _grid_figure(panels, cols, [""] * len(panels), title)
            written += _save(fig, out_dir, name)
    for name, methods, n_cols in [("masks_coco", ["sa", "covloss", "cosineloss", "dinosaur"], 4),  # Fig 5
                                  ("masks_coco_more", ["sa", "covloss", "cosineloss", "dinosaur"], 8),  # Fig 9
                                  ("masks_coco_dinosaur", list(paper.TABLE3), 6)]:  # Fig 10
        samples = {paper.LABELS[m]: s for m in methods if (s := _first_sample(results_dir, "coco", m)) is not None}
        if not samples:
            _drop_stale(out_dir, name, f"no results/samples/coco/{{{','.join(methods)}}}/seed*.npz")
            continue
        missing = [m for m in methods if paper.LABELS[m] not in samples]
        if missing:
            _log(f"figure {name}: no samples for {', '.join(missing)}; rows left out")
        title = "COCO: arg-max slot over the image"
        panels = _mask_panels(samples, n_cols, title)
        fig = _grid_figure(panels, [""] * len(panels[0]), list(samples) + ["Ground truth"], title, 1.5)
        written += _save(fig, out_dir, name)
    for dataset in ["cmdsprites", "coco"]:
        logs = {}
        for path in sorted(Path(results_dir, "runs", dataset).glob("*/seed*/log.csv")):
            d = pd.read_csv(path)
            if len(d) and "step" in d:
                logs[f"{path.parent.parent.name}/{path.parent.name}"] = d
        name = f"curves_{dataset}"
        if not logs:
            _drop_stale(out_dir, name, f"no results/runs/{dataset}/*/seed*/log.csv with rows")
            continue
        written += _save(_curves_figure(logs, f"Training curves, {paper.LABELS[dataset]}"), out_dir, name)
    sweep = load_sweep(results_dir)
    if len(sweep):
        written += _save(_sweep_figure(sweep), out_dir, "sweep_beta")
    else:
        _drop_stale(out_dir, "sweep_beta", "no results/sweep/cmdsprites/covloss/beta*/seed*.json")
    _log(f"wrote {len(written)} figure files into {out_dir}")
    return written


# ----------------------------------------------------------------------------- report

FIGURES = [  # file stem, caption
    ("recon_cmdsprites_sa", "Slot Attention reconstructions on ColoredMDSprites (paper Fig. 2)."),
    ("recon_cmdsprites_covloss", "CovLoss reconstructions on ColoredMDSprites (paper Fig. 3)."),
    ("recon_cmdsprites_cosineloss", "CosineLoss reconstructions on ColoredMDSprites (paper Fig. 4)."),
    ("masks_coco", "COCO masks; top to bottom: Slot Attention, CovLoss, CosineLoss, DINOSAUR, ground truth "
                   "(paper Fig. 5)."),
    ("recon_cmdsprites_sa_more", "More Slot Attention reconstructions (paper Fig. 6)."),
    ("recon_cmdsprites_covloss_more", "More CovLoss reconstructions (paper Fig. 7)."),
    ("recon_cmdsprites_cosineloss_more", "More CosineLoss reconstructions (paper Fig. 8)."),
    ("masks_coco_more", "More COCO masks (paper Fig. 9)."),
    ("masks_coco_dinosaur", "DINOSAUR variants' masks on COCO (paper Fig. 10 and Table 3)."),
    ("curves_cmdsprites", "Training curves on ColoredMDSprites, one panel per loss term."),
    ("curves_coco", "Training curves on COCO, one panel per loss term."),
    ("sweep_beta", "Bottleneck sweep: FG-ARI and slot covariance against the covariance weight."),
]

TEMPLATE = r"""\documentclass[10pt,a4paper]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{graphicx}
\usepackage{booktabs}
\usepackage{longtable}
\usepackage[font=small]{caption}
\usepackage[hidelinks]{hyperref}
%(numbers)s
\title{slotcov: reproduction report\\\large Exploring the Role of the Bottleneck in Slot-Based Models
Through Covariance Regularization}
\date{Generated %(date)s from the files under \texttt{%(results)s}}
\begin{document}
\maketitle
Every number below is recomputed from the result files present when this report was built;
a dash marks a cell that has not run. The paper's value stands beside each reproduced value;
marks flag cells that ran in another setting than the paper's (see the notes under each table
and the provenance table at the end).

\section{Tables}
%(tables)s
%(metric_section)s
%(claims)s\clearpage
\section{Figures}
%(figures)s
\clearpage
\section{Provenance}
One row per result file: where and how each number was produced.
{\scriptsize
\setlength{\tabcolsep}{3pt}
\begin{longtable}{@{}llllllp{3.8cm}r@{}}
\toprule
Cell & Seed & Commit & Preset & Protocol & Data / encoder & Device & Wall (s) \\
\midrule
\endhead
%(provenance)s
\bottomrule
\end{longtable}
}
\end{document}
"""


PROVENANCE_HEADER = ["Cell", "Seed", "Commit", "Preset", "Protocol", "Data / encoder", "Device", "Wall (s)"]


def provenance_table(results_dir) -> list[list[str]]:
    """One row (PROVENANCE_HEADER) per metrics and probing file: where and how its number was produced."""
    rows = []
    for kind in ["metrics", "probe"]:
        df = load_results(results_dir, kind)
        for _, r in (df.sort_values(["dataset", "method", "seed"]).iterrows() if len(df) else []):
            def get(key, _r=r):
                v = _r.get(f"prov_{key}")
                return "--" if v is None or pd.isna(v) or v == "" else str(v)
            wall = get("wall_time_s")
            try:
                wall = f"{float(wall):.0f}"
            except ValueError:
                pass
            cell = f"{r['dataset']}/{r['method']}" + (" (probe)" if kind == "probe" else "")
            rows.append([cell, str(r["seed"]), get("git_commit")[:8], get("preset"), get("protocol"),
                         f"{get('dataset_kind')} / {get('encoder_weights')}", get("device"), wall])
    return rows


def _provenance_rows(results_dir: Path) -> str:
    rows = [" & ".join(_tex_escape(f) for f in fields) + r" \\" for fields in provenance_table(results_dir)]
    return "\n".join(rows) if rows else r"\multicolumn{8}{c}{no result files} \\"


def metric_section(results_dir) -> str:
    """LaTeX: per COCO cell and pipeline, how far the paper authors' FG-ARI code moves the score (seed means)."""
    df = load_results(results_dir, "metrics")
    keys = ["fg_ari", "fg_ari_authors", "fg_ari_metric_frac_differ", "fg_ari_metric_mean_diff"]
    coco = df[df["dataset"] == "coco"] if len(df) else df
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
    intro = ("The paper's COCO numbers came from the authors' FG-ARI code, which works on one evaluation batch "
             "at a time: unless some image of the batch has a zero denominator, it scores every image whose "
             "foreground is a single object 1.0, whatever the prediction. Every COCO metrics file here carries "
             "both that score (\\texttt{fg\\_ari\\_authors}, consecutive batches of 64 in file order; the authors' "
             "loader shuffled, so their batches, and scores, varied) and the correct one (\\texttt{fg\\_ari}).")
    if not rows:
        return f"\\subsection*{{How much the FG-ARI implementation moves COCO numbers}}\n{intro}\n\nNo COCO metrics file with both scores yet.\n"
    summary = (f" In this run, {100 * min(fracs):.1f}\\% to {100 * max(fracs):.1f}\\% of the evaluation images "
               "score differently under the two implementations, depending on cell and pipeline.")
    return ("\\subsection*{How much the FG-ARI implementation moves COCO numbers}\n" + intro + summary + "\n"
            "\\begin{table}[htbp]\n\\centering\\small\n\\begin{tabular}{llrrrrr}\n\\toprule\n"
            "Cell & pipeline & seeds & FG-ARI & authors' FG-ARI & images differing (\\%) & mean diff. (points) \\\\\n"
            "\\midrule\n" + "\n".join(rows) + "\n\\bottomrule\n\\end{tabular}\n"
            "\\caption{Per COCO cell and pipeline (means over seeds): the correct FG-ARI, the authors' FG-ARI, the "
            "share of images whose score differs and the mean per-image difference (authors minus correct).}\n"
            "\\end{table}\n")


def claims_file(claims_dir, name: str) -> Path | None:
    """DIR/<name> of the claims ledger (None without --claims); a missing file is the user's to fix."""
    if claims_dir is None:
        return None
    path = Path(claims_dir, name)
    if not path.exists():
        raise UserError(f"{path} is missing; build the claims ledger into {claims_dir} first, or leave out --claims")
    return path


def render_report(tables_dir, figures_dir, results_dir, claims_dir=None) -> str:
    """The report's LaTeX source; figures are referenced as figures/<name>.pdf, claims from DIR/claims.tex."""
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    parts = []
    for name in ["table1", "table2", "table3"]:
        path = tables_dir / f"{name}.tex"
        if not path.exists():
            raise UserError(f"{path} is missing; run `slotcov tables --out {tables_dir}` first")
        parts.append(path.read_text())
    figs = []
    for stem, caption in FIGURES:
        if (figures_dir / f"{stem}.pdf").exists():
            figs.append(f"\\begin{{figure}}[htbp]\n\\centering\n\\includegraphics[width=\\linewidth,"
                        f"height=0.8\\textheight,keepaspectratio]{{figures/{stem}.pdf}}\n"
                        f"\\caption{{{caption}}}\n\\end{{figure}}\n")
    if not figs:
        figs = ["No figure inputs were found (run \\texttt{slotcov figures})."]
    claims = claims_file(claims_dir, "claims.tex")
    numbers = tables_dir.parent / "numbers.tex"
    return TEMPLATE % {
        "numbers": numbers.read_text() if numbers.exists() else "",
        "date": time.strftime("%Y-%m-%d %H:%M"), "results": _tex_escape(str(results_dir)),
        "tables": "\n".join(parts), "figures": "\n".join(figs), "metric_section": metric_section(results_dir),
        "claims": f"\\clearpage\n\\section{{Claims}}\n{claims.read_text()}\n" if claims else "",
        "provenance": _provenance_rows(Path(results_dir)),
    }


def report(tables_dir, figures_dir, results_dir, out_pdf, claims_dir=None) -> Path:
    """Write <out_pdf>.tex beside the PDF, then compile it with pdflatex (twice) in a temporary folder.

    Without pdflatex on PATH, or when it lacks a package the report uses, the PDF is drawn with
    matplotlib instead (slotcov.report_pdf): the same tables, claims, figures and provenance,
    saying on its first page why. Any other pdflatex failure is an error.
    """
    out_pdf = Path(out_pdf)
    source = render_report(tables_dir, figures_dir, results_dir, claims_dir)
    tex_path = out_pdf.with_suffix(".tex")
    write_text(tex_path, source)
    _log(f"wrote {tex_path}")
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        from slotcov import report_pdf

        _log(f"pdflatex not found: drawing {out_pdf} with matplotlib instead; {INSTALL_HINT}")
        return report_pdf.build(tables_dir, figures_dir, results_dir, out_pdf, claims_dir)
    with tempfile.TemporaryDirectory(prefix="slotcov-report-") as tmp:
        tmp = Path(tmp)
        (tmp / "report.tex").write_text(source)
        if Path(figures_dir).is_dir():
            shutil.copytree(figures_dir, tmp / "figures")
        for _ in range(2):
            proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                                  cwd=tmp, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                log = out_pdf.with_suffix(".log")
                write_text(log, proc.stdout)
                missing = re.findall(r"! LaTeX Error: File `([^']+)' not found", proc.stdout)
                if missing:  # an incomplete TeX installation, not an error in the report
                    from slotcov import report_pdf

                    _log(f"pdflatex lacks {missing[0]} (log: {log}): drawing {out_pdf} with matplotlib; {INSTALL_HINT}")
                    return report_pdf.build(tables_dir, figures_dir, results_dir, out_pdf, claims_dir,
                                            reason=f"pdflatex lacks {missing[0]}")
                tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
                raise UserError(f"pdflatex failed on {tex_path} (full log: {log}):\n{tail}")
        with atomic_path(out_pdf, suffix=".pdf") as dst:
            shutil.copyfile(tmp / "report.pdf", dst)
    _log(f"wrote {out_pdf}")
    return out_pdf


# ----------------------------------------------------------------------------- CLI

def cli_tables(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="slotcov tables", description="Tables 1-3 (LaTeX + CSV) and numbers.tex "
                                "from the metrics and probing files.")
    p.add_argument("--results", default="results", help="results folder (metrics/, probe/)")
    p.add_argument("--out", default="reports/tables", help="folder for table{1,2,3}.tex/.csv")
    p.add_argument("--numbers", help="\\newcommand file of every number (default: OUT/../numbers.tex)")
    args = p.parse_args(argv)
    tables(args.results, args.out, args.numbers)
    return 0


def cli_figures(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="slotcov figures", description="The paper's figures (PNG + PDF) from the "
                                "evaluation samples, training logs and the bottleneck sweep.")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="reports/figures")
    args = p.parse_args(argv)
    figures(args.results, args.out)
    return 0


def cli_report(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="slotcov report", description="Compile the tables, claims, figures and "
                                "provenance into one PDF with pdflatex (the .tex is written beside it); "
                                "without pdflatex, the same content drawn with matplotlib.")
    p.add_argument("--tables", default="reports/tables")
    p.add_argument("--figures", default="reports/figures")
    p.add_argument("--results", default="results")
    p.add_argument("--claims", metavar="DIR", help="claims ledger folder (claims.csv, claims.tex) to include")
    p.add_argument("--out", default="reports/report.pdf")
    args = p.parse_args(argv)
    report(args.tables, args.figures, args.results, args.out, args.claims)
    return 0
