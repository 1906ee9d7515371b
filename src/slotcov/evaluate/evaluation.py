"""Evaluation of a trained cell: FG-ARI, mBO and reconstruction MSE on the evaluation split.

Predicted masks are resized to the ground-truth resolution (bilinear, as in DINOSAUR's
evaluation, or nearest, as in the paper authors' DINOSAUR evaluation) and arg-maxed over slots.
Writes a metrics JSON (the result numbers of METRIC_KEYS: what DVC shows), a details JSON
(--details: every other number), a provenance JSON (--provenance: results/provenance/..., where
DVC does not read it as metrics) and a samples NPZ for the figures. The run is read through its
record run.json: a run trained with other settings than the config gives is refused; a run that
diverged gets `{"diverged": 1, "diverged_step": N}` and a samples NPZ holding only the flag
`diverged` (figures skip it); a finished run's metrics carry `"diverged": 0`. Provenance names the
scored run (`run_id`, its training inputs' digests).

COCO (docs/fidelity.md "COCO pipelines and FG-ARI"): each `--pipeline NAME DATA FEATURES` is
scored with the model trained under that pipeline (`--run` for the primary, `--pipeline-run NAME
RUN` for the others; a run trained under another pipeline is refused), block masks under every
pipeline given. The metrics JSON holds the primary pipeline's numbers; the details JSON holds
`"pipeline": <primary>` and `"pipelines": {name: numbers of the model trained and scored under
name}`. COCO numbers also carry `fg_ari_authors`, the paper authors' batch FG-ARI over consecutive
batches of AUTHORS_BATCH images in file order, and how far it moves each image's score.
`slot_cov` is the covariance loss (squared off-diagonal covariance / D^2) of the raw slots of every
evaluation image: how much the slot dimensions co-vary, the quantity the bottleneck sweep plots
against beta. `stripe` is the mean over images of `metrics.stripe_score`
of the arg-max masks FG-ARI scores (1 = compact masks). A numeric `--set KEY=VALUE` (the sweep's
`reg.cov_weight`) is recorded in the metrics file under KEY.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from slotcov.train import identity
from slotcov.io import atomic_path, write_json
from slotcov.train.losses import covariance_loss
from slotcov.errors import UserError
from slotcov.evaluate.metrics import (block_masks, contingency, fg_ari, fg_ari_authors_batched, fg_ari_authors_parts,
                             float32_branch_changes, mbo, metric_difference, pair_counts, stripe_score, summarize)

AUTHORS_BATCH = 64  # the paper's evaluation batch; fixed, whatever eval.batch_size is
UPSAMPLE = ("bilinear", "nearest")


def masks_to_ids(masks: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Alpha masks [B,K,h,w] or [B,K,N] (N a square number of tokens) -> arg-max slot ids [B,*size]."""
    if masks.dim() == 3:
        side = int(round(masks.shape[-1] ** 0.5))
        masks = masks.reshape(*masks.shape[:2], side, side)
    if tuple(masks.shape[-2:]) != tuple(size):
        extra = {"align_corners": False} if mode == "bilinear" else {}
        masks = F.interpolate(masks.float(), size=size, mode=mode, **extra)
    return masks.argmax(dim=1)


def _score_ari(true_ids, pred, aris: list, authors_parts: list | None) -> None:
    """Append one batch's FG-ARI (and the authors' per-image parts), counting its pixels once."""
    table = contingency(true_ids, pred)
    aris.append(fg_ari(true_ids, pred, pair_counts(true_ids, pred, table)))
    if authors_parts is not None:
        authors_parts.append(fg_ari_authors_parts(true_ids, pred, table))


