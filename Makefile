# The two commands of the README: `make demo` and `make test`. Both create .venv if missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint slurm-up latex clean-demo

$(STAMP): pyproject.toml envs/requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r envs/requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores 2 all

test: $(STAMP)
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint

# Delete what `make demo` wrote: every output of its DAG (Snakemake lists them; the demo downloads
# nothing), results/ (checkpoints, logs, provenance), logs/, the report's sources and the
# workflow's derived config. Keeps .venv. The paper preset writes the same paths: use it in a demo clone.
clean-demo:
	@test -x $(VENV)/bin/snakemake || { echo "clean-demo: no $(VENV); run 'make install' first" >&2; exit 2; }
	$(VENV)/bin/snakemake --cores 1 --delete-all-output all
	rm -rf results logs .snakemake/slotcov reports/numbers.tex reports/report.tex reports/report.log \
		reports/workflow-report.html
	find data reports -mindepth 1 -type d -empty -delete

# A one-machine SLURM cluster for the end-to-end SLURM test (root, Debian).
slurm-up:
	bash scripts/slurm-up.sh

# The Debian TeX Live packages that build reports/report.pdf (root, Debian).
latex:
	bash scripts/install-latex.sh
