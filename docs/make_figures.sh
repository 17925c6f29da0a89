#!/usr/bin/env bash
# Regenerates docs/study_report/ (REPORT.md, its figures and each step's summary.md) with the one lab.study
# command of docs/study.md: all seven steps of the lab's report on scikit-learn's digits, 3 epochs, 16-wide
# nets (12 epochs for MultiStepLR, its milestones at 6 and 9), and task 6 on a drawn 4-class arrow folder
# (200 train / 50 test 32x32 images per class; tests/images.py draws it). About 3 min on 2 idle cores.
# Usage: bash docs/make_figures.sh   (OUT=dir puts the study elsewhere; rerun to continue an interrupted
# study, rm -rf the dir first to train everything again)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-studies/docs}
SIGNS=${SIGNS:-studies/docs_signs}
[ -d "$SIGNS" ] || "$PY" -c "import sys; from pathlib import Path; from tests.images import arrow_folder; \
arrow_folder(Path(sys.argv[1]), {'train_dataset': 200, 'test_dataset': 50}, size=32)" "$SIGNS"

status=0
"$PY" -m lab.study "study.dir=$OUT" dataset=digits trainer.max_epochs=3 model.base_width=16 \
    "study.signs_root=$SIGNS" 'study.plan.t3b.overrides=["trainer.max_epochs=12","++scheduler.milestones=[6,9]"]' \
    || status=$?

# REPORT.md links each step's figures and summary.md relative to the study dir: copy them with that layout.
rm -rf docs/study_report && mkdir -p docs/study_report
cp "$OUT/REPORT.md" "$OUT/report.json" docs/study_report/
for summary in "$OUT"/*/summary.md; do
    step=$(basename "$(dirname "$summary")")
    mkdir -p "docs/study_report/$step"
    cp "$summary" "$OUT/$step"/*.png "docs/study_report/$step/"
done
echo "docs/study_report/REPORT.md written (lab.study exit $status)"
exit $status
