"""conf/logger/mlflow.yaml: runs in MLflow (a local SQLite store by default, or a tracking server), grouped.

A -m sweep, a tuning run and a study are each a parent run (tag lab.kind sweep, tuning or study), found again by
its dir (tag lab.dir), so a resumed sweep keeps its parent; each job is a child run (mlflow.parentRunId) with its
swept overrides and seed as params and its lab status as a tag; a resumed job reopens its own run. A study is one
experiment named after it, its jobs tagged with their step, so the UI's "Group by" step works.

mlflow is an optional extra (pip install -e ".[mlflow]"): it is imported here at module level, so that lab.config's
check of logger._target_, which imports this module, fails in one line before any data is loaded when it is missing."""
import fcntl
import logging
import socket
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import mlflow  # noqa: F401  (see above)
from pytorch_lightning.loggers import MLFlowLogger

from lab.errors import ConfigError

log = logging.getLogger("lab")
SQLITE_PREFIX = "sqlite:///"
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
RUN_STATUS = {"ok": "FINISHED", "diverged": "FINISHED", "pruned": "KILLED", "interrupted": "KILLED",
              "failed": "FAILED"}  # lab's status -> MLflow's
GROUP_KINDS = ("sweep", "tuning", "study")


def check_settings(node) -> None:
    """A tracking URI MLflow cannot read, or a server that does not answer: one line, before any job starts."""
    uri = str(node.get("tracking_uri") or "")
    parsed = urlparse(uri)
    forms = ("use sqlite:////ABSOLUTE/PATH.db (a local store, the default), http://HOST:PORT (a tracking server) "
             "or a database URL")
    if parsed.scheme == "sqlite":
        if not uri.startswith(SQLITE_PREFIX) or len(uri) == len(SQLITE_PREFIX):
            raise ConfigError(f"logger.tracking_uri={uri} is not a SQLite store's URI: {forms}")
    elif parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise ConfigError(f"logger.tracking_uri={uri} names no host: {forms}")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=5).close()
        except OSError as err:
            raise ConfigError(f"logger.tracking_uri={uri}: no tracking server answers at {parsed.hostname}:{port} "
                              f"({err.strerror or err}): start it (mlflow server --host 127.0.0.1 --port {port}), "
                              f"or drop the override to log into the local store") from None
    elif parsed.scheme not in DATABASE_SCHEMES + ("databricks",):
        raise ConfigError(f"logger.tracking_uri={uri} is not a tracking URI MLflow reads: {forms}")


def quiet() -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # ~40 lines of schema migrations on a new store
    logging.getLogger("mlflow").setLevel(logging.WARNING)


@contextmanager
def store_lock(tracking_uri: str):
    """Parallel jobs (hydra/launcher=joblib, slurm) that meet a new SQLite store would each create its tables and
    the experiment, and all but one fail: one at a time here. A tracking server serialises its writers itself."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        yield
        return
    database = Path(tracking_uri[len(SQLITE_PREFIX):])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def experiment_id(client, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage != "deleted":
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def find_run(client, experiment: str, run_dir: str, kinds: tuple):
    """The newest run of the experiment whose lab.dir is run_dir and lab.kind one of kinds, else None."""
    quoted = "'" + run_dir.replace("\\", "\\\\").replace("'", "\\'") + "'"
    runs = client.search_runs([experiment], filter_string=f"tags.`lab.dir` = {quoted}", order_by=["start_time DESC"])
    return next((run for run in runs if run.data.tags.get("lab.kind") in kinds), None)


def open_group(tracking_uri: str, experiment_name: str, artifact_location: str | None, group_dir: str, kind: str,
               tags: dict | None = None) -> str:
    """The parent run of a sweep, tuning run or study (found again by its dir, else created): its run id."""
    from mlflow.tracking import MlflowClient

    quiet()
    with store_lock(tracking_uri):
        client = MlflowClient(tracking_uri)
        experiment = experiment_id(client, experiment_name, artifact_location)
        run = find_run(client, experiment, group_dir, GROUP_KINDS)
        if run is None:
            run = client.create_run(experiment, run_name=Path(group_dir).name, tags={
                "lab.dir": group_dir, "lab.kind": kind, **{k: str(v) for k, v in (tags or {}).items()}})
        else:
            client.update_run(run.info.run_id, status="RUNNING")
    return run.info.run_id


def close_group(tracking_uri: str, run_id: str, statuses: list[str]) -> None:
    """Count the jobs' statuses on the parent run and end it (FAILED when a job failed)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for status in sorted(set(statuses)):
        client.set_tag(run_id, f"jobs_{status}", str(statuses.count(status)))
    client.set_terminated(run_id, "FAILED" if "failed" in statuses else "FINISHED")


