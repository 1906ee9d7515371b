"""Config files: load, validate against the JSON schema, resolve one cell's settings.

A cell's settings are the paper's (slotcov.cells.PAPER_CELLS) with the preset's
`datasets.<dataset>` and then `methods.<dataset>.<method>` overrides merged over them.

Every YAML that slotcov reads (presets, `--set` and `--config` values, the schema) goes
through one loader, `load_yaml`: PyYAML's safe loader with YAML 1.2's float rule, so `1e-5`,
`1e+30` and `1.0e5` are numbers (YAML 1.1, PyYAML's default, reads them as strings). A file
the workflow writes for the CLIs is JSON and is read back with json.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from slotcov.cells import CELLS, DATASETS, EVAL_ONLY, PAPER_CELLS, methods_of
from slotcov.errors import UserError


# Every non-cell key a preset may leave out, with its value: the one defaults table of a config
# (cell settings: slotcov.cells). resolve() merges the preset over it, so a resolved config has
# every key and its readers (rules, CLIs) index it strictly.
DEFAULTS = {
    "cells": CELLS,  # every cell; a preset that runs fewer lists them
    "data": {
        # tfrecord / root null: the workflow makes or downloads the data under data/raw/
        # replica.n: the splits' end; resolution: the cells' model.resolution (cmdsprites_resolution).
        # splits.probe (Table 2): the probe's 10,000 training, 1,000 validation and 2,000 test scenes, after the
        # evaluation records (the authors' code does not say which records their probe read; docs/fidelity.md)
        "cmdsprites": {"source": "replica", "replica": {"seed": 0}, "tfrecord": None,
                       "splits": {"train": [0, 60000], "eval": [60000, 320], "probe": [60320, 13000]}},
        "coco": {"source": "synthetic", "root": None, "train_split": "train2017", "eval_split": "val2017",
                 "synthetic": {"n_train": 16, "n_eval": 16, "seed": 0}, "limit_train": None, "limit_eval": None,
                 # The two COCO pipelines (docs/fidelity.md "COCO pipelines and FG-ARI"). COCO cells train
                 # under each of `train_pipelines` (None: `primary` only), each model scored on its own
                 # pipeline's evaluation split; block masks are scored under both.
                 "pipelines": {
                     "authors": {"crop": "stretch", "normalize": "none", "skip_empty": True, "mask_upsample": "nearest",
                                 "interpolation": "bilinear", "mask_resize": "instances", "resize": "pil"},
                     "dinosaur": {"crop": "center", "normalize": "imagenet", "skip_empty": False,
                                  "mask_upsample": "bilinear", "interpolation": "bicubic", "mask_resize": "ids",
                                  "resize": "tensor"}},
                 "primary": "authors", "train_pipelines": None},
        "features": {"model": "vit_base_patch16_224.dino", "weights": "auto", "batch_size": 64, "dtype": "float32"},
    },
    "datasets": {}, "methods": {},
    "sweep": {"cell": "cmdsprites/covloss", "betas": []},  # sweep.seeds: the preset's seeds
    "eval": {"batch_size": 64, "n_samples": 8},
    "probe": {"protocol": "authors", "hidden": 256, "steps": 6000, "lr": 1e-3, "lr_half_life": 2000,  # the authors'
              "batch_size": 64, "check_every": 250, "patience": 3, "min_delta": 0.01,
              "train_scenes": 10_000, "val_scenes": 1_000, "test_scenes": 2_000, "resample_slots": True, "seed": 0},
    "monitor": {  # how jobs report progress; no setting here moves a number or re-runs a job
        "progress_every_s": 60,  # seconds between progress lines of a job without a terminal (0: every logged step)
        "tensorboard": False,  # TensorBoard event files beside log.csv in each run folder
    },
    "plan": None,  # a `slotcov plan --out` file: train runtimes per cell (else resources.train.runtime)
    "resources": {  # per rule: cores, memory, SLURM time limit, GPUs
        "download": {"threads": 1, "mem_mb": 1000, "runtime": "12h", "gpu": 0},
        "unzip": {"threads": 1, "mem_mb": 2000, "runtime": "2h", "gpu": 0},
        "make_mdsprites": {"threads": 4, "mem_mb": 4000, "runtime": "2h", "gpu": 0},
        "convert_mdsprites": {"threads": 1, "mem_mb": 8000, "runtime": "2h", "gpu": 0},
        "make_coco": {"threads": 1, "mem_mb": 2000, "runtime": "1h", "gpu": 0},
        "prepare_coco": {"threads": 4, "mem_mb": 16000, "runtime": "6h", "gpu": 0},
        "extract_features": {"threads": 4, "mem_mb": 32000, "runtime": "12h", "gpu": 1},
        "train": {"threads": 4, "mem_mb": 16000, "runtime": "48h", "gpu": 1},
        "evaluate": {"threads": 4, "mem_mb": 16000, "runtime": "2h", "gpu": 1},
        "probe": {"threads": 1, "mem_mb": 8000, "runtime": "2h", "gpu": 0},
        "report": {"threads": 1, "mem_mb": 4000, "runtime": "1h", "gpu": 0},
    },
}
# The cell setting the bottleneck sweep varies (`sweep.betas` are its values): each sweep job's `--set`, and the
# key under which `slotcov evaluate` records it in the sweep's metrics files (read back by results.load_sweep).
SWEEP_KEY = "reg.cov_weight"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1) plus YAML 1.2's floats without a dot or exponent sign."""


