#!/bin/sh
# The command of dvc.yaml's stage: Snakemake of the environment slotcov is installed in, found
# without activating that environment, so `.venv/bin/dvc repro` works as `dvc repro` does in an
# activated venv or conda env. Tried in order, the first directory holding `snakemake` wins:
#   1. the interpreter running DVC: argv[0] of the python process that started this script through
#      shells only (Linux /proc), e.g. /path/.venv/bin/python or /opt/conda/envs/slotcov/bin/python
#      (the shebang of the `dvc` that ran);
#   2. the active virtualenv or conda env ($VIRTUAL_ENV/bin, $CONDA_PREFIX/bin);
#   3. the Makefile's .venv beside this file's workflow folder;
#   4. `snakemake` on PATH.
# The jobs find `slotcov` beside the Snakemake that runs them (workflow/rules/common.smk).
# Usage: sh workflow/snakemake.sh SNAKEMAKE_ARGS...

root=$(cd "$(dirname "$0")/.." && pwd)

dvc_bin() {  # the bin folder of the python that started this script through shells only (DVC), if any
    pid=$PPID
    while [ -r "/proc/$pid/cmdline" ]; do
        exe=$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -n 1)
        case "${exe##*/}" in
            python*) case "$exe" in /*) dirname "$exe"; return 0 ;; esac; return 1 ;;
            sh | bash | dash | zsh | ksh | -*sh) pid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status") ;;
            *) return 1 ;;
        esac
    done
    return 1
}

for bin in "$(dvc_bin)" "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin}" "${CONDA_PREFIX:+$CONDA_PREFIX/bin}" "$root/.venv/bin"; do
    if [ -n "$bin" ] && [ -x "$bin/snakemake" ]; then
        echo "workflow/snakemake.sh: running $bin/snakemake" >&2
        exec "$bin/snakemake" "$@"
    fi
done
if command -v snakemake > /dev/null 2>&1; then
    echo "workflow/snakemake.sh: running $(command -v snakemake) (from PATH)" >&2
    exec snakemake "$@"
fi
echo "workflow/snakemake.sh: no snakemake found beside the python running DVC, in \$VIRTUAL_ENV, \$CONDA_PREFIX," \
     "$root/.venv or on PATH; run 'make install' (creates .venv) or activate the environment slotcov is" \
     "installed in (conda env create -f envs/environment.yaml)" >&2
exit 127
