"""Every table cell of the paper as plain data (docs/fidelity.md), and how to build its modules.

A cell config has three sections: `model` (build_model), `reg` (the regulariser and
its projection head) and `train` (the schedule). Presets override these per dataset and
per method (slotcov.config.resolve_cell); the values here are the paper's.
"""
from __future__ import annotations

import copy
import json

# The datasets, in table order, each with the module whose `open_split` serves its prepared splits;
# a cell is "dataset/method". ColoredMDSprites cells train on images, COCO cells on frozen ViT
# features of a COCO pipeline's prepared split.
DATASETS = {"cmdsprites": "slotcov.data.mdsprites", "coco": "slotcov.data.coco"}


TRAIN = {  # the shared schedule
    "steps": 500_000, "batch_size": 64, "lr": 4e-4, "warmup_steps": 10_000,
    "decay_rate": 0.5, "decay_steps": 100_000, "grad_clip": None, "seed": 0,
    "compile": "auto", "checkpoint_every": 5_000, "log_every": 100,
    "skip_nonfinite": False, "threads": 0,  # threads 0: torch's default
}
# Every regulariser key, with the value a method that does not use it has (weights 0).
# The regulariser's terms, in log order: the name each is logged under (log.csv column, the training
# curves' panel and DVC plot, the non-finite check) -> the `reg` key of its weight.
# slotcov.train.losses.regulariser_terms returns a subset; every other list of terms derives from this
# one; CURVES are the numbers of log.csv drawn as training curves (figures, DVC plots).
LOSS_TERMS = {"cov": "cov_weight", "var": "var_weight", "cos": "cosine_weight"}
CURVES = ["loss", "recon", *LOSS_TERMS, "grad_norm", "lr"]

REG = {"method": "none", "projection": None, "cov_weight": 0.0, "var_weight": 0.0, "gamma": 1.0, "eps": 1e-4,
       "cov_divide_by": "d2", "cosine_weight": 0.0, "cosine_margin": 0.2}
NO_REG = dict(REG)
COVLOSS = {**REG, "method": "covloss", "projection": [1024, 1024, 1024], "cov_weight": 1.0,
           "var_weight": 0.0, "gamma": 0.0, "cov_divide_by": "d2"}
COSINE = {**REG, "method": "cosineloss", "projection": None, "cosine_weight": 0.01, "cosine_margin": 0.2}
# The two ablations of Sec. 3 (no table; the claims ledger's C15 and C16), as the authors' commands would run
# them (docs/fidelity.md): COVLOSS with the variance term left on at train.py's defaults (--var_weight 1,
# --std_target 1.0, eps 1e-4), and COSINELOSS without --identity-proj, i.e. on the COVLOSS projection head.
COVLOSS_VAR = {**COVLOSS, "var_weight": 1.0, "gamma": 1.0}
COSINE_PROJ = {**COSINE, "projection": [1024, 1024, 1024]}
VICREG_SLOTS = {**REG, "method": "vicreg", "projection": None, "cov_weight": 1.0, "var_weight": 1.0,
                "gamma": 1.0, "cov_divide_by": "d"}

SA_CNN = {"kind": "sa_cnn", "resolution": 64, "num_slots": 5, "slot_dim": 64, "iters": 3,
          "mlp_hidden": 128, "channels": 64, "encoder_layers": 4, "decoder_layers": 3}
SA_VIT = {"kind": "sa_vit", "feature_dim": 768, "num_tokens": 196, "num_slots": 7, "slot_dim": 64,
          "iters": 3, "mlp_hidden": 256, "broadcast": 8, "decoder_mlp": [32, 32, 32],
          "decoder_channels": 32, "upsample": 4, "target_resolution": 128}
DINOSAUR = {"kind": "dinosaur", "feature_dim": 768, "num_tokens": 196, "num_slots": 7, "slot_dim": 256,
            "iters": 3, "mlp_hidden": 1024, "decoder_hidden": [3072, 3072, 3072]}


