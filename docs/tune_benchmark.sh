#!/usr/bin/env bash
# BENCHMARKS.md "Tuning": the lab's 10-point lr grid beside ASHA studies of TRIALS trials (default 20) over
# log-uniform lr in [0.001, 1] (2 trials at once), one per sampler seed (SEEDS, default "42 1 2"), at 10 epochs a
# run; TUNE= adds sweeper settings (TUNE="hydra.sweeper.min_epochs=2"). Default: Fashion-MNIST (apt-get install
# dataset-fashion-mnist), a fixed 10,000-image training subset of which 20% is the validation split the tuner
# sees, 16-wide ResNet10; EXTRA= adds overrides to every run (EXTRA="dataset.batch_size=64"). COMMON= replaces the
# setting (COMMON="dataset=digits trainer.max_epochs=10 model.base_width=16" is the digits benchmark of 2026-12-01).
# GRID=0 leaves the grid out (the before/after slot-utilisation runs of the tuner need only the studies).
# bash docs/tune_benchmark.sh [OUT]   (OUT default multirun/tune_benchmark; rerun it to continue the studies)
set -euo pipefail
OUT=${1:-multirun/tune_benchmark}
PY=${PY:-python}
FM_ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
DEFAULT="dataset=fashion_mnist dataset.root=$FM_ROOT dataset.train_subset=10000 dataset.val_split=0.2 \
trainer.max_epochs=10 model.base_width=16"
COMMON="${COMMON:-$DEFAULT} ${EXTRA:-}"
if [ "${GRID:-1}" != 0 ]; then
    "$PY" -m lab.train +experiment=lr_sweep $COMMON resume=true hydra.sweep.dir=$OUT/grid
fi
for seed in ${SEEDS:-42 1 2}; do
    "$PY" -m lab.train -m hydra/sweeper=tune 'optimizer.lr=tag(log, interval(0.001, 1))' $COMMON \
        hydra.sweeper.n_trials=${TRIALS:-20} ${TUNE:-} hydra.sweeper.n_jobs=2 hydra/launcher=joblib \
        hydra.launcher.n_jobs=2 \
        hydra.sweeper.seed=$seed hydra.sweep.dir=$OUT/tune_seed$seed
done
