#!/usr/bin/env bash
# BENCHMARKS.md "A training core worth its harness" on Fashion-MNIST's whole training set (60,000 images, scored on
# the 10,000 test images), on a 2-core CPU; every result lands in OUT. Needs apt-get install dataset-fashion-mnist.
#   full: +experiment=recipe_cpu (WRN-16-4, 40 epochs) beside lab's defaults on the same net and epochs, as the
#         recipe study's steps `recipe` and `defaults` (one seed: McNemar's test on the same test images). Both
#         train on all 60,000 images (dataset.val_split=0) and so score their last epoch, not a checkpoint picked
#         on the test set. ~100 + ~90 min.
#   fast: the fastest command found to 0.93 (ResNet10 at width 32, 10 epochs; ~10 min).
#   timm: the timm_parity study (timm's resnet18 with the CIFAR stem against lab's resnet18, the recipe, a
#         5,000-image subset, 8 epochs, seeds 1-3; ~25 min).
# bash docs/recipe_benchmark.sh [full|fast|timm ...]   (default: all three; rerun to continue what was cut short)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-studies/recipe_benchmark}
FM="dataset=fashion_mnist dataset.root=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}"
parts=${*:-full fast timm}
for part in $parts; do
    case $part in
        full) "$PY" -m lab.study study=recipe "study.dir=$OUT/full" 'study.steps=[recipe,defaults]' $FM \
                  dataset.val_split=0 trainer.max_epochs=40 seed=1 cpu_threads=null ;;
        fast) "$PY" -m lab.train $FM model=resnet10 model.base_width=32 dataset.val_split=0 dataset.batch_size=128 \
                  optimizer.lr=0.05 optimizer.nesterov=true optimizer.weight_decay=5e-4 scheduler=cosine \
                  trainer.max_epochs=10 loss.label_smoothing=0.1 ema.decay=0.999 test_tta=flip cpu_threads=null \
                  resume=true "hydra.run.dir=$OUT/fast" ;;
        timm) "$PY" -m lab.study study=timm_parity "study.dir=$OUT/timm" $FM dataset.train_subset=5000 \
                  trainer.max_epochs=8 seed=1,2,3 cpu_threads=null ;;
        *) echo "unknown part $part: full, fast or timm" >&2; exit 2 ;;
    esac
done