# YAML 1.1 floats need a dot and a signed exponent ("1.0e-5"); YAML 1.2 also takes 1e-5, 1E+30,
# 1.0e5. Added after PyYAML's own resolvers: no YAML 1.1 int, float or timestamp matches these.
_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
                              list("-+.0123456789"))


def load_yaml(text: str):
    """Parse YAML text as slotcov does everywhere (safe; YAML 1.2 floats); yaml.YAMLError if malformed."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader: it builds plain data only


def parse_value(text: str, where: str):
    """A command-line value (`--set`, `--config`) parsed as YAML, or a one-line UserError naming `where`."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as err:
        raise UserError(f"{where}: not valid YAML: {str(err).splitlines()[0]}") from None


def resolve(config: dict) -> dict:
    """A validated config over DEFAULTS: every key present (the config the rules and CLIs read)."""
    out = deep_merge(DEFAULTS, config)
    out["sweep"].setdefault("seeds", out["seeds"])
    cmd = out["data"]["cmdsprites"]
    cmd["replica"].setdefault("n", _splits_end(cmd["splits"]))
    cmd["resolution"] = cmdsprites_resolution(out)
    coco = out["data"]["coco"]
    coco["train_pipelines"] = list(coco["train_pipelines"] or [coco["primary"]])
    return out


def _splits_end(splits: dict) -> int:
    return max(start + count for start, count in splits.values())


def _schema() -> dict:
    """config.schema.yaml with its cell, dataset and method names filled in from slotcov.cells."""
    schema = load_yaml(resources.files("slotcov").joinpath("config.schema.yaml").read_text())
    props = schema["properties"]
    props["cells"]["items"] = {"enum": CELLS}
    props["datasets"]["properties"] = {d: {"$ref": "#/$defs/override"} for d in DATASETS}
    props["methods"]["properties"] = {d: {"type": "object", "propertyNames": {"enum": methods_of(d)},
                                          "additionalProperties": {"$ref": "#/$defs/override"}} for d in DATASETS}
    return schema


def _strict_integer(_checker, instance) -> bool:
    """JSON schema "integer" as a Python int: 1000.0 (written 1e3 or 1000.0) is a float, and counts index arrays."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer))


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate(config: dict, source: str = "config") -> dict:
    """Check `config` against the schema and the cells' constraints; raise one-line UserError."""
    check_methods_form(config, source)
    _raise_first(_Validator(_schema()).iter_errors(config), source)
    check_probe_span(config.get("data", {}).get("cmdsprites", {}).get("splits", {}), source)
    cells = config.get("cells", DEFAULTS["cells"])
    for cell in cells:
        if cell not in EVAL_ONLY:
            check_cell(resolve_cell(config, cell), cell, source)
    try:
        resolved = resolve(config)  # also cmdsprites_resolution's check
        if "coco/blockmasks" in cells:
            block_mask_slots(config)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None
    check_replica_size(resolved["data"]["cmdsprites"], source)
    check_train_pipelines(resolved["data"]["coco"], source)
    return config


def check_methods_form(config: dict, source: str = "config") -> None:
    """`methods` is nested by dataset, then method; a "dataset/method" key (an older form) is one clear error."""
    methods = config.get("methods")
    old = [k for k in methods if "/" in str(k)] if isinstance(methods, dict) else []
    if old:
        dataset, _, method = str(old[0]).partition("/")
        raise UserError(f"{source}: methods.{old[0]}: a cell's overrides are nested by dataset, then method; "
                        f"write `methods: {{{dataset}: {{{method}: {{...}}}}}}` "
                        f"(key path methods.{dataset}.{method}.<section>.<key>)")


