"""Experiment trackers (conf/logger/mlflow.yaml, conf/logger/wandb.yaml): where a researcher looks at runs.

Both group runs the same way: a -m sweep, a tuning run and a study are each one group (MLflow: a parent run with
its jobs nested under it; W&B: a run group), every job carries its swept overrides, seed, lab status (ok, diverged,
pruned, failed) and test accuracy, and a study's jobs carry the study and step as tags. lab's own files
(metrics.csv, results.json) stay the record: a tracker that fails costs the tracker, never the run.

A tracker's module has check_settings(node) (bad input in one line before any job starts) and its logger factory
takes `job`, the facts of the run it logs (job_facts); this module imports neither tracker package."""
import logging

from lab.targets import MLFLOW, tracker_module
from lab.tracking.guarded import describe

log = logging.getLogger("lab")


def job_facts(cfg, ctx, resume: bool) -> dict:
    """What a tracker's factory is told of the run beside its config node, from the run's RunContext (lab.context):
    its sweep dir, the overrides its sweep varies, its seed, and whether it continues an earlier process."""
    return dict(sweep_dir=str(ctx.sweep_dir) if ctx.in_sweep else None, swept=dict(ctx.swept), seed=cfg.get("seed"),
                resume=bool(resume), rank_zero=ctx.rank_zero)


def open_sweep_group(config) -> dict | None:
    """A -m sweep's or tuning run's parent run in MLflow, opened before its first job (its jobs find it by the sweep
    dir): {tracking_uri, run_id}. None for other loggers, inside a study (the study's run is the parent), or when
    the store fails now (the jobs train all the same)."""
    node = config.get("logger")
    if tracker_module(node) != MLFLOW or node.get("parent_dir"):
        return None
    from lab.tracking.mlflow_runs import open_group

    tuning = "TuneSweeper" in str(config.hydra.sweeper.get("_target_", ""))
    try:
        run_id = open_group(node.tracking_uri, node.experiment_name, node.get("artifact_location"),
                            str(config.hydra.sweep.dir), "tuning" if tuning else "sweep",
                            tags={"command": " ".join(config.hydra.overrides.task)})
    except Exception as err:
        log.warning(f"MLflow ({node.tracking_uri}): {describe(err)}: the sweep has no parent run; its jobs train "
                    f"all the same")
        return None
    return dict(tracking_uri=node.tracking_uri, run_id=run_id)


def close_group(group: dict | None, statuses: list, stopped: bool = False) -> None:
    """End a group's parent run with its jobs' status counts (a failure here only costs the tracker)."""
    if not group:
        return
    from lab.tracking.mlflow_runs import end_group_run

    try:
        end_group_run(group["tracking_uri"], group["run_id"], [s for s in statuses if s], stopped)
    except Exception as err:
        log.warning(f"MLflow ({group['tracking_uri']}): {describe(err)}: the parent run stays open")
