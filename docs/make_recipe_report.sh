#!/usr/bin/env bash
# Regenerates docs/recipe_report/ (REPORT.md, report.json, the study's figures) with conf/study/recipe.yaml: what each
# component of +experiment=recipe_cpu is worth on Fashion-MNIST at a CPU scale, fixed before any of its runs: a
# class-balanced 10,000-image training subset (9,000 trained on, 1,000 validate) scored on all 10,000 test images,
# WRN-16-2 (the recipe's WRN-16-4 at half the width), 12 epochs, seeds 1, 2, 3 (21 jobs, ~50 min on 2 idle cores).
# cpu_threads=null: every core for every job (auto would take one when a job starts while another process is busy,
# and keep it for the whole job).
# Needs apt-get install dataset-fashion-mnist.
# Usage: bash docs/make_recipe_report.sh   (OUT=dir puts the study elsewhere; rerun to continue an interrupted study)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-studies/recipe_docs}
FM_ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}

status=0
"$PY" -m lab.study study=recipe "study.dir=$OUT" dataset=fashion_mnist "dataset.root=$FM_ROOT" \
    dataset.train_subset=10000 model.widen_factor=2 trainer.max_epochs=12 seed=1,2,3 cpu_threads=null || status=$?

bash docs/copy_study_report.sh "$OUT" docs/recipe_report
echo "docs/recipe_report/REPORT.md written (lab.study exit $status)"
exit $status
