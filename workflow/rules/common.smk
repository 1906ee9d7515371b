# Shared helpers: the effective config the slotcov CLI reads, cell settings as rule params,
# per-rule resources, input functions and the target lists of `rule all`. The lists they read
# are the library's: cells and datasets (slotcov.cells), tables (report.tables.TABLES), figures
# (report.figures.FIGURES), every default (slotcov.config.DEFAULTS, already in `config`).
import json
import sys
from pathlib import Path

import numpy as np

from slotcov.cells import CELLS, DATASETS, EVAL_ONLY, PAPER_CELLS
from slotcov.config import SWEEP_KEY, block_mask_slots, deep_merge, parse_set, resolve_cell
from slotcov.io import write_json
from slotcov.paper import TABLE2
from slotcov.report.figures import FIGURES
from slotcov.report.tables import TABLES
from slotcov.train.plan import minutes, train_runtime

# Jobs call `slotcov` by name: put the interpreter running Snakemake (venv or conda env)
# first on PATH, so `.venv/bin/snakemake` works without activating the environment
# (not with `--sdm conda`, where each job activates envs/environment.yaml instead, into which
# envs/environment.post-deploy.sh installs slotcov).
if "conda" not in {str(m).lower() for m in workflow.deployment_settings.deployment_method}:
    shell.prefix(f'export PATH="{Path(sys.executable).parent}:$PATH"; ')

ENV = "../../envs/environment.yaml"  # `--sdm conda` builds it; relative to the rule files
TRAINED_METHODS = sorted({cell.split("/")[1] for cell in PAPER_CELLS})
METHODS = sorted({cell.split("/")[1] for cell in CELLS})

# --- the resolved config (slotcov.config.resolve: every key present, defaults declared there) ---
CMD = config["data"]["cmdsprites"]
CMD_SPLITS = CMD["splits"]
TFRECORD = CMD["tfrecord"] or "data/raw/cmdsprites/multi_dsprites_colored_on_colored.tfrecords"  # null: made here
COCO = config["data"]["coco"]
COCO_ROOT = COCO["root"] or "data/raw/coco"  # null: made or downloaded here
COCO_SPLIT = {"train": COCO["train_split"], "eval": COCO["eval_split"]}
# COCO pipelines (docs/fidelity.md "COCO pipelines and FG-ARI"): prepared splits and feature
# stores are data/coco/{part}-{pipeline} and data/features/{part}-{pipeline}. COCO cells train
# under each pipeline of data.coco.train_pipelines (the primary's runs in RUN, the others' in
# RUN_UNDER), each model scored on its own pipeline's evaluation split; block masks (not
# trained) are scored under every pipeline.
COCO_PIPELINES = COCO["pipelines"]
COCO_PRIMARY = COCO["primary"]
COCO_TRAIN = COCO["train_pipelines"]
COCO_OTHER_TRAIN = [name for name in COCO_TRAIN if name != COCO_PRIMARY]
COCO_ZIPS = {"train2017": "coco_train2017", "val2017": "coco_val2017",
             "annotations_trainval2017": "coco_annotations2017"}  # zip name -> `slotcov download --name`
FEATURES = config["data"]["features"]
VIT = FEATURES["model"]
VIT_WEIGHTS = FEATURES["weights"]
# `weights: auto` for the DINO ViT-B/16 finds (among the local caches) the file that
# `slotcov download --name dino_vitb16` stages, so the workflow fetches that file first.
DINO_FILE = "data/raw/weights/dino_vitbase16_pretrain.pth"
STAGE_DINO = VIT == "vit_base_patch16_224.dino" and VIT_WEIGHTS in ("auto", DINO_FILE)
EVAL = config["eval"]
PROBE = config["probe"]
# Run folders (run.json, model.pt, ckpt.pt, log.csv): written by train, read by evaluate and probe.
RUN = "results/runs/{dataset}/{method}/seed{seed}"
SWEEP_RUN = "results/sweep/runs/{dataset}/{method}/beta{beta}/seed{seed}"
RUN_UNDER = "results/runs/{dataset}/{method}/seed{seed}-{pipeline}"  # COCO, trained under a non-primary pipeline


