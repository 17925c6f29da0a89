#!/usr/bin/env bash
# Regenerates docs/study_report/ (REPORT.md, report.json and the study's figures) with the Fashion-MNIST study of
# docs/study.md: the original report on a CPU scale, as conf/study/lab_report.yaml's `planned` fixes it: a fixed
# 5,000-image training subset at batch 64 (71 optimizer steps an epoch), every run scored at its last epoch
# (dataset.val_split=0), 16-wide nets, 5 epochs (MultiStepLR's milestones at 3 and 4: the original's 30 and 40 of
# 50, scaled), seeds 1-3 and t3 at four (the plan's pilot says why),
# and task 6 on a drawn 4-class arrow folder whose left and right arrows are mirror images (200 train / 50 test
# 32x32 images a class; tests/images.py draws it; the report calls it synthetic), and on real images: Fashion-MNIST
# (t6_real) and digits (t6_digits). Needs apt-get install dataset-fashion-mnist.
# Usage: bash docs/make_figures.sh   (OUT=dir puts the study elsewhere; rerun to continue an interrupted study,
# rm -rf the dir first to train everything again)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-studies/docs}
SIGNS=${SIGNS:-studies/docs_signs}
FM_ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
[ -d "$SIGNS" ] || "$PY" -c "import sys; from pathlib import Path; from tests.images import arrow_folder; \
arrow_folder(Path(sys.argv[1]), {'train_dataset': 200, 'test_dataset': 50}, size=32)" "$SIGNS"

status=0
"$PY" -m lab.study "study.dir=$OUT" dataset=fashion_mnist "dataset.root=$FM_ROOT" dataset.train_subset=5000 \
    dataset.val_split=0 dataset.batch_size=64 trainer.max_epochs=5 model.base_width=16 seed=1,2,3 "study.signs_root=$SIGNS" \
    'study.plan.t3b.overrides=["scheduler.milestones=[3,4]"]' 'study.plan.t3.overrides=["seed=1,2,3,4"]' \
    study.plan.t6.synthetic=true || status=$?

# REPORT.md links each step's figures relative to the study dir: copy them with that layout, and each step's
# sweep report (summary.md and its figures), which docs/sweeps.md shows.
bash docs/copy_study_report.sh "$OUT" docs/study_report
echo "docs/study_report/REPORT.md written (lab.study exit $status)"
exit $status