def first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


class TrackedRun(MLFlowLogger):
    """Lightning's MLFlowLogger that costs the tracker, not the run, when the store or server fails mid-run: the
    first error is logged once and the logger goes quiet (metrics.csv and results.json are written as always).
    record_outcome() puts lab's status on the run when results.json is written."""

    broken = False
    reopened = False  # a resumed job's run: its first process logged the config

    def guarded(self, call, *args):
        if self.broken:
            return None
        try:
            return call(*args)
        except Exception as err:
            self.broken = True
            log.warning(f"MLflow ({self._tracking_uri}): {first_line(err)}; this run's tracking stops here, its "
                        f"metrics.csv and results.json are written as always")
            return None

    def log_metrics(self, metrics, step=None) -> None:
        self.guarded(super().log_metrics, metrics, step)

    def log_hyperparams(self, params) -> None:
        if not self.reopened:  # MLflow refuses to change a param, and a resumed run's resume=true is one
            self.guarded(super().log_hyperparams, params)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.guarded(super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str = "success") -> None:
        if status == "failed":  # Lightning's word for an exception inside fit
            self.guarded(self.experiment.set_tag, self.run_id, "status", "failed")
        self.guarded(super().finalize, status)

    def record_outcome(self, results: dict) -> None:
        status = results.get("status", "failed")
        self.guarded(self.experiment.set_tag, self.run_id, "status", status)
        self.guarded(self.experiment.set_terminated, self.run_id, RUN_STATUS.get(status, "KILLED"))


def job_tags(run_dir: str, job: dict, tags: dict | None) -> dict:
    swept = ",".join(f"{key}={value}" for key, value in job.get("swept", {}).items())
    return {"lab.dir": run_dir, "lab.kind": "job", "run_dir": run_dir, "status": "running",
            **({"swept": swept} if swept else {}), **{k: str(v) for k, v in (tags or {}).items()}}


def mlflow_logger(tracking_uri: str, artifact_location: str | None, run_dir: str, experiment_name: str = "lab",
                  parent_dir: str | None = None, tags: dict | None = None, job: dict | None = None):
    """The job's run, named after its dir's last part (a sweep job's overrides), nested under its group's run (the
    study's parent_dir, else its sweep's); with resume, the run this dir logged before. False (no logger) when the
    store cannot be reached now: the run trains all the same. Lab logs no artifacts: checkpoints stay in the run
    dir; artifact_location keeps MLflow's own folder out of the current directory."""
    from mlflow.tracking import MlflowClient

    job, run_dir = job or {}, str(run_dir)
    quiet()
    try:
        with store_lock(tracking_uri):
            client = MlflowClient(tracking_uri)
            experiment = experiment_id(client, experiment_name, artifact_location)
            earlier = find_run(client, experiment, run_dir, ("job",)) if job.get("resume") else None
            group = str(parent_dir or "") or job.get("sweep_dir")
            parent = find_run(client, experiment, group, GROUP_KINDS) if group and not earlier else None
            run_tags = job_tags(run_dir, job, tags) | ({"mlflow.parentRunId": parent.info.run_id} if parent else {})
            name = "/".join(filter(None, [(tags or {}).get("step"), Path(run_dir).name]))  # a study's: t3/lr=0.1
            logger = TrackedRun(experiment_name=experiment_name, run_name=name, tracking_uri=tracking_uri,
                                artifact_location=artifact_location, tags=None if earlier else run_tags,
                                run_id=earlier.info.run_id if earlier else None)
            logger.experiment  # creates the run now, not inside fit
            if earlier:
                logger.reopened = True
                client.update_run(earlier.info.run_id, status="RUNNING")
                client.set_tag(earlier.info.run_id, "status", "running")
            else:
                for key, value in {**job.get("swept", {}), "seed": job.get("seed")}.items():
                    client.log_param(logger.run_id, key, value)
    except Exception as err:
        log.warning(f"MLflow ({tracking_uri}): {first_line(err)}: this run is not tracked; its metrics.csv and "
                    f"results.json are written as always")
        return False
    return logger
