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
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import mlflow  # noqa: F401  (see above)
from pytorch_lightning.loggers import MLFlowLogger

from lab.errors import ConfigError
from lab.tracking.guarded import STATUSES, Guarded, describe, group_of, run_name

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
    scheme = parsed.scheme.split("+")[0]  # postgresql+psycopg2://
    forms = ("use sqlite:////ABSOLUTE/PATH.db (a local store, the default), http://HOST:PORT (a tracking server) "
             "or a database URL")
    if scheme == "sqlite":
        if not uri.startswith(SQLITE_PREFIX) or len(uri) == len(SQLITE_PREFIX):
            raise ConfigError(f"logger.tracking_uri={uri} is not a SQLite store's URI: {forms}")
    elif scheme in ("http", "https"):
        if not parsed.hostname:
            raise ConfigError(f"logger.tracking_uri={uri} names no host: {forms}")
        why = server_down(uri)
        if why:
            raise ConfigError(f"logger.tracking_uri={uri}: {why}: start it (mlflow server --host 127.0.0.1 --port "
                              f"{server_port(parsed)}), or drop the override to log into the local store")
    elif scheme not in DATABASE_SCHEMES + ("databricks",):
        raise ConfigError(f"logger.tracking_uri={uri} is not a tracking URI MLflow reads: {forms}")


def server_port(parsed) -> int:
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def server_down(tracking_uri: str) -> str | None:
    """Why a tracking server does not answer now (a TCP connect, 5 s), else None; None too for a store that is no
    server, and behind a proxy (which only the proxy can reach). MLflow's own client retries a dead server for
    minutes on every call."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    if parsed.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parsed.hostname):
        return None
    try:
        socket.create_connection((parsed.hostname, server_port(parsed)), timeout=5).close()
    except OSError as err:
        return f"no tracking server answers at {parsed.hostname}:{server_port(parsed)} ({err.strerror or err})"
    return None


def quiet() -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # ~40 lines of schema migrations on a new store
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # MLflow retries a failing server 7 times with a 120 s timeout (minutes a call): a server that dies mid-sweep
    # would stall each job that long. Fewer and shorter, unless the user set them.
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    for setting, value in ((MLFLOW_HTTP_REQUEST_MAX_RETRIES, 2), (MLFLOW_HTTP_REQUEST_TIMEOUT, 20)):
        if not setting.is_set():
            setting.set(value)


def mlflow_client(tracking_uri: str):
    """MLflow's client of the store, once a quick look (server_down) finds its server up: ConnectionError if not."""
    from mlflow.tracking import MlflowClient

    quiet()
    why = server_down(tracking_uri)
    if why:
        raise ConnectionError(why)
    return MlflowClient(tracking_uri)


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
    quoted = f'"{run_dir}"' if "'" in run_dir else f"'{run_dir}'"  # MLflow's filter keeps a backslash escape
    runs = client.search_runs([experiment], filter_string=f"tags.`lab.dir` = {quoted}", order_by=["start_time DESC"])
    return next((run for run in runs if run.data.tags.get("lab.kind") in kinds), None)


def open_group(tracking_uri: str, experiment_name: str, artifact_location: str | None, group_dir: str, kind: str,
               tags: dict | None = None) -> str:
    """The parent run of a sweep, tuning run or study (found again by its dir, else created): its run id."""
    with store_lock(tracking_uri):  # a new SQLite store's tables are made as its client first opens it
        client = mlflow_client(tracking_uri)
        experiment = experiment_id(client, experiment_name, artifact_location)
        run = find_run(client, experiment, group_dir, GROUP_KINDS)
        if run is None:
            run = client.create_run(experiment, run_name=Path(group_dir).name, tags={
                "lab.dir": group_dir, "lab.kind": kind, **{k: str(v) for k, v in (tags or {}).items()}})
        else:
            client.update_run(run.info.run_id, status="RUNNING")
    return run.info.run_id


def end_group_run(tracking_uri: str, run_id: str, statuses: list[str], stopped: bool = False) -> None:
    """Count the jobs' statuses on the parent run (every status, zeros too: a continued sweep's counts replace the
    last command's) and end it: KILLED when the command was stopped, FAILED when a job failed."""
    client = mlflow_client(tracking_uri)
    for status in STATUSES:
        client.set_tag(run_id, f"jobs_{status}", str(statuses.count(status)))
    client.set_terminated(run_id, "KILLED" if stopped else "FAILED" if "failed" in statuses else "FINISHED")


class TrackedRun(Guarded, MLFlowLogger):
    """Lightning's MLFlowLogger whose failures cost the tracker, not the run (Guarded). record_outcome() puts lab's
    status on the run: when results.json is written, or from lab.trainer's TrackerOutcome when fit ends in an
    exception (Lightning's own finalize("failed") cannot tell a Ctrl-C from a crash)."""

    reopened = False  # a resumed job's run: its first process logged the config and the job's params
    job_params: dict = {}  # the swept overrides and seed, logged beside the config

    def tracker_name(self) -> str:
        return f"MLflow ({self._tracking_uri})"

    def log_metrics(self, metrics, step=None) -> None:
        self.guarded(super().log_metrics, metrics, step)

    def log_hyperparams(self, params) -> None:
        if not self.reopened:  # MLflow refuses to change a param, and a resumed run's resume=true is one
            self.guarded(super().log_hyperparams, params)
            self.guarded(self.log_job_params)

    def log_job_params(self) -> None:
        """After the config: a swept key that the config also has (dataset) keeps the config's value."""
        logged = self.experiment.get_run(self.run_id).data.params
        for key, value in self.job_params.items():
            if key not in logged:
                self.experiment.log_param(self.run_id, key, value)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self.guarded(super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str = "success") -> None:
        if not self.recorded:
            self.guarded(super().finalize, status)

    def record_outcome(self, results: dict) -> None:
        status = results.get("status", "failed")
        self.recorded = True
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
    job, run_dir = job or {}, str(run_dir)
    settings = dict(experiment_name=experiment_name, run_name=run_name(run_dir, tags), tracking_uri=tracking_uri,
                    artifact_location=artifact_location)
    if not job.get("rank_zero", True):  # Lightning logs from rank 0 only; the other ranks leave the store alone
        return TrackedRun(**settings)
    try:
        with store_lock(tracking_uri):  # a new SQLite store's tables are made as its client first opens it
            return open_job_run(mlflow_client(tracking_uri), settings, run_dir, job, parent_dir, tags)
    except Exception as err:
        log.warning(f"MLflow ({tracking_uri}): {describe(err)}: this run is not tracked; its metrics.csv and "
                    f"results.json are written as always")
        return False


def open_job_run(client, settings: dict, run_dir: str, job: dict, parent_dir: str | None,
                 tags: dict | None) -> TrackedRun:
    experiment = experiment_id(client, settings["experiment_name"], settings["artifact_location"])
    earlier = find_run(client, experiment, run_dir, ("job",)) if job.get("resume") else None
    if earlier:
        logger = TrackedRun(**settings, run_id=earlier.info.run_id)
        logger.reopened = True
        client.update_run(earlier.info.run_id, status="RUNNING")
        client.set_tag(earlier.info.run_id, "status", "running")
    else:
        group = group_of(parent_dir, job)
        parent = find_run(client, experiment, group, GROUP_KINDS) if group else None
        run_tags = job_tags(run_dir, job, tags) | ({"mlflow.parentRunId": parent.info.run_id} if parent else {})
        logger = TrackedRun(**settings, tags=run_tags)
        logger.job_params = {**job.get("swept", {}), "seed": job.get("seed")}
    logger.experiment  # creates the run now, not inside fit
    return logger
