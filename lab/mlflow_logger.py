"""conf/logger/mlflow.yaml: Lightning's MLFlowLogger writing every run into one local store (SQLite, no
server), so `mlflow ui` compares all runs and sweeps side by side. mlflow is an optional extra
(pip install -e ".[mlflow]"): it is imported here at module level, so that lab.config's check of
logger._target_, which imports this module, fails before any data is loaded when the package is missing."""
import fcntl
import logging
from pathlib import Path

import mlflow  # noqa: F401  (see above)
from pytorch_lightning.loggers import MLFlowLogger

SQLITE_PREFIX = "sqlite:///"


def mlflow_logger(tracking_uri: str, artifact_location: str, run_dir: str,
                  experiment_name: str = "lab") -> MLFlowLogger:
    """One MLflow run named after the run dir's last part (a sweep job's overrides), tagged with the full path.
    Lab logs no artifacts: checkpoints stay in the run dir; artifact_location only keeps MLflow's own folder
    out of the current directory."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # ~40 lines of schema migrations on a new store
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    def start() -> MLFlowLogger:
        logger = MLFlowLogger(experiment_name=experiment_name, run_name=Path(run_dir).name,
                              tracking_uri=tracking_uri, artifact_location=artifact_location,
                              tags={"run_dir": str(run_dir)})
        logger.experiment  # creates the store's tables, the experiment and the run now, not in fit
        return logger

    if not tracking_uri.startswith(SQLITE_PREFIX):  # a tracking server serialises its writers itself
        return start()
    database = Path(tracking_uri[len(SQLITE_PREFIX):])
    database.parent.mkdir(parents=True, exist_ok=True)
    # Parallel sweep jobs (hydra/launcher=joblib, slurm) that meet a new store would each create its tables
    # and the experiment, and all but one fail: one at a time here. SQLite then serialises the metric writes.
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return start()
