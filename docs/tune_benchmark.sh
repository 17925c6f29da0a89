#!/usr/bin/env bash
# BENCHMARKS.md "Tuning": the lab's 10-point lr grid at 10 epochs beside 20-trial ASHA studies over log-uniform
# lr in [0.001, 1] (at most 10 epochs a trial, 2 at once), one per sampler seed (SEEDS, default "42 1 2"), all
# on digits at base width 16.
# bash docs/tune_benchmark.sh [OUT]   (OUT default multirun/tune_benchmark; rerun it to continue the studies)
set -euo pipefail
OUT=${1:-multirun/tune_benchmark}
PY=${PY:-python}
COMMON="dataset=digits trainer.max_epochs=10 model.base_width=16"
"$PY" -m lab.train +experiment=lr_sweep $COMMON hydra.sweep.dir=$OUT/grid
for seed in ${SEEDS:-42 1 2}; do
    "$PY" -m lab.train -m hydra/sweeper=tune 'optimizer.lr=tag(log, interval(0.001, 1))' $COMMON \
        hydra.sweeper.n_trials=20 hydra.sweeper.n_jobs=2 hydra/launcher=joblib hydra.launcher.n_jobs=2 \
        hydra.sweeper.seed=$seed hydra.sweep.dir=$OUT/tune_seed$seed
done
