"""The paper's figures from the evaluation samples, training logs and the bottleneck sweep, and the stripe
score of every cell from its metrics files.

Image mosaics are laid out by torchvision.utils.make_grid, plots drawn with matplotlib; each
figure is written as PNG and PDF, and a figure whose inputs are gone is deleted, not kept stale.

    slotcov figures --results results --out reports/figures
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from slotcov import paper
from slotcov.cells import CURVES, DATASETS
from slotcov.errors import UserError
from slotcov.evaluate.metrics import stripe_score
from slotcov.io import atomic_path
from slotcov.report.results import cli_parser, first_sample, load_logs, load_results, load_sweep, log

FIGURES = [  # file stem, caption (the report's order)
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
    ("stripe_scores", "Stripe score per cell: the area-weighted mean elongation of the arg-max slot masks "
                      "(1 = compact masks; vertical stripes spanning the image score height / width); one dot "
                      "per seed, bars the mean."),
]
GAP = 0.7  # grey between mosaic panels


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write `fig` as out_dir/name.png and .pdf (each atomically), close it, return the paths."""
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
    log(f"skipping figure {name}: {why}")
    for ext in ("png", "pdf"):
        (out_dir / f"{name}.{ext}").unlink(missing_ok=True)


# ----------------------------------------------------------------------------- image panels

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


def _mask_panels(samples: dict[str, dict], n_cols: int, title: str) -> tuple[list[list], list[list[str]]]:
    """Rows: each method's arg-max mask over the image, then the ground truth, on the same images; and the
    stripe score of each method panel's mask (metrics.stripe_score; "" for the ground truth)."""
    ref = next(iter(samples.values()))
    n = min(n_cols, *(len(s["image"]) for s in samples.values()))
    for name, s in samples.items():
        if s["image"].shape[1:] != ref["image"].shape[1:] or not np.allclose(s["image"][:n], ref["image"][:n], atol=1e-3):
            log(f"warning: {title}: {name} samples show other images than the first row's")
    rows = [[_overlay(s["image"][c], s["masks"][c].argmax(0)) for c in range(n)] for s in samples.values()]
    notes = [[f"{v:.2f}" for v in stripe_score(s["masks"][:n].argmax(1))] for s in samples.values()]
    gt = [ref["true_ids"][c].astype(int) for c in range(n)]
    rows.append([_overlay(ref["image"][c], gt[c], keep=gt[c] > 0) for c in range(n)])
    return rows, notes + [[""] * n]


