"""logger=mlflow: a real run logged into a local SQLite store, read back through MLflow's own client."""
import csv
import os
import subprocess
import sys

import pytest

import lab
from lab.config import validate
from lab.errors import ConfigError
from tests.conftest import ROOT, compose, results, run_train


@pytest.mark.slow  # ~20 s: importing mlflow and creating a new store take most of it
def test_an_mlflow_run_holds_the_metrics_csv_values(tmp_path):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    proc = run_train("dataset=digits", "logger=mlflow", "model.base_width=8", "trainer.max_epochs=2",
                     "trainer.accelerator=cpu", "trainer.limit_train_batches=4", f"logger.tracking_uri={store}",
                     f"logger.artifact_location={tmp_path / 'store' / 'artifacts'}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "alembic" not in proc.stderr and "ERROR" not in proc.stderr  # a new store is created quietly
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("lab")
    [run] = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status, run.data.tags["run_dir"]) == ("run", "FINISHED", str(run_dir))
    assert run.data.params["choices/logger"] == "mlflow" and run.data.params["config/model/base_width"] == "8"
    with open(run_dir / "metrics.csv") as f:
        val_acc_csv = [float(row["val_acc"]) for row in csv.DictReader(f)]
    history = sorted(client.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)
    val_acc_mlflow = [m.value for m in history]
    assert len(val_acc_mlflow) == 2 and [round(v, 4) for v in val_acc_mlflow] == [round(v, 4) for v in val_acc_csv]
    test_acc = {round(m.value, 4) for m in client.get_metric_history(run.info.run_id, "test_acc")}
    res = results(run_dir)
    assert {round(res["test_acc_last"], 4), round(res["test_acc_best"], 4)} == test_acc  # both test passes
    assert not (tmp_path / "mlruns").exists() and experiment.artifact_location.endswith("artifacts")


@pytest.mark.slow  # ~25 s: three processes import mlflow
def test_parallel_jobs_meeting_a_new_store_all_log(tmp_path):
    # Without the lock in lab.tracking.mlflow_runs, 3 of 4 such jobs failed in alembic's table creation.
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = ("import sys; from lab.tracking.mlflow_runs import mlflow_logger; "
            "logger = mlflow_logger(sys.argv[1], sys.argv[2], sys.argv[3]); "
            "logger.log_metrics({'val_acc': 0.5}, step=0); logger.finalize('success')")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    jobs = [subprocess.Popen([sys.executable, "-c", code, store, str(tmp_path / "artifacts"), f"/sweep/job{i}"],
                             env=env, stderr=subprocess.PIPE, text=True) for i in range(3)]
    errors = [job.communicate(timeout=300)[1] for job in jobs]
    assert all(job.returncode == 0 for job in jobs), "\n".join(errors)[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("lab").experiment_id])
    assert sorted(run.info.run_name for run in runs) == [f"job{i}" for i in range(3)]


def test_logger_mlflow_logs_into_one_store_under_the_project_root():
    cfg = compose(["logger=mlflow"])
    assert cfg.logger.tracking_uri == f"sqlite:///{cfg.paths.root_dir}/mlruns/mlflow.db"
    assert cfg.logger.experiment_name == "lab" and cfg.logger._target_ == "lab.tracking.mlflow_runs.mlflow_logger"


def test_without_the_mlflow_package_logger_mlflow_says_to_install_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "lab.tracking.mlflow_runs", raising=False)
    monkeypatch.delattr(lab.tracking, "mlflow_runs", raising=False)  # else the import finds the package's attribute
    with pytest.raises(ConfigError, match=r'needs the mlflow package.*pip install -e "\.\[mlflow\]"'):
        validate(compose(["logger=mlflow"]))
