# Training: one job per (dataset, method, seed), one more per COCO pipeline of
# data.coco.train_pipelines other than the primary (train_under), plus the bottleneck sweep.
# The declared output is the run record run.json ({"status": "finished" | "diverged", ...}):
# a run that diverged is a result too, and its evaluation says so. model.pt (finished runs
# only) and ckpt.pt are not declared: the run folder keeps ckpt.pt across failed/preempted
# attempts, so a retried job resumes. A job Snakemake runs again (changed settings in
# `params.cfg`, changed inputs, --forcerun) has lost its run.json and trains from step 0:
# a finished run's checkpoint is never resumed, and `--drop-stale-checkpoint` deletes the files
# of a run whose settings or input data differ (by hand, `slotcov train` refuses them instead).


rule train:
    input:
        unpack(train_inputs),
    output:
        f"{RUN}/run.json",
    params:
        config=CONFIG,
        cfg=cell_config,
        data=lambda wc, input: train_data_flags(wc, input),
        sets=set_flags,
        run=run_dir,
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    conda:
        ENV
    log:
        "logs/train/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/bench/train/{dataset}/{method}/seed{seed}.tsv"
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    shell:
        "slotcov train --config {params.config} --cell {wildcards.dataset}/{wildcards.method} "
        "--seed {wildcards.seed} {params.sets} {params.data} --out {params.run} --drop-stale-checkpoint "
        "> {log} 2>&1"


# A COCO cell trained under a pipeline of data.coco.train_pipelines other than the primary:
# the same job on that pipeline's training split and features, in its own run folder (RUN_UNDER).
if COCO_OTHER_TRAIN:

    use rule train as train_under with:
        output:
            f"{RUN_UNDER}/run.json",
        wildcard_constraints:
            dataset="coco",
            method="|".join(TRAINED_METHODS),
            pipeline="|".join(COCO_OTHER_TRAIN),
        log:
            "logs/train/{dataset}/{method}/seed{seed}-{pipeline}.log",
        benchmark:
            "logs/bench/train/{dataset}/{method}/seed{seed}-{pipeline}.tsv"


# The bottleneck sweep: the same job with `--set reg.cov_weight={beta}` (set_flags, cell_config) in its own folder.
use rule train as train_sweep with:
    output:
        f"{SWEEP_RUN}/run.json",
    log:
        "logs/train/sweep/{dataset}/{method}/beta{beta}/seed{seed}.log",
    benchmark:
        "logs/bench/train/sweep/{dataset}/{method}/beta{beta}/seed{seed}.tsv"
