# Frozen ViT tokens of the prepared COCO splits (computed once, read by every COCO cell).


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
        threads: res("download", "threads")
        resources:
            mem_mb=res("download", "mem_mb"),
            runtime=res("download", "runtime"),
        shell:
            "slotcov download --name dino_vitb16 --out {output} > {log} 2>&1"


rule extract_features:
    input:
        images="data/coco/{part}",
        weights=weights_input,
    output:
        directory("data/features/{part}"),
    params:
        model=VIT,
        weights=VIT_WEIGHTS,
        batch_size=FEATURES.get("batch_size", 64),
    conda:
        ENV
    log:
        "logs/features/{part}.log",
    benchmark:
        "logs/bench/features/{part}.tsv"
    threads: res("extract_features", "threads")
    resources:
        mem_mb=res("extract_features", "mem_mb"),
        runtime=res("extract_features", "runtime"),
        gpu=res("extract_features", "gpu"),
    shell:
        "slotcov extract-features --images {input.images} --model {params.model} --weights {params.weights} "
        "--batch-size {params.batch_size} --out {output} > {log} 2>&1"
