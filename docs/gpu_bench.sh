#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md in one device call (device time is scarce: one command, then give it back).
# The device image has torch and Lightning but not Hydra: carry the wheels BENCHMARKS.md names in .wheels/.
#   run(command="bash docs/gpu_bench.sh", carry=[".wheels"], timeout_s=600)
# bench.json is written after each section, so a run cut short keeps what it measured.
set -euo pipefail
python -m pip install -q --no-index --no-deps .wheels/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
out="${OUT:-.}"
# CUDA's own sync check over a training and a validation epoch (tests/test_sync.py, the gpu case).
(python -m pytest -q -p no:cacheprovider tests/test_sync.py 2>&1 || true) | tail -5 | tee "$out/test_sync.txt"
# Uncompiled sections first; compile warm-ups (resnet50 may take minutes) come last.
python -m lab.bench --sections data,train,host,memory,jobs --out "$out/bench.json" | tee "$out/bench.txt"
python -m lab.bench --sections train --compile --out "$out/bench_compile.json" | tee "$out/bench_compile.txt"
