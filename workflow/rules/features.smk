# Frozen ViT tokens of the prepared COCO splits, one store per split and pipeline
# (data/features/{part}-{pipeline}; computed once, read by every COCO cell).


if STAGE_DINO:

    localrules:
        download_dino,

    rule download_dino:
        output:
            DINO_FILE,
        conda:
            ENV
        log:
            "logs/data/download_dino.log",
        benchmark:
            "logs/bench/data/download_dino.tsv"
        threads: threads_of("download")
        resources:
            **resources_of("download"),
        shell:
            "slotcov download --name dino_vitb16 --out {output} > {log} 2>&1"


rule extract_features:
    input:
        images="data/coco/{part}-{pipeline}",
        weights=weights_input,
    output:
        directory("data/features/{part}-{pipeline}"),
    params:
        model=VIT,
        weights=VIT_WEIGHTS,
        normalize=lambda wc: COCO_PIPELINES[wc.pipeline]["normalize"],
        batch_size=FEATURES["batch_size"],
        dtype=FEATURES["dtype"],
    wildcard_constraints:
        pipeline="|".join(COCO_PIPELINES),
    conda:
        ENV
    log:
        "logs/features/{part}-{pipeline}.log",
    benchmark:
        "logs/bench/features/{part}-{pipeline}.tsv"
    threads: threads_of("extract_features")
    resources:
        **resources_of("extract_features"),
    shell:
        "slotcov extract-features --images {input.images} --model {params.model} --weights {params.weights} "
        "--normalize {params.normalize} --dtype {params.dtype} --batch-size {params.batch_size} --out {output} > {log} 2>&1"
