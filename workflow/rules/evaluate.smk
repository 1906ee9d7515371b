# Evaluation: FG-ARI / mBO / MSE of each finished run on the evaluation split, plus the
# evaluation samples the figures draw; coco/blockmasks is scored without training. A run is
# read through its record run.json: a diverged run gets {"diverged": 1, "diverged_step": N}. A COCO
# job scores the model trained under each pipeline of data.coco.train_pipelines on that pipeline's
# evaluation split (data/coco/eval-{pipeline}, data/features/eval-{pipeline}), block masks under
# every pipeline; the flags come from eval_data_flags in common.smk. The metrics file holds the
# result numbers DVC shows (the primary pipeline's); everything else (counts, the authors' FG-ARI,
# every pipeline's section) goes to the details file results/details/ and provenance to
# results/provenance/ (same relative path), outside the folders DVC reads as metrics.

rule evaluate:
    input:
        unpack(eval_inputs),
        run=f"{RUN}/run.json",
    output:
        metrics="results/metrics/{dataset}/{method}/seed{seed}.json",
        details="results/details/metrics/{dataset}/{method}/seed{seed}.json",
        provenance="results/provenance/metrics/{dataset}/{method}/seed{seed}.json",
        samples="results/samples/{dataset}/{method}/seed{seed}.npz",
    params:
        config=CONFIG,
        cfg=cell_config,
        eval=json.dumps(EVAL, sort_keys=True),
        data=lambda wc, input: eval_data_flags(wc, input),
        pipelines=coco_pipelines_param,  # rerun trigger: a COCO pipeline's settings changed
        sets=set_flags,
        run=run_dir,
        batch_size=EVAL["batch_size"],
        samples=lambda wc, output: f"--n-samples {EVAL['n_samples']} --samples {output.samples}",
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    conda:
        ENV
    log:
        "logs/evaluate/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/bench/evaluate/{dataset}/{method}/seed{seed}.tsv"
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate"),
    shell:
        "slotcov evaluate --config {params.config} --cell {wildcards.dataset}/{wildcards.method} "
        "--seed {wildcards.seed} {params.sets} --run {params.run} {params.data} --batch-size {params.batch_size} "
        "{params.samples} --out {output.metrics} --details {output.details} "
        "--provenance {output.provenance} > {log} 2>&1"


# The bottleneck sweep's runs: the same job (its `--set` from set_flags, which the metrics file records), no samples.
use rule evaluate as evaluate_sweep with:
    input:
        unpack(eval_inputs),
        run=f"{SWEEP_RUN}/run.json",
    output:
        metrics="results/sweep/{dataset}/{method}/beta{beta}/seed{seed}.json",
        details="results/details/sweep/{dataset}/{method}/beta{beta}/seed{seed}.json",
        provenance="results/provenance/sweep/{dataset}/{method}/beta{beta}/seed{seed}.json",
    params:
        samples="--n-samples 0",
    log:
        "logs/evaluate/sweep/{dataset}/{method}/beta{beta}/seed{seed}.log",
    benchmark:
        "logs/bench/evaluate/sweep/{dataset}/{method}/beta{beta}/seed{seed}.tsv"


rule evaluate_blockmasks:
    input:
        unpack(lambda wc: split_inputs("coco", "eval", list(COCO_PIPELINES))),  # every COCO pipeline
    output:
        metrics="results/metrics/coco/blockmasks/seed{seed}.json",
        details="results/details/metrics/coco/blockmasks/seed{seed}.json",
        provenance="results/provenance/metrics/coco/blockmasks/seed{seed}.json",
    params:
        config=CONFIG,
        data=lambda wc, input: eval_data_flags(wc, input),
        pipelines=coco_pipelines_param,
        num_slots=lambda wc: block_mask_slots(config),  # a rerun trigger; the CLI reads the same function
        batch_size=EVAL["batch_size"],
    conda:
        ENV
    log:
        "logs/evaluate/coco/blockmasks/seed{seed}.log",
    benchmark:
        "logs/bench/evaluate/coco/blockmasks/seed{seed}.tsv"
    threads: threads_of("evaluate")
    resources:
        **resources_of("evaluate", gpu=0),  # no model to run
    shell:
        "slotcov evaluate --config {params.config} --cell coco/blockmasks {params.data} "
        "--batch-size {params.batch_size} --out {output.metrics} --details {output.details} "
        "--provenance {output.provenance} > {log} 2>&1"