def _ari_metrics(aris: list, authors_parts: list | None) -> dict:
    """fg_ari (+ counts) and, given the authors' per-image parts, fg_ari_authors, the per-image difference
    and how many of its batches the float32 zero test sent down another rule (of how many)."""
    scores = torch.cat(aris)
    ari = summarize(scores)
    out = {"fg_ari": ari["mean"], "fg_ari_n": ari["n"], "fg_ari_skipped": ari["skipped"]}
    if authors_parts is not None:
        theirs = fg_ari_authors_batched(authors_parts, AUTHORS_BATCH)
        a, diff = summarize(theirs), metric_difference(scores, theirs)
        out.update(fg_ari_authors=a["mean"], fg_ari_authors_n=a["n"], fg_ari_authors_skipped=a["skipped"],
                   fg_ari_metric_frac_differ=diff["frac_differ"], fg_ari_metric_mean_diff=diff["mean_diff"],
                   fg_ari_authors_batches=-(-len(theirs) // AUTHORS_BATCH),
                   fg_ari_authors_float32_batches=float32_branch_changes(authors_parts, AUTHORS_BATCH))
    return out


@torch.no_grad()
def evaluate_model(model, dataset, batch_size: int = 64, n_samples: int = 8, device: str = "cpu",
                   seed: int = 0, progress: bool = True, upsample: str = "bilinear",
                   authors_metric: bool = False) -> tuple[dict, dict]:
    """Metrics over the whole `dataset` and the first `n_samples` images for figures.

    `upsample` resizes predicted masks to the targets; `authors_metric` adds fg_ari_authors (COCO).
    """
    torch.manual_seed(seed)  # slot initialisation noise
    n = len(dataset)
    aris, mbos, stripes, slots, sq_err, count = [], [], [], [], 0.0, 0
    parts = [] if authors_metric else None
    samples: dict[str, list] = {"image": [], "recon": [], "masks": [], "true_ids": []}
    for start in tqdm(range(0, n, batch_size), desc="evaluate", disable=not progress):
        batch = {k: v.to(device) for k, v in dataset.batch(np.arange(start, min(n, start + batch_size))).items()}
        out = model(batch)
        true_ids = batch["true_ids"]
        pred = masks_to_ids(out["masks"], true_ids.shape[-2:], upsample).cpu()
        _score_ari(true_ids.cpu(), pred, aris, parts)
        mbos.append(mbo(true_ids.cpu(), pred.cpu(), batch["valid"].cpu() if "valid" in batch else None))
        stripes.append(stripe_score(pred))
        slots.append(out["slots"].float().flatten(0, 1).cpu())
        sq_err += F.mse_loss(out["recon"].float(), out["target"].float(), reduction="sum").item()
        count += out["target"].numel()
        if sum(len(s) for s in samples["image"]) < n_samples:
            take = n_samples - sum(len(s) for s in samples["image"])
            img = batch["image"][:take]
            samples["image"].append(img.permute(0, 2, 3, 1).cpu().numpy())
            if out["recon"].dim() == 4:
                samples["recon"].append(out["recon"][:take].clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())
            m = out["masks"][:take]
            if m.dim() == 3:
                side = int(round(m.shape[-1] ** 0.5))
                m = m.reshape(*m.shape[:2], side, side)
            samples["masks"].append(F.interpolate(m.float(), size=img.shape[-2:], mode="bilinear",
                                                  align_corners=False).cpu().numpy())
            samples["true_ids"].append(true_ids[:take].cpu().numpy())
    metrics = {**_ari_metrics(aris, parts), "mbo": summarize(torch.cat(mbos))["mean"],
               "stripe": float(torch.cat(stripes).mean()), "mse": sq_err / max(count, 1),
               "slot_cov": float(covariance_loss(torch.cat(slots).double(), "d2"))}
    return metrics, {k: np.concatenate(v) for k, v in samples.items() if v}


def evaluate_blockmasks(dataset, num_blocks: int, batch_size: int = 64, authors_metric: bool = False) -> dict:
    """FG-ARI and mBO of DINOSAUR's block-masks baseline on `dataset` (+ fg_ari_authors if asked)."""
    aris, mbos, stripes, parts = [], [], [], ([] if authors_metric else None)
    for start in range(0, len(dataset), batch_size):
        true_ids = dataset.batch(np.arange(start, min(len(dataset), start + batch_size)))["true_ids"]
        pred = block_masks(*true_ids.shape[-2:], num_blocks).expand_as(true_ids)
        _score_ari(true_ids, pred, aris, parts)
        mbos.append(mbo(true_ids, pred))
        stripes.append(stripe_score(pred))
    return {**_ari_metrics(aris, parts), "mbo": summarize(torch.cat(mbos))["mean"],
            "stripe": float(torch.cat(stripes).mean())}


def _git(*args: str) -> str | None:
    """The output of a git command in the working directory, or None (no git, not a repository)."""
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10).stdout
    except Exception:
        return None


def _git_commit() -> str:
    return (_git("rev-parse", "HEAD") or "unknown").strip()


DIRTY_PATHS_SHOWN = 20  # of `git status --porcelain`; the rest is counted


