# Evaluation: FG-ARI / mBO / MSE of each finished run on the evaluation split, plus the
# evaluation samples the figures draw; coco/blockmasks is scored without training. A COCO
# job evaluates under every COCO pipeline (data/coco/eval-{pipeline}, data/features/eval-{pipeline};
# the flags come from eval_data_flags in common.smk). Provenance goes to results/provenance/
# (same relative path), outside the folders DVC reads as metrics.

rule evaluate:
    input:
        unpack(eval_inputs),
        model="results/runs/{dataset}/{method}/seed{seed}/model.pt",
    output:
        metrics="results/metrics/{dataset}/{method}/seed{seed}.json",
        provenance="results/provenance/metrics/{dataset}/{method}/seed{seed}.json",
        samples="results/samples/{dataset}/{method}/seed{seed}.npz",
    params:
        config=CONFIG,
        cfg=cell_config,
        eval=json.dumps(EVAL, sort_keys=True),
        data=eval_data_flags,
        pipelines=coco_pipelines_param,  # rerun trigger: a COCO pipeline's settings changed
        batch_size=EVAL.get("batch_size", 64),
        n_samples=EVAL.get("n_samples", 8),
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    conda:
        ENV
    log:
        "logs/evaluate/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/bench/evaluate/{dataset}/{method}/seed{seed}.tsv"
    threads: res("evaluate", "threads")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=res("evaluate", "gpu"),
    shell:
        "slotcov evaluate --config {params.config} --cell {wildcards.dataset}/{wildcards.method} "
        "--run results/runs/{wildcards.dataset}/{wildcards.method}/seed{wildcards.seed} "
        "{params.data} --batch-size {params.batch_size} --n-samples {params.n_samples} "
        "--samples {output.samples} --out {output.metrics} --provenance {output.provenance} > {log} 2>&1"


rule evaluate_blockmasks:
    input:
        unpack(lambda wc: split_inputs("coco", "eval")),  # every COCO pipeline
    output:
        metrics="results/metrics/coco/blockmasks/seed{seed}.json",
        provenance="results/provenance/metrics/coco/blockmasks/seed{seed}.json",
    params:
        config=CONFIG,
        data=eval_data_flags,
        pipelines=coco_pipelines_param,
        num_slots=lambda wc: config.get("datasets", {}).get("coco", {}).get("model", {}).get("num_slots", 7),
        batch_size=EVAL.get("batch_size", 64),
    conda:
        ENV
    log:
        "logs/evaluate/coco/blockmasks/seed{seed}.log",
    benchmark:
        "logs/bench/evaluate/coco/blockmasks/seed{seed}.tsv"
    threads: res("evaluate", "threads")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
    shell:
        "slotcov evaluate --config {params.config} --cell coco/blockmasks {params.data} "
        "--batch-size {params.batch_size} --out {output.metrics} "
        "--provenance {output.provenance} > {log} 2>&1"


rule evaluate_sweep:
    input:
        unpack(eval_inputs),
        model="results/sweep/runs/{dataset}/{method}/beta{beta}/seed{seed}/model.pt",
    output:
        metrics="results/sweep/{dataset}/{method}/beta{beta}/seed{seed}.json",
        provenance="results/provenance/sweep/{dataset}/{method}/beta{beta}/seed{seed}.json",
    params:
        config=CONFIG,
        cfg=cell_config,
        eval=json.dumps(EVAL, sort_keys=True),
        data=eval_data_flags,
        batch_size=EVAL.get("batch_size", 64),
    conda:
        ENV
    log:
        "logs/evaluate/sweep/{dataset}/{method}/beta{beta}/seed{seed}.log",
    benchmark:
        "logs/bench/evaluate/sweep/{dataset}/{method}/beta{beta}/seed{seed}.tsv"
    threads: res("evaluate", "threads")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=res("evaluate", "gpu"),
    shell:
        "slotcov evaluate --config {params.config} --cell {wildcards.dataset}/{wildcards.method} "
        "--run results/sweep/runs/{wildcards.dataset}/{wildcards.method}/beta{wildcards.beta}/seed{wildcards.seed} "
        "{params.data} --batch-size {params.batch_size} --n-samples 0 "
        "--out {output.metrics} --provenance {output.provenance} > {log} 2>&1"
