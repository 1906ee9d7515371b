# Tables, figures, the claims ledger and the PDF report from the result files.
# The commands read the folder `results` (params.results); every file they read there is a
# declared input, every file they write a declared output: one job per table (TABLES) and per
# figure (FIGURES), so a deleted table or figure is rebuilt on its own (`snakemake
# reports/figures/sweep_beta.png`, or the target rules `tables`, `figures`, `all`). Training logs
# (log.csv) are written by the train job beside its run record run.json, which stands for them.
# The report() marks put them into Snakemake's HTML report (`snakemake --report
# reports/workflow-report.html`), captions in workflow/report/*.rst.


from slotcov.report.plots import TERMS as PLOT_TERMS


include: "report_inputs.smk"


localrules:
    table,
    numbers,
    figure,
    plots,
    claims,
    report,


rule table:
    input:
        metrics=cell_targets(),
        probe=probe_targets(),
        provenance=provenance_of(cell_targets() + probe_targets()),
        details=details_of(cell_targets() + probe_targets()),
    output:
        csv=report(
            "reports/tables/{table}.csv",
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        tex="reports/tables/{table}.tex",
    params:
        results=results_folder,
        out=lambda wc, output: Path(output.csv).parent,
        captions=dict(TABLES),  # for the HTML report's captions (tables.rst)
    wildcard_constraints:
        table="|".join(name for name, _ in TABLES),
    conda:
        ENV
    log:
        "logs/report/tables/{table}.log",
    benchmark:
        "logs/bench/report/tables/{table}.tsv"
    threads: threads_of("report")
    resources:
        **resources_of("report"),
    shell:
        "slotcov tables --results {params.results} --out {params.out} --only {wildcards.table} > {log} 2>&1"


rule numbers:
    input:
        metrics=cell_targets(),
        probe=probe_targets(),
        provenance=provenance_of(cell_targets() + probe_targets()),
        details=details_of(cell_targets() + probe_targets()),
    output:
        "reports/numbers.tex",
    params:
        results=results_folder,
    conda:
        ENV
    log:
        "logs/report/numbers.log",
    benchmark:
        "logs/bench/report/numbers.tsv"
    threads: threads_of("report")
    resources:
        **resources_of("report"),
    shell:
        "slotcov tables --results {params.results} --numbers {output} --only > {log} 2>&1"


rule figure:
    input:
        metrics=cell_targets(),  # the stripe score of every cell
        samples=sample_targets(),
        runs=run_records(),
        sweep=sweep_targets(),
    output:
        png=report(
            "reports/figures/{figure}.png",
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf="reports/figures/{figure}.pdf",
    params:
        results=results_folder,
        out=lambda wc, output: Path(output.png).parent,
        captions=dict(FIGURES),  # for the HTML report's captions (figures.rst)
    wildcard_constraints:
        figure="|".join(name for name, _ in FIGURES),
    conda:
        ENV
    log:
        "logs/report/figures/{figure}.log",
    benchmark:
        "logs/bench/report/figures/{figure}.tsv"
    threads: threads_of("report")
    resources:
        **resources_of("report"),
    shell:
        "slotcov figures --results {params.results} --out {params.out} --only {wildcards.figure} > {log} 2>&1"


rule tables:
    input:
        table_targets(),
        "reports/numbers.tex",


rule figures:
    input:
        figure_targets(),


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
    threads: threads_of("report")
    resources:
        **resources_of("report"),
    shell:
        "slotcov plots --results {params.results} --out {params.out} > {log} 2>&1"


rule claims:
    input:
        metrics=cell_targets(),
        probe=probe_targets(),
        details=details_of(cell_targets() + probe_targets()),
        runs=run_records(),
    output:
        report(
            directory("reports/claims"),
            patterns=["{file}.csv"],  # summary.csv (one row per claim) and claims.csv (every test row)
            caption="../report/claims.rst",
            category="Claims",
            labels={"file": "{file}.csv"},
        ),
    params:
        results=results_folder,
    conda:
        ENV
    log:
        "logs/report/claims.log",
    benchmark:
        "logs/bench/report/claims.tsv"
    threads: threads_of("report")
    resources:
        **resources_of("report"),
    shell:
        "slotcov claims --results {params.results} --out {output} > {log} 2>&1"


rule report:
    input:
        tables=table_targets(),
        figures=figure_targets(),
        claims="reports/claims",
        numbers="reports/numbers.tex",
        metrics=cell_targets(),  # the FG-ARI section and the provenance table
        probe=probe_targets(),
        provenance=provenance_of(cell_targets() + probe_targets()),
        details=details_of(cell_targets() + probe_targets()),
    output:
        pdf=report("reports/report.pdf", caption="../report/report_pdf.rst", category="Report"),
        tex="reports/report.tex",
    params:
        results=results_folder,
        tables=lambda wc, input: Path(input.tables[0]).parent,
        figures=lambda wc, input: Path(input.figures[0]).parent,
    conda:
        ENV
    log:
        cmd="logs/report/report.log",
        latex="logs/report/pdflatex.log",  # pdflatex's output, only when it fails
    benchmark:
        "logs/bench/report/report.tsv"
    threads: threads_of("report")
    resources:
        **resources_of("report"),
    shell:
        "slotcov report --tables {params.tables} --figures {params.figures} --claims {input.claims} "
        "--numbers {input.numbers} --results {params.results} --out {output.pdf} --tex {output.tex} "
        "--latex-log {log.latex} > {log.cmd} 2>&1"