def _git_dirty() -> dict:
    """Whether the working tree differs from the commit (changed, staged or untracked files) and which paths."""
    status = _git("status", "--porcelain")
    if status is None:
        return {"dirty": "unknown", "dirty_paths": ""}
    paths = [line[3:] for line in status.splitlines() if line.strip()]
    shown = ", ".join(paths[:DIRTY_PATHS_SHOWN])
    more = len(paths) - DIRTY_PATHS_SHOWN
    return {"dirty": bool(paths), "dirty_paths": shown + (f" (+{more} more)" if more > 0 else "")}


def _store_settings(manifest: dict) -> list[str]:
    """A feature store's settings away from the paper's (the authors' float32 tokens), as `non_paper` entries."""
    dtype = manifest.get("dtype", "float32")
    return [] if dtype == "float32" else [f"data.features.dtype={dtype}"]


def _train_pipeline(config: dict, dataset: str) -> str:
    """The pipeline a trained cell's data came from, as the config says (COCO cells train on
    data.coco.primary); the run record's inputs, when they name one, replace it (identity.provenance_fields)."""
    return config["data"]["coco"]["primary"] if dataset == "coco" else dataset


def provenance(config: dict, cell: str, cfg: dict | None, run_dir: Path | None, data_dir: Path,
               features_dir: Path | None, device: str) -> dict:
    """Strings that say where a number came from (kept out of the metrics file)."""
    import timm

    from slotcov import __version__
    from slotcov.cells import non_paper_settings
    from slotcov.config import config_hash

    dataset = cell.split("/")[0]
    meta = json.loads((data_dir / "meta.json").read_text()) if (data_dir / "meta.json").exists() else {}
    source = config["data"][dataset]["source"]
    kind = {"replica": "replica", "synthetic": "synthetic-coco"}.get(source, "real")
    manifest = {}
    if features_dir is not None and (features_dir / "manifest.json").exists():
        manifest = json.loads((features_dir / "manifest.json").read_text())
    weights = manifest.get("weights", "unknown") if manifest else "none"
    wall = ""
    if run_dir is not None and (run_dir / "log.csv").exists():
        lines = (run_dir / "log.csv").read_text().strip().splitlines()
        wall = lines[-1].split(",")[-1] if len(lines) > 1 else ""
    dev = torch.device(device)
    return {
        "cell": cell, "preset": config["preset"], "git_commit": _git_commit(), **_git_dirty(),
        "config_hash": config_hash(cfg) if cfg else "", "pipeline": meta.get("pipeline") or dataset,
        "train_pipeline": _train_pipeline(config, dataset) if cfg else "",
        "non_paper": "; ".join(non_paper_settings(cfg, cell) + _store_settings(manifest)) if cfg else "",
        "dataset_kind": kind, "encoder_weights": "random" if "random" in str(weights) else
        ("dino" if weights not in ("none", "unknown") else weights),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""), "wall_time_s": wall,
        "versions": f"slotcov {__version__}, torch {torch.__version__}, timm {timm.__version__}, "
                    f"numpy {np.__version__}, python {platform.python_version()}",
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _coco_pipeline(config: dict, name: str) -> dict:
    """The settings of one COCO pipeline from the config, or a one-line error."""
    pipelines = config["data"]["coco"]["pipelines"]
    if name not in pipelines:
        raise UserError(f"COCO pipeline '{name}' is not in data.coco.pipelines ({', '.join(pipelines)}); "
                        "pass one of those to --pipeline")
    return pipelines[name]


def _check_scored_on(name: str, data: Path) -> None:
    """A metrics section is named after the pipeline its split was prepared for (meta.json), never another."""
    meta = json.loads((data / "meta.json").read_text()) if (data / "meta.json").exists() else {}
    if meta.get("pipeline") and meta["pipeline"] != name:
        raise UserError(f"--pipeline {name} {data}: that split was prepared for the pipeline '{meta['pipeline']}'; "
                        f"pass data/coco/eval-{name} (and its features) for {name}")


def scored_run(config: dict, source: str, cell: str, run_dir, seed: int, sets: list[str]) -> tuple[dict, dict]:
    """The run record of `run_dir` and the cell settings `config` resolves for it (seed, --set), checked equal.

    A run trained with other settings than these is refused in one line: its numbers would be
    reported under settings it did not have.
    """
    from slotcov import config as C
    from slotcov.train.checkpoint import read_record
    from slotcov.config import config_hash

    record = read_record(run_dir)
    overrides = C.deep_merge(C.parse_set(sets), {"train": {"seed": seed}})
    C.check_override(overrides, "--set/--seed")
    cfg = C.resolve_cell(config, cell, overrides)
    if record.get("config_hash") != config_hash(cfg):
        raise UserError(f"{run_dir}: trained with other settings than {source} gives {cell} seed {seed} (config hash "
                        f"{record.get('config_hash')} != {config_hash(cfg)}); train it again with these, or pass the "
                        "config, --seed and --set it was trained with")
    return record, cfg


