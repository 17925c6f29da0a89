"""conf/logger/wandb.yaml: Lightning's WandbLogger, offline by default: no account or server needed, each run is
written under <save_dir>/wandb/offline-run-*, and `wandb sync --sync-all` in save_dir uploads them later.

Grouped as lab/tracking/ says: the run group is the study's dir (logger.parent_dir, set by lab.study) or the job's
-m sweep dir; the tags are MLflow's (study:NAME, step:t3, status:ok); the swept overrides, seed and run dir are in
the run's config. The run id comes from the run dir, so a resumed job logs under the same id (resume="allow").

wandb is an optional extra (pip install -e ".[wandb]"), imported at module level so that lab.config's check of
logger._target_ fails in one line when it is missing."""
import hashlib
import logging
from pathlib import Path

import wandb  # noqa: F401  (see above)
from pytorch_lightning.loggers import WandbLogger

from lab.errors import ConfigError
from lab.tracking.guarded import Guarded, group_of, run_name

log = logging.getLogger("lab")
MODES = ("offline", "online", "disabled")


def check_settings(node) -> None:
    """A mode W&B does not have. Online without a login is W&B's own refusal, inside the run: one warning, and the
    run goes on untracked (Guarded)."""
    mode = node.get("mode")
    if mode not in MODES:
        raise ConfigError(f"logger.mode={mode} is not a W&B mode: choose {', '.join(MODES)}")


class TrackedWandbRun(Guarded, WandbLogger):
    """Lightning's WandbLogger whose failures cost the tracker, not the run (Guarded: an online run whose server goes
    away). record_outcome() tags the run with lab's status and ends it: a process that runs several jobs (Hydra's
    basic launcher, a joblib worker) must not log the next job into this run."""

    def tracker_name(self) -> str:
        return "W&B"

    def log_metrics(self, metrics, step=None) -> None:
        self.guarded(super().log_metrics, metrics, step)

    def log_hyperparams(self, params) -> None:
        self.guarded(super().log_hyperparams, params)

    def finalize(self, status: str) -> None:
        if not self.recorded:
            self.guarded(super().finalize, status)

    def record_outcome(self, results: dict) -> None:
        self.recorded = True
        self.guarded(self.end_run, results.get("status", "failed"))

    def end_run(self, status: str) -> None:
        run = self.experiment
        run.tags = tuple(run.tags or ()) + (f"status:{status}",)
        run.summary["status"] = status
        run.finish(exit_code=0 if status in ("ok", "diverged", "pruned") else 1)


def group_name(group_dir: str | None) -> str | None:
    """A sweep or study dir as a W&B group: its last two parts (multirun/DAY/TIME -> DAY/TIME)."""
    return "/".join(Path(group_dir).parts[-2:])[-128:] if group_dir else None


def wandb_logger(save_dir: str, run_dir: str, experiment_name: str = "lab", mode: str = "offline",
                 parent_dir: str | None = None, tags: dict | None = None, job: dict | None = None):
    job, run_dir, tags = job or {}, str(run_dir), {k: str(v) for k, v in (tags or {}).items()}
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return TrackedWandbRun(
        name=run_name(run_dir, tags), save_dir=save_dir,
        project=experiment_name, offline=mode == "offline", mode=None if mode == "offline" else mode,
        id=hashlib.sha1(run_dir.encode()).hexdigest()[:16], resume="allow",
        group=group_name(group_of(parent_dir, job)), job_type="job",
        tags=[f"{key}:{value}"[:64] for key, value in tags.items()],
        config={**job.get("swept", {}), "seed": job.get("seed"), "run_dir": run_dir})  # as MLflow's params
