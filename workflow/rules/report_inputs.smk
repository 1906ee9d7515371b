# Input lists and the results folder of the report rules (report.smk): the result files each
# report command reads, so that every one of them is a declared input.


def provenance_of(results: list[str]) -> list[str]:
    """The provenance file of each result file (results/provenance/<same relative path>)."""
    return [path.replace("results/", "results/provenance/", 1) for path in results]


def trained_cells() -> list[str]:
    return [cell for cell in config["cells"] if cell not in EVAL_ONLY]


def sample_targets() -> list[str]:
    """Evaluation samples NPZ of every trained cell and seed (the figures' image panels)."""
    return [f"results/samples/{cell}/seed{seed}.npz" for cell in trained_cells() for seed in config["seeds"]]


def run_records() -> list[str]:
    """run.json of every training run: its log.csv (training curves) is complete once it exists."""
    return [str(Path(RUN.format(**dict(zip(("dataset", "method"), Path(cell).parts)), seed=seed), "run.json"))
            for cell in trained_cells() for seed in config["seeds"]]


def results_folder(wildcards, input) -> str:
    """`--results` of the report commands: the folder holding the declared result files (all under results/)."""
    return "results"