def set_numbers(sets: list[str]) -> dict[str, float]:
    """The numbers among `--set KEY.PATH=VALUE` settings, by key path (`{"reg.cov_weight": 0.1}`): a sweep's axis
    recorded beside the numbers it produced, so readers take it from the file, not from its folder's name."""
    from slotcov.config import parse_value

    out = {}
    for item in sets:
        key, _, value = item.partition("=")
        number = parse_value(value, f"--set {key}")
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            out[key] = number
    return out


def diverged_result(record: dict) -> dict:
    """The metrics or probe JSON of a run that diverged: no numbers, where it stopped."""
    return {"diverged": 1, "diverged_step": record["step"]}


# What a metrics file holds: the result numbers `dvc metrics show` lists, the same few keys for every
# cell. Everything else an evaluation computes (image counts, the authors' FG-ARI and how far it moves
# the score, the primary pipeline's name, every pipeline's section) goes to the details file.
METRIC_KEYS = ("fg_ari", "mbo", "mse", "slot_cov", "stripe", "diverged", "diverged_step")


def write_result(result: dict, out, details, keys=METRIC_KEYS) -> dict:
    """Write `result` as a metrics file (its `keys`) and a details file (the rest); return the metrics."""
    metrics = {k: v for k, v in result.items() if k in keys}
    write_json(details, {k: v for k, v in result.items() if k not in keys})
    write_json(out, metrics)
    return metrics


def _check_trained_on(name: str, run_dir, record: dict) -> None:
    """A model is scored under a COCO pipeline only if its run record says it was trained under that one."""
    trained = identity.provenance_fields(record).get("train_pipeline")
    if trained and trained != name:
        raise UserError(f"{run_dir} was trained under the pipeline '{trained}', not '{name}': a model is scored "
                        f"only on the pipeline it was trained under; pass the run trained under '{name}'")


def _run_dirs(args, runs: dict, primary: str) -> dict:
    """Pipeline name -> the run folder of the model scored under it (`--run` for the primary)."""
    if not args.run:
        raise UserError(f"--run is required for {args.cell}")
    under = {name: path for name, path in args.pipeline_run}
    for name in under:
        if name not in runs or name == primary:
            raise UserError(f"--pipeline-run {name}: name a --pipeline other than the primary ({primary}); "
                            "the primary's model is --run")
    for name in runs:
        if name not in under and name != primary:
            raise UserError(f"{args.cell}: no model trained under the pipeline '{name}'; pass --pipeline-run {name} "
                            f"RUN (a run trained on its features) or leave out --pipeline {name}")
    return {primary: args.run, **under}


def _pipelines_note(runs: dict, records: dict) -> str:
    """Provenance: the pipeline each section was scored on and the one its model was trained on."""
    def trained(name):
        record = records.get(name)
        if record is None:
            return "not trained"
        pipeline = identity.provenance_fields(record).get("train_pipeline", "unrecorded")
        return f"trained on {pipeline} (run {record['run_id']})"
    return "; ".join(f"{name}: scored on {name}, {trained(name)}" for name in runs)


def add_result_args(p, kind: str, out: str, details: str) -> None:
    """The arguments evaluate and probe share: where the numbers, their details and provenance go, and
    the device, seed and --set of the scored run."""
    p.add_argument("--out", required=True, help=f"{kind} JSON: {out} (the DVC metrics)")
    p.add_argument("--details", required=True, metavar="PATH",
                   help=f"details JSON ({details}), e.g. results/details/{kind}/...")
    p.add_argument("--provenance", required=True, metavar="PATH",
                   help=f"provenance JSON (commit, versions, device, times), e.g. results/provenance/{kind}/...")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0, help="the seed the run was trained with (as slotcov train)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a cell setting the run was trained with, as slotcov train's --set (repeatable)")


