"""Experiment trackers (conf/logger/mlflow.yaml, conf/logger/wandb.yaml): where a researcher looks at runs.

Both group runs the same way: a -m sweep, a tuning run and a study are each one group (MLflow: a parent run with
its jobs nested under it; W&B: a run group), every job carries its swept overrides, seed, lab status (ok, diverged,
pruned, failed) and test accuracy, and a study's jobs carry the study and step as tags. lab's own files
(metrics.csv, results.json) stay the record: a tracker that fails costs the tracker, never the run.

A tracker's module has check_settings(node) (bad input in one line before any job starts) and its logger factory
takes `job`, the facts of the run it logs (job_facts); this module imports neither tracker package."""
import logging

log = logging.getLogger("lab")
MLFLOW = "lab.tracking.mlflow_runs"
TRACKER_MODULES = (MLFLOW, "lab.tracking.wandb_run")


def tracker_module(node) -> str | None:
    """The lab tracker module a logger node's _target_ lives in, else None (csv, tensorboard, a user's own)."""
    target = str((node or {}).get("_target_", ""))
    module = target.rsplit(".", 1)[0]
    return module if module in TRACKER_MODULES else None


def job_facts(cfg, ctx, resume: bool) -> dict:
    """What a tracker's factory is told of the run beside its config node, from the run's RunContext (lab.context):
    its sweep dir, the overrides its sweep varies, its seed, and whether it continues an earlier process."""
    swept = {}
    if ctx.in_sweep:
        from lab.sweeps.jobs import swept_overrides

        swept = swept_overrides(ctx.sweep_dir, ctx.overrides)
    return dict(sweep_dir=str(ctx.sweep_dir) if ctx.in_sweep else None, swept=swept, seed=cfg.get("seed"),
                resume=bool(resume))


def open_sweep_group(config) -> dict | None:
    """A -m sweep's or tuning run's parent run in MLflow, opened before its first job (its jobs find it by the sweep
    dir): {tracking_uri, run_id}. None for other loggers, inside a study (the study's run is the parent), or when
    the store fails now (the jobs train all the same)."""
    node = config.get("logger")
    if tracker_module(node) != MLFLOW or node.get("parent_dir"):
        return None
    from lab.tracking.mlflow_runs import first_line, open_group

    tuning = "TuneSweeper" in str(config.hydra.sweeper.get("_target_", ""))
    try:
        run_id = open_group(node.tracking_uri, node.experiment_name, node.get("artifact_location"),
                            str(config.hydra.sweep.dir), "tuning" if tuning else "sweep",
                            tags={"command": " ".join(config.hydra.overrides.task)})
    except Exception as err:
        log.warning(f"MLflow ({node.tracking_uri}): {first_line(err)}: the sweep has no parent run; its jobs train "
                    f"all the same")
        return None
    return dict(tracking_uri=node.tracking_uri, run_id=run_id)


def close_group(group: dict | None, statuses: list[str]) -> None:
    """End a group's parent run with its jobs' status counts (a failure here only costs the tracker)."""
    if not group:
        return
    from lab.tracking.mlflow_runs import close_group as close_mlflow_group
    from lab.tracking.mlflow_runs import first_line

    try:
        close_mlflow_group(group["tracking_uri"], group["run_id"], statuses)
    except Exception as err:
        log.warning(f"MLflow ({group['tracking_uri']}): {first_line(err)}: the parent run stays open")