def check_probe_span(splits: dict, source: str = "config") -> None:
    """The probe's scenes must be new to the slot models: no record of splits.probe in train or eval."""
    if "probe" not in splits:
        return
    start, count = splits["probe"]
    for name in ("train", "eval"):
        other_start, other_count = splits.get(name, (0, 0))
        if count and other_count and start < other_start + other_count and other_start < start + count:
            end = max(a + n for k, (a, n) in splits.items() if k != "probe")
            raise UserError(f"{source}: data.cmdsprites.splits.probe {[start, count]} overlaps splits.{name} "
                            f"{[other_start, other_count]}; start the probe span at {end} or later")


def check_replica_size(cmd: dict, source: str = "config") -> None:
    """A generated ColoredMDSprites replica must hold every record the splits name."""
    needed = _splits_end(cmd["splits"])
    if cmd["source"] == "replica" and cmd["replica"]["n"] < needed:
        raise UserError(f"{source}: data.cmdsprites.replica.n must be at least {needed} "
                        "(the end of the last split in data.cmdsprites.splits)")


def check_train_pipelines(coco: dict, source: str = "config") -> None:
    """COCO cells train under the primary pipeline (the metrics files' top level) and any others listed."""
    if coco["primary"] not in coco["train_pipelines"]:
        raise UserError(f"{source}: data.coco.train_pipelines {coco['train_pipelines']} leaves out the primary "
                        f"pipeline '{coco['primary']}'; add it to the list (or leave the key out: the primary only)")


def check_override(override: dict, source: str = "--set") -> None:
    """Check a cell override (--set, --seed) against the schema's per-cell section; raise one-line UserError."""
    schema = _schema()
    validator = _Validator({"$defs": schema["$defs"], "$ref": "#/$defs/override"})
    _raise_first(validator.iter_errors(override), source)


def _raise_first(errors, source: str) -> None:
    error = jsonschema.exceptions.best_match(errors)
    if error is not None:
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - set(allowed))
            raise UserError(f"{source}: unknown key {_where(list(error.absolute_path) + extra[:1])!s}; "
                            f"allowed here: {', '.join(allowed)}")
        if error.validator == "enum":
            raise UserError(f"{source}: {_where(error.absolute_path)} = {error.instance!r} is not allowed; "
                            f"choose one of: {', '.join(map(str, error.validator_value))}")
        hint = ""
        if error.validator == "type" and "integer" in str(error.validator_value) and isinstance(error.instance, float):
            hint = "; write a whole number without a dot or exponent (e.g. 100000, not 1e5)"
        raise UserError(f"{source}: {_where(error.absolute_path)}: {error.message}{hint}")


def check_cell(cfg: dict, cell: str, source: str = "config") -> None:
    """Constraints the schema cannot express: shapes that must fit the data and each other."""
    m, t = cfg["model"], cfg["train"]
    if m["kind"] == "sa_cnn" and m["num_slots"] < 5 and cell.startswith("cmdsprites"):
        raise UserError(f"{source}: {cell}: num_slots={m['num_slots']} cannot hold ColoredMDSprites scenes "
                        "(up to 4 sprites + background); use num_slots >= 5")
    if m["kind"] == "sa_vit" and m["broadcast"] * 2 ** m["upsample"] != m["target_resolution"]:
        raise UserError(f"{source}: {cell}: broadcast {m['broadcast']} x 2^upsample {m['upsample']} must equal "
                        f"target_resolution {m['target_resolution']}")
    if m["mask_prior"] == "attention" and m["kind"] == "sa_vit":
        raise UserError(f"{source}: {cell}: model.mask_prior: attention needs the decoder's masks at the attention's "
                        "resolution (sa_cnn or dinosaur cells); remove it for the COCO Slot Attention cells")
    if t["warmup_steps"] > t["steps"]:
        raise UserError(f"{source}: {cell}: warmup_steps {t['warmup_steps']} exceeds steps {t['steps']}")


def read_config(path: str | Path) -> dict:
    """A config file's mapping, not yet validated: JSON (*.json, what the workflow writes) with json,
    anything else with load_yaml; one-line UserError if unreadable."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file {path} not found")
    try:
        config = json.loads(path.read_text()) if path.suffix == ".json" else load_yaml(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON: {err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping of settings at the top level")
    return config


def load(path: str | Path) -> dict:
    """Read, validate and resolve a YAML (or JSON) config file."""
    return resolve(validate(read_config(path), str(path)))


def parse_config_args(items: list[str] | None) -> dict:
    """Snakemake's `--config KEY=VALUE` items as a mapping, each VALUE parsed with load_yaml
    (numbers, lists, nested maps); later items merge over earlier ones, as Snakemake merges them."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--config {item!r}: expected KEY=VALUE, e.g. seeds=[0,1]")
        out = deep_merge(out, {key: parse_value(value, f"--config {key}")})
    return out


