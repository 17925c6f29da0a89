#!/usr/bin/env bash
# BENCHMARKS.md "Fashion-MNIST": full-width ResNet10 and ResNet18 at the lab's defaults (SGD lr 0.03 momentum 0.9,
# wd 1e-4, batch 256, constant lr) for 10 epochs, ResNet10 also with a cosine schedule, and the ResNet50 teacher
# recipe (+experiment=teacher) on a 10,000-image subset for the stability check. Each run's results.json and
# metrics.csv are in OUT. About 3 h on 2 idle cores (bf16-mixed). Needs apt-get install dataset-fashion-mnist.
# bash docs/fmnist_benchmark.sh [OUT]   (OUT default multirun/fmnist_benchmark; a finished run is skipped)
set -euo pipefail
OUT=${1:-multirun/fmnist_benchmark}
PY=${PY:-python}
FM="dataset=fashion_mnist dataset.root=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}"
run() {  # run NAME OVERRIDES...: one lab.train run into OUT/NAME, resumed if an earlier command was cut short
    local name=$1; shift
    "$PY" -m lab.train $FM "$@" resume=true "hydra.run.dir=$OUT/$name"
}
run resnet10_defaults trainer.max_epochs=10
run resnet10_cosine trainer.max_epochs=10 scheduler=cosine
run resnet50_teacher_10k +experiment=teacher dataset.train_subset=10000 trainer.max_epochs=5
run resnet18_defaults trainer.max_epochs=10 model=resnet18
