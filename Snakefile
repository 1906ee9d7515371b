# slotcov workflow: every table cell of the paper, from raw data to reports/report.pdf.
#
#   snakemake --cores 2 all                                  # offline demo (config.yaml)
#   snakemake --cores 2 all --configfile config/test.yaml    # the CI-sized DAG
#   snakemake --profile profiles/slurm all                            # the paper (config/paper.yaml) on SLURM
#   snakemake --cores 2 results/metrics/cmdsprites/covloss/seed0.json   # one cell
#
# One cell = one target, and only its chain runs (data -> train -> evaluate):
#   results/metrics/{dataset}/{method}/seed{seed}.json     Tables 1 and 3 (FG-ARI, mBO)
#   results/probe/cmdsprites/{method}/seed{seed}.json     Table 2 (probing)
#   results/sweep/cmdsprites/covloss/beta{beta}/seed{seed}.json   the sweep (beta as "0.1", "10.0")
# Put targets BEFORE --configfile: Snakemake 9 reads every word after it as a config file.
#
# Which preset: a preset file given with `--configfile` (or a profile's `configfile:`) is the
# whole config; config.yaml (the demo) is read only when none was given. So no demo setting
# leaks into another preset. The Snakefile has no `configfile:` directive for this reason.
# `--config KEY=VALUE` applies on top in both cases; VALUE is YAML (`seeds=[0,1]`,
# `methods={cmdsprites: {covloss: {reg: {cov_weight: 0.5}}}}`).
# slotcov reads the preset files and the raw `--config` items itself (slotcov.config.workflow_config,
# YAML 1.2 floats: `lr: 1e-5` is a number), not the `config` Snakemake parsed, where such values are strings.
# A bad config stops before any job with one line naming the file (or --config), the key and the fix.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from slotcov.config import workflow_config
from slotcov.errors import UserError

min_version("9.0")  # as pyproject.toml's snakemake>=9.0


report: "workflow/report/workflow.rst"


try:  # every key present: rules read it strictly
    _resolved = workflow_config(workflow.config_settings.configfiles, workflow.config_settings.config_args)
except UserError as err:
    raise WorkflowError(f"slotcov: {err}") from None
config.clear()
config.update(_resolved)


include: "workflow/rules/common.smk"
wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(METHODS),
    seed=r"\d+",
    beta=r"\d+\.\d+",
    part="train|eval",
    pipeline="|".join(COCO_PIPELINES),


include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        cell_targets(),
        probe_targets(),
        sweep_targets(),
        table_targets(),
        "reports/numbers.tex",
        figure_targets(),
        expand("reports/plots/{term}.csv", term=PLOT_TERMS),
        "reports/claims",
        "reports/report.pdf",
    default_target: True