def mosaic(panels: list[list[np.ndarray]]) -> tuple[np.ndarray, int]:
    """Equally sized [H, W, 3] panels (rows x cols) as one image with grey gaps, and the gap width.

    torchvision's make_grid lays the panels out; its outer border is cut off, so gaps are only between panels.
    """
    import torch
    from torchvision.utils import make_grid

    h, n_cols = panels[0][0].shape[0], len(panels[0])
    pad = max(1, h // 32)
    batch = torch.from_numpy(np.stack([p for row in panels for p in row])).permute(0, 3, 1, 2)
    grid = make_grid(batch, nrow=n_cols, padding=pad, pad_value=GAP)
    return grid[:, pad:-pad, pad:-pad].permute(1, 2, 0).numpy(), pad


def _grid_figure(panels: list[list[np.ndarray]], col_labels: list[str], row_labels: list[str], title: str,
                 cell_inches: float = 1.1, notes: list[list[str]] | None = None):
    """The panels as one labelled mosaic (mosaic()): one axes, so it draws fast; `notes`: a short text in the
    top-left corner of each panel."""
    import matplotlib.pyplot as plt

    h, w = panels[0][0].shape[:2]
    n_rows, n_cols = len(panels), len(panels[0])
    image, pad = mosaic(panels)
    fig, ax = plt.subplots(figsize=(cell_inches * n_cols + 1.0, cell_inches * n_rows * h / w + 0.6))
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([c * (w + pad) + w / 2 for c in range(n_cols)], col_labels, fontsize=8)
    ax.set_yticks([r * (h + pad) + h / 2 for r in range(n_rows)], row_labels, fontsize=8)
    for r, row in enumerate(notes or []):
        for c, note in enumerate(row):
            if note:
                ax.text(c * (w + pad) + 0.03 * w, r * (h + pad) + 0.04 * h, note, fontsize=6, va="top", ha="left",
                        bbox={"boxstyle": "square,pad=0.15", "facecolor": "white", "alpha": 0.8, "linewidth": 0})
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- plots

def _curves_figure(logs: dict[str, pd.DataFrame], title: str):
    """One panel per logged term (all-zero terms left out), one line per run: colour = method, style = seed
    (and COCO pipeline, for runs trained under another than the primary: "seed0-dinosaur")."""
    import matplotlib.pyplot as plt

    methods = sorted({name.split("/")[0] for name in logs})
    runs = sorted({name.split("/")[1] for name in logs})
    styles = ["-", "--", ":", "-."]

    def look(name):
        method, run = name.split("/")
        return {"color": f"C{methods.index(method) % 10}", "linestyle": styles[runs.index(run) % 4]}

    terms = [t for t in CURVES
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


def _stripe_figure(metrics: pd.DataFrame):
    """Stripe score per cell, one panel per dataset (COCO: the primary pipeline's): seeds as dots, the mean as a bar."""
    import matplotlib.pyplot as plt

    order = list(paper.LABELS)
    datasets = [d for d in ("cmdsprites", "coco") if d in set(metrics["dataset"])]
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(6.5, 4.6 * len(datasets)), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        d = metrics[metrics["dataset"] == dataset]
        methods = sorted(set(d["method"]), key=lambda m: (order.index(m) if m in order else len(order), m))
        for i, method in enumerate(methods):
            values = d.loc[d["method"] == method, "stripe"]
            colour = f"C{(order.index(method) if method in order else 0) % 10}"  # a method's colour in every panel
            ax.bar(i, values.mean(), color=colour, alpha=0.35, width=0.7)
            ax.plot(np.full(len(values), i), values, "o", color=colour, markersize=3)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(methods)), [paper.LABELS.get(m, m) for m in methods], rotation=35, ha="right",
                      fontsize=7)
        pipelines = d["pipeline"].dropna().unique() if "pipeline" in d else []
        ax.set_title(paper.LABELS[dataset] + (f" ({pipelines[0]} pipeline)" if len(pipelines) == 1 else ""), fontsize=9)
        ax.set_ylabel("stripe score", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Stripe score of the arg-max masks (1 = compact; higher = more stripe-like)", fontsize=10)
    fig.tight_layout()
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


# ----------------------------------------------------------------------------- files

MASKS = {  # mask figure -> the COCO methods of its rows, the images shown
    "masks_coco": (["sa", "covloss", "cosineloss", "dinosaur"], 4),  # Fig. 5
    "masks_coco_more": (["sa", "covloss", "cosineloss", "dinosaur"], 8),  # Fig. 9
    "masks_coco_dinosaur": (list(paper.TABLE3), 6),  # Fig. 10
}


def _recon(results_dir: Path, method: str, n_rows: int):
    """Figs 2-4 (first 3 examples) and 6-8 (more): a ColoredMDSprites cell's reconstructions, or why not."""
    sample = first_sample(results_dir, "cmdsprites", method)
    if sample is None:
        return None, f"no results/samples/cmdsprites/{method}/seed*.npz of a finished run"
    title = f"{paper.LABELS.get(method, method)} on ColoredMDSprites (seed {sample['seed']})"
    cols, panels = _recon_panels(sample, n_rows)
    return _grid_figure(panels, cols, [""] * len(panels), title), ""


def _masks(results_dir: Path, name: str):
    """Figs 5, 9 and 10: COCO arg-max masks, one row per method, ground truth last; or why not."""
    methods, n_cols = MASKS[name]
    samples = {paper.LABELS[m]: s for m in methods if (s := first_sample(results_dir, "coco", m)) is not None}
    if not samples:
        return None, f"no results/samples/coco/{{{','.join(methods)}}}/seed*.npz of a finished run"
    missing = [m for m in methods if paper.LABELS[m] not in samples]
    if missing:
        log(f"figure {name}: no samples for {', '.join(missing)}; rows left out")
    title = "COCO: arg-max slot over the image (corner: the image's stripe score)"
    panels, notes = _mask_panels(samples, n_cols, title)
    return _grid_figure(panels, [""] * len(panels[0]), list(samples) + ["Ground truth"], title, 1.5, notes), ""


def _curves(results_dir: Path, dataset: str):
    logs = load_logs(results_dir, dataset)
    if not logs:
        return None, f"no results/runs/{dataset}/*/seed*/log.csv with rows"
    return _curves_figure(logs, f"Training curves, {paper.LABELS.get(dataset, dataset)}"), ""


def _sweep(results_dir: Path):
    sweep = load_sweep(results_dir)
    if not len(sweep):
        return None, "no results/sweep/cmdsprites/covloss/beta*/seed*.json"
    return _sweep_figure(sweep), ""


def _stripes(results_dir: Path):
    metrics = load_results(results_dir)
    metrics = metrics[metrics["stripe"].notna()] if "stripe" in metrics else metrics.iloc[:0]
    if not len(metrics):
        return None, "no results/metrics/*/*/seed*.json with a stripe score"
    return _stripe_figure(metrics), ""


def draw(name: str, results_dir: Path):
    """(figure, "") for the figure `name` of FIGURES, or (None, why) when its inputs are missing."""
    for method in paper.TABLE1_ROWS:
        if name in (f"recon_cmdsprites_{method}", f"recon_cmdsprites_{method}_more"):
            return _recon(results_dir, method, 8 if name.endswith("_more") else 3)
    if name in MASKS:
        return _masks(results_dir, name)
    if name.removeprefix("curves_") in DATASETS:
        return _curves(results_dir, name.removeprefix("curves_"))
    if name == "sweep_beta":
        return _sweep(results_dir)
    if name == "stripe_scores":
        return _stripes(results_dir)
    raise UserError(f"no figure {name}; the figures are {', '.join(stem for stem, _ in FIGURES)}")


def _notice(name: str, why: str):
    """A figure that says it could not be drawn, and why (a figure the workflow asks for by name)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 1.6))
    fig.text(0.5, 0.5, f"{name}: not drawn\n{why}", ha="center", va="center", fontsize=10, wrap=True)
    return fig


def figures(results_dir, out_dir, only=None) -> list[Path]:
    """Write the figures (PNG + PDF) into `out_dir`; return the paths written.

    Every figure of FIGURES whose inputs exist; one whose inputs are gone is deleted, not kept stale.
    `only`: just the figures named, each written either way: a figure without its inputs (a cell whose
    seeds all diverged, or one the preset does not run) becomes a page saying what is missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType in PDFs, not Type 3
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in [stem for stem, _ in FIGURES] if only is None else only:
        fig, why = draw(name, results_dir)
        if fig is None and only is None:
            _drop_stale(out_dir, name, why)
            continue
        if fig is None:
            log(f"figure {name}: {why}; written as a notice")
            fig = _notice(name, why)
        written += _save(fig, out_dir, name)
    log(f"wrote {len(written)} figure files into {out_dir}")
    return written


def cli_figures(argv: list[str]) -> int:
    p = cli_parser("figures", "The paper's figures (PNG + PDF) from the evaluation samples, training logs, the "
                   "bottleneck sweep and the metrics files.", "samples/, runs/, sweep/, metrics/", "reports/figures",
                   "folder for <figure>.png/.pdf")
    p.add_argument("--only", nargs="+", metavar="FIGURE", help="write only these figures, each either way: "
                   "one without its inputs says what is missing (default: every figure whose inputs exist)")
    args = p.parse_args(argv)
    figures(args.results, args.out, args.only)
    return 0