# Settings that exist only as knobs (the paper's runs used one value): (section, key) -> the paper's value.
# Every cell has them; like any other setting, a run with another value is marked (non_paper_settings).
KNOBS = {("train", "amp"): "fp32", ("train", "tf32_matmul"): False, ("model", "slot_init"): "authors",
         ("reg", "cosine_warmup"): 0, ("model", "mask_prior"): "none", ("model", "attn_sharpness"): 1.0}
CNN_KNOBS = {("model", "encoder_kernel"): 5, ("model", "decoder_kernel"): 5}  # sa_cnn cells only


def _knobs(model: dict) -> dict:
    return {**KNOBS, **CNN_KNOBS} if model["kind"] == "sa_cnn" else KNOBS


def _cell(model: dict, reg: dict, **train) -> dict:
    """A complete cell: every key the model, regulariser and trainer read (resolve_cell only overrides)."""
    cell = copy.deepcopy({"model": model, "reg": reg, "train": {**TRAIN, **train}})
    for (section, key), value in _knobs(model).items():
        cell[section][key] = value
    return cell


PAPER_CELLS: dict[str, dict] = {
    "cmdsprites/sa": _cell(SA_CNN, NO_REG),
    "cmdsprites/covloss": _cell(SA_CNN, COVLOSS),
    "cmdsprites/cosineloss": _cell(SA_CNN, COSINE),
    "cmdsprites/covloss_var": _cell(SA_CNN, COVLOSS_VAR),
    "cmdsprites/cosineloss_proj": _cell(SA_CNN, COSINE_PROJ),
    "coco/sa": _cell(SA_VIT, NO_REG, grad_clip=1.0),
    "coco/covloss": _cell(SA_VIT, COVLOSS, grad_clip=1.0),
    "coco/cosineloss": _cell({**SA_VIT, "slot_dim": 128, "mlp_hidden": 512}, COSINE, grad_clip=1.0),
    "coco/dinosaur": _cell(DINOSAUR, NO_REG, grad_clip=1.0),
    "coco/dinosaur_covloss": _cell(DINOSAUR, VICREG_SLOTS, grad_clip=1.0),
    "coco/dinosaur1024": _cell({**DINOSAUR, "slot_dim": 1024, "mlp_hidden": 4096}, NO_REG, grad_clip=1.0),
    "coco/dinosaur1024_covloss": _cell({**DINOSAUR, "slot_dim": 1024, "mlp_hidden": 4096}, VICREG_SLOTS,
                                       grad_clip=1.0),
}
EVAL_ONLY = {"coco/blockmasks"}  # evaluated, never trained
# Every cell a preset may run, in table order: the schema's cell and method names and the default of
# a preset's `cells` (slotcov.config).
CELLS = [*PAPER_CELLS, *sorted(EVAL_ONLY)]


def methods_of(dataset: str, cells=PAPER_CELLS) -> list[str]:
    """The methods of `dataset` among `cells` (default: the trained cells), in their order."""
    return [cell.split("/")[1] for cell in cells if cell.split("/")[0] == dataset]

# Cell settings that say how a run is carried out, not what it computes: another value than the
# paper's is no departure. The seed is each result's own axis (its file name and provenance); thread
# count and torch.compile change only the order of floating-point operations; how often a run
# checkpoints or logs changes no update.
BOOKKEEPING = {("train", "seed"), ("train", "threads"), ("train", "compile"), ("train", "checkpoint_every"),
               ("train", "log_every")}


def non_paper_settings(cfg: dict, cell: str) -> list[str]:
    """`section.key=value` for every setting of a resolved cell config that differs from the paper cell
    `cell` (any key of model, reg and train but BOOKKEEPING; keys the paper cell lacks count too)."""
    paper = PAPER_CELLS[cell]
    out = []
    for section in ("model", "reg", "train"):
        mine, theirs = cfg.get(section, {}), paper[section]
        for key in [*theirs, *(k for k in mine if k not in theirs)]:
            if (section, key) not in BOOKKEEPING and key in mine and (key not in theirs or mine[key] != theirs[key]):
                value = mine[key]
                out.append(f"{section}.{key}={value if isinstance(value, str) else json.dumps(value)}")
    return out
