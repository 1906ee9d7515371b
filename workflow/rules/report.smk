# Tables 1-3, figures and the PDF report from everything under results/.


localrules:
    tables,
    figures,
    claims,
    report,


rule tables:
    input:
        all_results(),
    output:
        directory("reports/tables"),
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
        directory("reports/figures"),
    conda:
        ENV
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
        directory("reports/claims"),
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
    output:
        "reports/report.pdf",
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
        "slotcov report --tables {input.tables} --figures {input.figures} --results results "
        "--out {output} > {log} 2>&1"
