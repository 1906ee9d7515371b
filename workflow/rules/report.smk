# Tables 1-3, figures, the claims ledger and the PDF report from the result files.
# The commands read the folder `results` (params.results); every file they read there is a
# declared input, every file they write a declared output. Training logs (log.csv) are written
# by the train job beside its run record run.json, which stands for them as the input.
# The report() marks put them into Snakemake's HTML report (`snakemake --report
# reports/workflow-report.html`), captions in workflow/report/*.rst.
from slotcov.report.figures import FIGURES
from slotcov.report.plots import TERMS as PLOT_TERMS


include: "report_inputs.smk"


localrules:
    tables,
    figures,
    plots,
    claims,
    report,


rule tables:
    input:
        metrics=cell_targets(),
        probe=probe_targets(),
        details=details_of(cell_targets() + probe_targets()),
        provenance=provenance_of(cell_targets() + probe_targets()),
    output:
        tables=report(
            directory("reports/tables"),
            patterns=["{name}.csv"],
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "{name}"},
        ),
        numbers="reports/numbers.tex",
    params:
        results=results_folder,
    conda:
        ENV
    log:
        "logs/report/tables.log",
    benchmark:
        "logs/bench/report/tables.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    shell:
        "slotcov tables --results {params.results} --out {output.tables} --numbers {output.numbers} > {log} 2>&1"


rule figures:
    input:
        samples=sample_targets(),
        runs=run_records(),
        sweep=sweep_targets(),
    output:
        report(
            directory("reports/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    conda:
        ENV
    params:
        results=results_folder,
        captions=dict(FIGURES),  # for the HTML report's captions (figures.rst)
    log:
        "logs/report/figures.log",
    benchmark:
        "logs/bench/report/figures.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    shell:
        "slotcov figures --results {params.results} --out {output} > {log} 2>&1"


# Training curves for `dvc plots show`: one CSV per logged term (one line per run), drawn by dvc.yaml.
rule plots:
    input:
        runs=run_records(),
    output:
        expand("reports/plots/{term}.csv", term=PLOT_TERMS),
    params:
        results=results_folder,
        out=lambda wc, output: Path(output[0]).parent,
    conda:
        ENV
    log:
        "logs/report/plots.log",
    benchmark:
        "logs/bench/report/plots.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    shell:
        "slotcov plots --results {params.results} --out {params.out} > {log} 2>&1"


rule claims:
    input:
        metrics=cell_targets(),
        probe=probe_targets(),
        details=details_of(cell_targets() + probe_targets()),
        runs=run_records(),
    output:
        report(directory("reports/claims"), patterns=["claims.csv"], caption="../report/claims.rst", category="Claims"),
    params:
        results=results_folder,
    conda:
        ENV
    log:
        "logs/report/claims.log",
    benchmark:
        "logs/bench/report/claims.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    shell:
        "slotcov claims --results {params.results} --out {output} > {log} 2>&1"


rule report:
    input:
        tables="reports/tables",
        figures="reports/figures",
        claims="reports/claims",
        numbers="reports/numbers.tex",
        metrics=cell_targets(),  # the FG-ARI section and the provenance table
        probe=probe_targets(),
        details=details_of(cell_targets() + probe_targets()),
        provenance=provenance_of(cell_targets() + probe_targets()),
    output:
        pdf=report("reports/report.pdf", caption="../report/report_pdf.rst", category="Report"),
        tex="reports/report.tex",
    params:
        results=results_folder,
    conda:
        ENV
    log:
        cmd="logs/report/report.log",
        latex="logs/report/pdflatex.log",  # pdflatex's output, only when it fails
    benchmark:
        "logs/bench/report/report.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    shell:
        "slotcov report --tables {input.tables} --figures {input.figures} --claims {input.claims} "
        "--numbers {input.numbers} --results {params.results} --out {output.pdf} --tex {output.tex} "
        "--latex-log {log.latex} > {log.cmd} 2>&1"
