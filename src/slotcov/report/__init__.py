"""From result files to what a reader sees (the rules of workflow/rules/report.smk).

Modules: results (reading result files into pandas), tables (Tables 1-3), figures, claims
(the claims ledger), latex (the LaTeX report, `slotcov report`) and pdf (the same report
drawn with matplotlib).
"""
