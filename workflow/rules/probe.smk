# Property probing of the frozen ColoredMDSprites slots (Table 2): the probe split holds the
# probe's training, validation and test scenes, none seen by the slot model (config check).


rule probe:
    input:
        run=lambda wc: f"{run_dir(wc, 'cmdsprites')}/run.json",
        data="data/cmdsprites/probe",
    output:
        probe="results/probe/cmdsprites/{method}/seed{seed}.json",
        details="results/details/probe/cmdsprites/{method}/seed{seed}.json",
        provenance="results/provenance/probe/cmdsprites/{method}/seed{seed}.json",
    params:
        config=CONFIG,
        probe=json.dumps(PROBE, sort_keys=True),
        run=lambda wc: run_dir(wc, "cmdsprites"),
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    conda:
        ENV
    log:
        "logs/probe/cmdsprites/{method}/seed{seed}.log",
    benchmark:
        "logs/bench/probe/cmdsprites/{method}/seed{seed}.tsv"
    threads: threads_of("probe")
    resources:
        **resources_of("probe"),
    shell:
        "slotcov probe --config {params.config} --cell cmdsprites/{wildcards.method} "
        "--seed {wildcards.seed} --run {params.run} "
        "--data {input.data} --out {output.probe} --details {output.details} "
        "--provenance {output.provenance} > {log} 2>&1"
