# Property probing of the frozen ColoredMDSprites slots (Table 2).


rule probe:
    input:
        model="results/runs/cmdsprites/{method}/seed{seed}/model.pt",
        train="data/cmdsprites/train",
        test="data/cmdsprites/eval",
    output:
        probe="results/probe/cmdsprites/{method}/seed{seed}.json",
        provenance="results/provenance/probe/cmdsprites/{method}/seed{seed}.json",
    params:
        config=CONFIG,
        probe=json.dumps(PROBE, sort_keys=True),
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    conda:
        ENV
    log:
        "logs/probe/cmdsprites/{method}/seed{seed}.log",
    benchmark:
        "logs/bench/probe/cmdsprites/{method}/seed{seed}.tsv"
    threads: res("probe", "threads")
    resources:
        mem_mb=res("probe", "mem_mb"),
        runtime=res("probe", "runtime"),
    shell:
        "slotcov probe --config {params.config} --cell cmdsprites/{wildcards.method} "
        "--run results/runs/cmdsprites/{wildcards.method}/seed{wildcards.seed} "
        "--train-data {input.train} --test-data {input.test} --out {output.probe} "
        "--provenance {output.provenance} > {log} 2>&1"
