# Training: one job per (dataset, method, seed), plus the bottleneck sweep over cov_weight.
# The run folder keeps ckpt.pt across failed/preempted attempts (only model.pt is a declared
# output), so a retried job resumes. `params.cfg` is the cell's resolved settings: changing
# them re-runs the job, and `--drop-stale-checkpoint` discards a checkpoint of older settings
# (by hand, `slotcov train` refuses such a checkpoint instead).


rule train:
    input:
        unpack(train_inputs),
    output:
        f"{RUN}/model.pt",
    params:
        config=CONFIG,
        cfg=cell_config,
        data=lambda wc, input: train_data_flags(wc, input),
        run=run_dir,
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    conda:
        ENV
    log:
        "logs/train/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/bench/train/{dataset}/{method}/seed{seed}.tsv"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
    shell:
        "slotcov train --config {params.config} --cell {wildcards.dataset}/{wildcards.method} "
        "--seed {wildcards.seed} {params.data} --out {params.run} --drop-stale-checkpoint "
        "> {log} 2>&1"


rule train_sweep:
    input:
        unpack(train_inputs),
    output:
        f"{SWEEP_RUN}/model.pt",
    params:
        config=CONFIG,
        cfg=cell_config,
        data=lambda wc, input: train_data_flags(wc, input),
        run=run_dir,
    conda:
        ENV
    log:
        "logs/train/sweep/{dataset}/{method}/beta{beta}/seed{seed}.log",
    benchmark:
        "logs/bench/train/sweep/{dataset}/{method}/beta{beta}/seed{seed}.tsv"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
    shell:
        "slotcov train --config {params.config} --cell {wildcards.dataset}/{wildcards.method} "
        "--seed {wildcards.seed} --set reg.cov_weight={wildcards.beta} {params.data} "
        "--out {params.run} --drop-stale-checkpoint > {log} 2>&1"
