#!/usr/bin/env bash
# Copies a study's REPORT.md, report.json and its steps' figures (and sweep reports) from OUT into DEST, with the
# layout REPORT.md's relative links expect. docs/make_figures.sh and docs/make_recipe_report.sh end with it.
# Usage: bash docs/copy_study_report.sh OUT DEST
set -euo pipefail
OUT=$1 DEST=$2
rm -rf "$DEST" && mkdir -p "$DEST"
cp "$OUT/REPORT.md" "$OUT/report.json" "$DEST/"
[ -e "$OUT/findings.png" ] && cp "$OUT/findings.png" "$DEST/"  # the Findings' summary figure
for figure in "$OUT"/*/{study_*.png,summary.md,acc_vs_*.png,curves.png,compare.png}; do
    [ -e "$figure" ] || continue
    step=$(basename "$(dirname "$figure")")
    mkdir -p "$DEST/$step"
    cp "$figure" "$DEST/$step/"
done