def workflow_config(preset_files: list, config_args: list[str] | None, default: str | Path = "config.yaml") -> dict:
    """The resolved config of a Snakemake run: the preset files (else `default`), then `--config` on top.

    A preset file is the whole config; `default` lies underneath only when no file names a
    `preset`. Errors name the file, or `--config` for what came from there.
    """
    given = {}
    for path in preset_files:
        given = deep_merge(given, read_config(path))
    overrides = parse_config_args(config_args)
    sources = list(preset_files)
    if "preset" not in given:
        given = deep_merge(read_config(default), given)
        sources.insert(0, default)
    source = ", ".join(map(str, sources))
    validate(copy.deepcopy(given), source)
    if overrides:
        given = validate(deep_merge(given, overrides), "--config")
    return resolve(given)


def deep_merge(base: dict, over: dict | None) -> dict:
    """A copy of `base` with `over` merged in (mappings recursively, everything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def resolve_cell(config: dict, cell: str, overrides: dict | None = None) -> dict:
    """The full settings of `cell` ("dataset/method") under `config`, plus optional overrides."""
    if cell not in PAPER_CELLS:
        raise UserError(f"unknown cell {cell!r}; choose one of: {', '.join(PAPER_CELLS)}")
    dataset, method = cell.split("/")
    cfg = deep_merge(PAPER_CELLS[cell], config.get("datasets", {}).get(dataset))
    cfg = deep_merge(cfg, config.get("methods", {}).get(dataset, {}).get(method))
    return deep_merge(cfg, overrides)


def _trained_cells(config: dict, dataset: str) -> list[str]:
    """The preset's trained cells of `dataset`, or all of the paper's when it runs none."""
    cells = [c for c in config.get("cells", CELLS) if c.split("/")[0] == dataset and c not in EVAL_ONLY]
    return cells or [c for c in PAPER_CELLS if c.split("/")[0] == dataset]


def block_mask_slots(config: dict) -> int:
    """Masks of the coco/blockmasks baseline: the slot count of the preset's COCO cells (one value)."""
    counts = {resolve_cell(config, c)["model"]["num_slots"] for c in _trained_cells(config, "coco")}
    if len(counts) != 1:
        raise UserError(f"coco/blockmasks: the COCO cells have different num_slots {sorted(counts)}; "
                        "set one value in datasets.coco.model.num_slots or drop coco/blockmasks from cells")
    return counts.pop()


def cmdsprites_resolution(config: dict) -> int:
    """The pixel size ColoredMDSprites splits are converted at: the model.resolution of the preset's
    ColoredMDSprites cells (one value); `data.cmdsprites.resolution`, where a preset gives it, must equal it."""
    sizes = sorted({resolve_cell(config, c)["model"]["resolution"] for c in _trained_cells(config, "cmdsprites")})
    given = config.get("data", {}).get("cmdsprites", {}).get("resolution")
    if len(sizes) != 1 or given not in (None, sizes[0]):
        raise UserError(f"data.cmdsprites.resolution {given} and model.resolution {sizes} of the ColoredMDSprites "
                        "cells (datasets.cmdsprites.model.resolution) must be one value: the splits are converted at "
                        "the first, the models read the second; set datasets.cmdsprites.model.resolution only")
    return sizes[0]


def parse_set(items: list[str]) -> dict:
    """`--set reg.cov_weight=0.1` items as a nested override mapping (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. reg.cov_weight=0.1")
        key, value = item.split("=", 1)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = parse_value(value, f"--set {key}")
    return out


def config_hash(obj) -> str:
    """A short stable hash of a JSON-able object (provenance)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def cli_check_config(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="slotcov check-config",
                                description="Validate a config file and print each cell's resolved settings.")
    p.add_argument("config", nargs="?", default="config.yaml")
    p.add_argument("--cell", help="print only this cell")
    args = p.parse_args(argv)
    config = load(args.config)
    cells = [args.cell] if args.cell else [c for c in config["cells"] if c not in EVAL_ONLY]
    for cell in cells:
        print(f"# {cell}\n" + yaml.safe_dump(resolve_cell(config, cell), sort_keys=False))
    print(f"{args.config}: OK ({len(config['cells'])} cells, seeds {config['seeds']})")
    return 0
