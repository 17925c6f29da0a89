"""A study in a tracker (python -m lab.study logger=mlflow, or logger=wandb): one MLflow experiment named after the
study with a parent run for the study dir, every job of every step nested under it and tagged with the study and
its step (W&B: the study dir is the run group). The trackers themselves are lab/tracking/."""
import logging
from pathlib import Path

from omegaconf import OmegaConf

from lab.config import CONF
from lab.keys import override_key
from lab.targets import MLFLOW, tracker_module
from lab.tracking.guarded import describe

log = logging.getLogger("lab")


def study_tracker(step_overrides: list[str], config_dir: str | None) -> dict | None:
    """The logger node the steps' command line chooses (logger=mlflow ...), when it is one of lab's trackers."""
    if not any(override_key(o) == "logger" for o in step_overrides):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lab.config import register_resolvers

    register_resolvers()
    plain = [o for o in step_overrides if override_key(o).split(".")[0] in ("logger", "paths")]  # where runs log
    search = [f"hydra.searchpath=[file://{Path(config_dir).absolute()}]"] if config_dir else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            node = compose("train", overrides=plain + search).logger
            if not tracker_module(node):
                return None
            # Where the runs go; run_dir and the rest are each job's own.
            return {key: OmegaConf.select(node, key) for key in ("_target_", "tracking_uri", "artifact_location")}
    finally:
        GlobalHydra.instance().clear()


def open_study_group(study: dict, out: Path, step_overrides: list[str]) -> dict | None:
    """The study's parent run in MLflow (found again when the study continues): {tracking_uri, run_id}, else None."""
    node = study.get("tracker")
    if tracker_module(node) != MLFLOW:
        return None
    from lab.tracking.mlflow_runs import open_group

    try:
        run_id = open_group(node["tracking_uri"], study["name"], node.get("artifact_location"), str(out), "study",
                            tags={"study": study["name"], "command": " ".join(step_overrides)})
    except Exception as err:
        log.warning(f"MLflow ({node['tracking_uri']}): {describe(err)}: the study has no parent run; its jobs "
                    f"train all the same")
        return None
    return dict(tracking_uri=node["tracking_uri"], run_id=run_id)