def cli_evaluate(argv: list[str]) -> int:
    import argparse

    from slotcov import config as C
    from slotcov.cells import EVAL_ONLY, PAPER_CELLS
    from slotcov.data import open_dataset
    from slotcov.io import resolve_device
    from slotcov.train.loop import load_trained

    p = argparse.ArgumentParser(prog="slotcov evaluate",
                                description="Evaluate a trained cell (or the block-masks baseline) on a split.")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--cell", required=True, help="DATASET/METHOD; coco/blockmasks needs no --run")
    p.add_argument("--run", help="run folder (run.json; model.pt when the run finished); COCO: the model trained "
                                 "under the primary pipeline")
    p.add_argument("--data", help="prepared evaluation split (ColoredMDSprites)")
    p.add_argument("--pipeline", nargs=3, action="append", metavar=("NAME", "DATA", "FEATURES"), default=[],
                   help="COCO: a pipeline of data.coco.pipelines, its prepared split and feature store (repeatable)")
    p.add_argument("--pipeline-run", nargs=2, action="append", metavar=("NAME", "RUN"), default=[],
                   help="COCO: the run folder of the model trained under pipeline NAME (each --pipeline other "
                        "than the primary; a model is scored only under the pipeline it was trained under)")
    p.add_argument("--primary", help="COCO: the pipeline whose numbers go to the top level (default: the first)")
    add_result_args(p, "metrics", "the result numbers only",
                    "counts, the authors' FG-ARI, every COCO pipeline's numbers")
    p.add_argument("--samples", help="NPZ of the first images, masks and reconstructions (figures; primary pipeline)")
    p.add_argument("--batch-size", type=int, help="default: the config's eval.batch_size")
    p.add_argument("--n-samples", type=int, help="default: the config's eval.n_samples")
    args = p.parse_args(argv)
    if args.cell not in PAPER_CELLS and args.cell not in EVAL_ONLY:
        raise UserError(f"unknown cell {args.cell!r}; choose one of: {', '.join([*PAPER_CELLS, *sorted(EVAL_ONLY)])}")
    config = C.load(args.config)
    batch_size = config["eval"]["batch_size"] if args.batch_size is None else args.batch_size
    n_samples = config["eval"]["n_samples"] if args.n_samples is None else args.n_samples
    coco = args.cell.startswith("coco/")
    if coco != bool(args.pipeline) or (not coco and not args.data):
        raise UserError(f"{args.cell}: pass " + ("--pipeline NAME DATA FEATURES for each COCO pipeline" if coco
                                                 else "--data (and no --pipeline)"))
    runs = {name: (data, feats) for name, data, feats in args.pipeline} or {"": (args.data, None)}
    primary = args.primary or next(iter(runs))
    if primary not in runs:
        raise UserError(f"--primary {primary} is not one of the --pipeline names ({', '.join(runs)})")
    for name, (data, _) in runs.items() if coco else ():
        _check_scored_on(name, Path(data))
    trained = args.cell != "coco/blockmasks"
    run_dirs = _run_dirs(args, runs, primary) if trained else {}
    records, cfgs = {}, {}
    for name, run_dir in run_dirs.items():
        records[name], cfgs[name] = scored_run(config, args.config, args.cell, run_dir, args.seed, args.set)
        if coco:
            _check_trained_on(name, run_dir, records[name])
    device = str(resolve_device(args.device))
    results, samples = {}, None
    for name, (data, feats) in runs.items():
        if not trained:
            results[name] = evaluate_blockmasks(open_dataset("coco", data, feats), C.block_mask_slots(config),
                                                batch_size, authors_metric=coco)
            continue
        if records[name]["status"] == "diverged":
            results[name] = diverged_result(records[name])
            continue
        model, _, cfgs[name] = load_trained(run_dirs[name], device)
        upsample = _coco_pipeline(config, name)["mask_upsample"] if coco else "bilinear"
        results[name], s = evaluate_model(model, open_dataset(args.cell.split("/")[0], data, feats), batch_size,
                                          n_samples if name == primary else 0, device, upsample=upsample,
                                          authors_metric=coco)
        results[name]["diverged"] = 0
        samples = s if name == primary else samples
    result = dict(results[primary])
    if coco:
        result.update(pipeline=primary, pipelines=results)
    if result.get("diverged") == 1:
        samples = {"diverged": np.array(1)}  # figures skip such samples
    sets = set_numbers(args.set)
    result.update(sets)
    data_dir, feats = runs[primary]
    prov = provenance(config, args.cell, cfgs.get(primary), Path(args.run) if trained else None, Path(data_dir),
                      Path(feats) if feats else None, device)
    if coco:
        prov["pipelines"] = _pipelines_note(runs, records)
    if trained:
        prov.update(identity.provenance_fields(records[primary]))
    write_json(args.provenance, prov)
    if samples is not None and args.samples:
        with atomic_path(args.samples, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **samples)
    metrics = write_result(result, args.out, args.details, METRIC_KEYS + tuple(sets))
    print(json.dumps({"cell": args.cell, **metrics}), file=sys.stdout)
    return 0
