# Tables 1-3, figures and the PDF report from everything under results/.
# The report() marks put them into Snakemake's HTML report (`snakemake --report
# reports/workflow-report.html`), captions in workflow/report/*.rst.
from slotcov.figures import FIGURES


localrules:
    tables,
    figures,
    claims,
    report,


rule tables:
    input:
        all_results(),
    output:
        report(
            directory("reports/tables"),
            patterns=["{name}.csv"],
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "{name}"},
        ),
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
        "slotcov tables --results results --out {output} > {log} 2>&1"


rule figures:
    input:
        all_results(),
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
        "slotcov figures --results results --out {output} > {log} 2>&1"


rule claims:
    input:
        cell_targets(),  # what the ledger reads; also results/runs/*/seed*/log.csv, made before each metrics file
        probe_targets(),
    output:
        report(directory("reports/claims"), patterns=["claims.csv"], caption="../report/claims.rst", category="Claims"),
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
        "slotcov claims --results results --out {output} > {log} 2>&1"


rule report:
    input:
        tables="reports/tables",
        figures="reports/figures",
        claims="reports/claims",
    output:
        report("reports/report.pdf", caption="../report/report_pdf.rst", category="Report"),
    conda:
        ENV
    log:
        "logs/report/report.log",
    benchmark:
        "logs/bench/report/report.tsv"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    shell:
        "slotcov report --tables {input.tables} --figures {input.figures} --claims {input.claims} "
        "--results results --out {output} > {log} 2>&1"
