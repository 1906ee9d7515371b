# Input lists and the results folder of the report rules (report.smk): the result files each
# report command reads, so that every one of them is a declared input.


def provenance_of(results: list[str]) -> list[str]:
    """The provenance file of each result file (results/provenance/<same relative path>)."""
    return [path.replace("results/", "results/provenance/", 1) for path in results]


def details_of(results: list[str]) -> list[str]:
    """The details file of each result file (results/details/<same relative path>): counts, the authors'
    FG-ARI and the COCO pipelines' sections, which the report commands read with the metrics."""
    return [path.replace("results/", "results/details/", 1) for path in results]


def trained_cells() -> list[str]:
    return [cell for cell in config["cells"] if cell not in EVAL_ONLY]


def sample_targets() -> list[str]:
    """Evaluation samples NPZ of every trained cell and seed (the figures' image panels)."""
    return [f"results/samples/{cell}/seed{seed}.npz" for cell in trained_cells() for seed in config["seeds"]]


def run_records() -> list[str]:
    """run.json of every training run (COCO: under each pipeline of data.coco.train_pipelines): its log.csv
    (training curves) is complete once it exists."""
    out = []
    for cell in trained_cells():
        dataset, method = cell.split("/")
        others = COCO_OTHER_TRAIN if dataset == "coco" else []
        for seed in config["seeds"]:
            out.append(f"{RUN.format(dataset=dataset, method=method, seed=seed)}/run.json")
            out += [f"{RUN_UNDER.format(dataset=dataset, method=method, seed=seed, pipeline=p)}/run.json"
                    for p in others]
    return out


def results_folder(wildcards, input) -> str:
    """`--results` of the report commands: the folder holding the declared result files (all under results/)."""
    return "results"
