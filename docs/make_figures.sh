#!/usr/bin/env bash
# Regenerates the README's example figures on digits (CPU, ~15 min on 2 cores). Usage: bash docs/make_figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/docs}
run() { local name=$1; shift; rm -rf "$OUT/$name"; "$PY" -m lab.train "$@" "hydra.sweep.dir=$OUT/$name" || true; }

run lr_sweep +experiment=lr_sweep dataset=digits trainer.max_epochs=3
run multistep +experiment=multistep dataset=digits trainer.max_epochs=12 '++scheduler.milestones=[6,9]'
run optimizers +experiment=optimizers dataset=digits trainer.max_epochs=3
run models +experiment=models dataset=digits trainer.max_epochs=3
# Distillation: a ResNet50 teacher on digits, then the student alone vs both losses. On 8x8 digits at
# batch 32 the deep nets need lr 0.01 rather than the CIFAR recipes' 0.05 (0.05 trains ResNet50 to ~0.2).
rm -rf "$OUT/teacher"
"$PY" -m lab.train +experiment=teacher dataset=digits trainer.max_epochs=15 optimizer.lr=0.01 "hydra.run.dir=$OUT/teacher"
run distill -m +experiment=distill_soft dataset=digits trainer.max_epochs=10 optimizer.lr=0.01 distill=none,soft_target,logits \
    "distill.teacher_ckpt=$OUT/teacher/checkpoints/best.ckpt"

cp "$OUT/lr_sweep/acc_vs_optimizer.lr.png" docs/lr_sweep_acc_vs_lr.png
cp "$OUT/multistep/curves.png" docs/multistep_curves.png
cp "$OUT/optimizers/compare.png" docs/optimizers_compare.png
cp "$OUT/models/compare.png" docs/models_compare.png
cp "$OUT/distill/compare.png" docs/distill_compare.png
cp "$OUT/distill/curves.png" docs/distill_curves.png
for d in lr_sweep multistep optimizers models distill; do echo "## $d"; cat "$OUT/$d/summary.md"; done > docs/summaries.md
echo "teacher: $(grep -E '"test_acc"' "$OUT/teacher/results.json")" >> docs/summaries.md
