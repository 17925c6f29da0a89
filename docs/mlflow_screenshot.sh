#!/usr/bin/env bash
# docs/mlflow_study_grouped.png: a small study on digits logged to MLflow (steps t1-t4, 3 epochs, one seed), then
# `mlflow ui` on its store loaded in headless Chromium, grouped by the step tag (tests/mlflow_ui.py), screenshot.
# Needs the dev extra (mlflow, playwright) and Debian's chromium (apt-get install chromium).
# bash docs/mlflow_screenshot.sh [OUT]   (OUT default /tmp/mlflow_study)
set -euo pipefail
OUT=${1:-/tmp/mlflow_study}
PY=${PY:-python}
"$PY" -m lab.study study.dir="$OUT/study" 'study.steps=[t1,t2,t3,t4]' dataset=digits trainer.max_epochs=3 \
    model.base_width=8 seed=1 logger=mlflow logger.tracking_uri="sqlite:///$OUT/mlflow.db" \
    logger.artifact_location="$OUT/artifacts" || true  # a failed job still shows, as failed
"$PY" -m tests.mlflow_ui "sqlite:///$OUT/mlflow.db" lab_report docs/mlflow_study_grouped.png
