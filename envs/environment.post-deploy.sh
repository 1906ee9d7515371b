#!/usr/bin/env bash
# Installs slotcov itself into a new conda env of envs/environment.yaml (the pins there are
# its dependencies). Snakemake runs this file once per env it builds for `--sdm conda`, with the
# env active and Snakemake's working directory as the current one: the slotcov repository,
# which the rules already require (they read and write data/, results/ and reports/ there).
set -euo pipefail
if ! grep -qs '^name = "slotcov"$' pyproject.toml; then
    echo "envs/environment.post-deploy.sh: $PWD is not the slotcov repository; run snakemake from its root" >&2
    exit 1
fi
# editable: the jobs run the repository's current code, as with the project's .venv
python -m pip install --no-deps -e .