def run_dir(wildcards, dataset: str | None = None) -> str:
    """The run folder of a job's wildcards (the sweep's when they hold a beta, RUN_UNDER when a pipeline);
    `dataset` if no wildcard."""
    values = dict(wildcards.items())
    values.setdefault("dataset", dataset)
    return (SWEEP_RUN if "beta" in values else RUN_UNDER if "pipeline" in values else RUN).format(**values)


def effective_config_file() -> str:
    """The merged, validated config as one file per preset for the slotcov CLI (--config).

    Its path is a constant param and no input of the rules; its content reaches each job
    through `params.cfg` (Snakemake's params rerun trigger), so editing one method's
    settings re-runs only that method's jobs. Rewritten only when the content changes.
    """
    path = Path(f".snakemake/slotcov/config-{config['preset']}.json")
    if not path.exists() or json.loads(path.read_text()) != config:
        write_json(path, config)
    return str(path)


CONFIG = effective_config_file()


def beta_str(beta) -> str:
    """A sweep value as a path component that reads back as the same float ("1.0", "0.001")."""
    return np.format_float_positional(float(beta), trim="0")


def sweep_sets(wildcards) -> list[str]:
    """The `--set` of a sweep job: its beta wildcard as the value of SWEEP_KEY (none for the other jobs)."""
    return [f"{SWEEP_KEY}={wildcards.beta}"] if "beta" in wildcards.keys() else []


def set_flags(wildcards) -> str:
    return " ".join(f"--set {item}" for item in sweep_sets(wildcards))


def cell_config(wildcards) -> str:
    """The resolved settings of one train/evaluate job (seed, sweep `--set`) as JSON: its rerun trigger."""
    overrides = deep_merge(parse_set(sweep_sets(wildcards)), {"train": {"seed": int(wildcards.seed)}})
    return json.dumps(resolve_cell(config, f"{wildcards.dataset}/{wildcards.method}", overrides), sort_keys=True)


def threads_of(rule_name: str) -> int:
    """Cores of a rule's jobs: config `resources.<rule>.threads` (defaults: slotcov.config.DEFAULTS)."""
    return config["resources"][rule_name]["threads"]


def resources_of(rule_name: str, **fixed) -> dict:
    """A rule's `resources:` (mem_mb, runtime, gpu) from config `resources.<rule>`, `fixed` over them.

    With a `plan` file (`slotcov plan --out`), a train job's runtime is its cell's planned one.
    """
    out = {key: value for key, value in config["resources"][rule_name].items() if key != "threads"} | fixed
    if rule_name == "train" and config["plan"]:
        fallback = minutes(out["runtime"])
        out["runtime"] = lambda wildcards: train_runtime(config, f"{wildcards.dataset}/{wildcards.method}", fallback)
    return out


# --- targets ---
def cell_targets() -> list[str]:
    """Metrics JSON of every configured cell and seed."""
    return [f"results/metrics/{cell}/seed{seed}.json" for cell in config["cells"] for seed in config["seeds"]]


def probe_targets() -> list[str]:
    """Probing JSON of every configured ColoredMDSprites cell of Table 2 and seed (the ablations are not probed)."""
    probed = [f"cmdsprites/{method}" for method in TABLE2]
    return [f"results/probe/{cell}/seed{seed}.json" for cell in config["cells"] if cell in probed
            for seed in config["seeds"]]


def sweep_targets() -> list[str]:
    """Metrics JSON of the bottleneck sweep (cov_weight values of `sweep.cell`)."""
    sweep = config["sweep"]
    return [f"results/sweep/{sweep['cell']}/beta{beta_str(b)}/seed{seed}.json"
            for b in sweep["betas"] for seed in sweep["seeds"]]


def all_results() -> list[str]:
    return cell_targets() + probe_targets() + sweep_targets()


