#!/usr/bin/env bash
# Install the Debian TeX Live packages that `slotcov report` needs to build reports/report.pdf.
# Idempotent: does nothing when pdflatex and every style file the report uses are already there.
#   texlive-latex-base         pdflatex, article, graphicx, geometry, longtable, array, hyperref; pulls in
#                              texlive-base (Type 1 Computer Modern fonts, the only fonts the report uses)
#   texlive-latex-recommended  booktabs, caption
set -euo pipefail

PACKAGES=(texlive-latex-base texlive-latex-recommended)
STYLES=(article.cls graphicx.sty booktabs.sty geometry.sty longtable.sty array.sty caption.sty hyperref.sty)

have_all() {
  command -v pdflatex >/dev/null 2>&1 || return 1
  for sty in "${STYLES[@]}"; do
    [ -n "$(kpsewhich "$sty" 2>/dev/null)" ] || return 1
  done
}

if have_all; then
  echo "LaTeX is already installed: $(command -v pdflatex)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-latex: run as root or install sudo" >&2; exit 1; }
  SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

if ! have_all; then
  echo "install-latex: pdflatex or a style file is still missing after installing ${PACKAGES[*]}" >&2
  exit 1
fi
echo "LaTeX ready: $(pdflatex --version | head -1)"
