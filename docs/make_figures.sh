#!/usr/bin/env bash
# Regenerates the README's example figures and docs/summaries.md on digits with one study (CPU, ~10 min on 2
# idle cores): tasks 2-5 of the lab's report, 3 epochs (12 for MultiStepLR, its milestones at 6 and 9).
# Distillation: ResNet50 does not train stably on 8x8 images at batch 32 (test accuracy 0.13-0.33 after 3
# epochs at lr 0.03), so the demo's teacher is a full-width ResNet10 (0.99 alone), trained 10 epochs, and its
# student a 16-wide ResNet18 (0.7M parameters). On CIFAR-100 the experiments' ResNet50 -> ResNet18.
# Usage: bash docs/make_figures.sh   (OUT=dir to put the study elsewhere; rerun to continue an interrupted one,
# rm -rf the dir first to train everything again)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-studies/docs}
"$PY" -m lab.study "study.dir=$OUT" 'study.steps=[t2,t3,t3b,t4,t5]' dataset=digits trainer.max_epochs=3 \
    'study.plan.t3b.overrides=["trainer.max_epochs=12","++scheduler.milestones=[6,9]"]' \
    'study.plan.teacher.overrides=["model=resnet10","trainer.max_epochs=10"]' \
    'study.plan.t5.overrides=["model.base_width=16","trainer.max_epochs=10"]' || true

cp "$OUT/t3/acc_vs_optimizer.lr.png" docs/lr_sweep_acc_vs_lr.png
cp "$OUT/t3b/curves.png" docs/multistep_curves.png
cp "$OUT/t2/compare.png" docs/optimizers_compare.png
cp "$OUT/t4/compare.png" docs/models_compare.png
cp "$OUT/t5/compare.png" docs/distill_compare.png
cp "$OUT/t5/curves.png" docs/distill_curves.png
for step in t3:lr_sweep t3b:multistep t2:optimizers t4:models t5:distill; do
    echo "## ${step#*:}"; cat "$OUT/${step%%:*}/summary.md"
done > docs/summaries.md
echo "teacher (ResNet10, 10 epochs): $(grep -E '"test_acc"' "$OUT/teacher/0/results.json")" >> docs/summaries.md
echo "The whole study's report (lab beside the published numbers): $OUT/REPORT.md"
