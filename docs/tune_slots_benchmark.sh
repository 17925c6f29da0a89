#!/usr/bin/env bash
# BENCHMARKS.md "Tuning that keeps its slots busy": docs/tune_benchmark.sh's tuning study at its batch-64 setting
# (Fashion-MNIST, 10,000-image subset, 16-wide ResNet10, 10 epochs, 14 trials, first rung after epoch 2, 2 trials at
# once through joblib), run from two checkouts of lab (BEFORE: trials launched a batch of 2 at a time; AFTER: a new
# trial as each ends), interleaved seed by seed in the order A B, B A, A B so that drift of the machine's speed falls
# on both. Each study's tuning.md gives its slot utilisation; `python -m lab.report DIR` renders a BEFORE study's
# tuning.md again with today's code (which has that line) without training anything.
# BEFORE=<checkout> AFTER=<checkout> bash docs/tune_slots_benchmark.sh OUT   (git worktree add <dir> <commit>)
set -euo pipefail
OUT=${1:?usage: BEFORE=dir AFTER=dir bash docs/tune_slots_benchmark.sh OUT}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PY:-python}
FM_ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
run() {  # run NAME CHECKOUT SEED
    (cd "$2" && "$PY" -m lab.train -m hydra/sweeper=tune 'optimizer.lr=tag(log, interval(0.001, 1))' \
        dataset=fashion_mnist dataset.root="$FM_ROOT" dataset.train_subset=10000 dataset.val_split=0.2 \
        trainer.max_epochs=10 model.base_width=16 dataset.batch_size=64 hydra.sweeper.n_trials=14 \
        hydra.sweeper.min_epochs=2 hydra.sweeper.n_jobs=2 hydra/launcher=joblib hydra.launcher.n_jobs=2 \
        hydra.sweeper.seed="$3" hydra.sweep.dir="$OUT/$1/tune_seed$3")
}
run before "$BEFORE" 42; run after "$AFTER" 42
run after "$AFTER" 1; run before "$BEFORE" 1
run before "$BEFORE" 2; run after "$AFTER" 2