def table_targets() -> list[str]:
    """Each table of slotcov.report.tables.TABLES as CSV and LaTeX."""
    return [f"reports/tables/{name}.{ext}" for name, _ in TABLES for ext in ("csv", "tex")]


def figure_targets() -> list[str]:
    """Each figure of slotcov.report.figures.FIGURES as PNG and PDF."""
    return [f"reports/figures/{name}.{ext}" for name, _ in FIGURES for ext in ("png", "pdf")]


# --- input functions and flags ---
def split_inputs(dataset: str, part: str, pipelines: list[str] = ()) -> dict:
    """The prepared splits (and, for COCO, the feature stores of `pipelines`) a train/evaluate job reads."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; slotcov.cells.DATASETS: {', '.join(DATASETS)}")
    if dataset != "coco":
        return {"data": f"data/{dataset}/{part}"}
    out = {f"data_{name}": f"data/coco/{part}-{name}" for name in pipelines}
    return out | {f"features_{name}": f"data/features/{part}-{name}" for name in pipelines}


def eval_pipelines(wildcards) -> list[str]:
    """The COCO pipelines an evaluation scores under: every one for block masks (no training), the
    pipelines its models were trained under for a trained cell, none for ColoredMDSprites."""
    if wildcards.get("dataset", "coco") != "coco":
        return []
    return list(COCO_PIPELINES) if wildcards.get("method", "blockmasks") == "blockmasks" else list(COCO_TRAIN)


def train_inputs(wildcards) -> dict:
    """The training split of a train job: for COCO, that of its pipeline (the primary without one)."""
    return split_inputs(wildcards.dataset, "train", [wildcards.get("pipeline", COCO_PRIMARY)])


def eval_inputs(wildcards) -> dict:
    """The evaluation splits of an evaluate job and, for COCO, the run record of each model trained under
    another pipeline than the primary (`run_<pipeline>`; the primary's is the rule's `run`)."""
    runs = {}
    if wildcards.dataset == "coco" and "beta" not in wildcards.keys():
        runs = {f"run_{n}": f"{RUN_UNDER.format(pipeline=n, **dict(wildcards.items()))}/run.json"
                for n in COCO_OTHER_TRAIN}
    return split_inputs(wildcards.dataset, "eval", eval_pipelines(wildcards)) | runs


def train_data_flags(wildcards, input) -> str:
    """`--data DIR` (and, for COCO, `--features DIR` of the job's pipeline) of a train job: its inputs."""
    if wildcards.dataset != "coco":
        return f"--data {input.data}"
    name = wildcards.get("pipeline", COCO_PRIMARY)
    return f"--data {input[f'data_{name}']} --features {input[f'features_{name}']}"


def coco_pipelines_param(wildcards) -> str:
    """The settings of the COCO pipelines an evaluation scores under as JSON (a rerun trigger), "" otherwise."""
    names = eval_pipelines(wildcards)
    return json.dumps({n: COCO_PIPELINES[n] for n in names}, sort_keys=True) if names else ""


def eval_data_flags(wildcards, input) -> str:
    """`--data DIR` of a ColoredMDSprites evaluation; for COCO one `--pipeline` per pipeline scored under,
    `--pipeline-run` for each model trained under a non-primary pipeline, and `--primary`."""
    if wildcards.get("dataset", "coco") != "coco":
        return f"--data {input.data}"
    names = eval_pipelines(wildcards)
    flags = [f"--pipeline {n} {input[f'data_{n}']} {input[f'features_{n}']}" for n in names]
    flags += [f"--pipeline-run {n} {Path(input[f'run_{n}']).parent}" for n in names if f"run_{n}" in input.keys()]
    return " ".join(flags + [f"--primary {COCO_PRIMARY}"])


def weights_input(wildcards) -> list[str]:
    if STAGE_DINO:
        return [DINO_FILE]
    return [] if VIT_WEIGHTS in ("auto", "random") else [VIT_WEIGHTS]
