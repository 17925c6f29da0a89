"""conf/scheduler/: a `_partial_` torch scheduler plus `interval` (epoch or step) for Lightning to step it."""
import logging

import hydra
from omegaconf import OmegaConf

log = logging.getLogger("lab")


def build_scheduler(cfg, optimizer, trainer) -> dict | None:
    """Lightning's scheduler dict, or None for scheduler=none (an empty config)."""
    if cfg is None or cfg.get("_target_") is None:
        return None
    cfg = OmegaConf.to_container(cfg, resolve=True)
    interval = cfg.pop("interval", "epoch")
    extra = {}
    if cfg["_target_"].endswith("OneCycleLR"):
        # OneCycle's shape is defined over the whole run, which only the trainer knows.
        extra = {"total_steps": int(trainer.estimated_stepping_batches),
                 "max_lr": [g["lr"] for g in optimizer.param_groups]}
    unreached = [m for m in cfg.get("milestones") or [] if m >= trainer.max_epochs]
    if unreached and interval == "epoch":
        # MultiStepLR decays after epoch m; at or past the run's end that never happens.
        log.warning(f"scheduler.milestones {unreached} are not before trainer.max_epochs={trainer.max_epochs}: "
                    f"the lr never decays there (scale them to the run: '++scheduler.milestones=[...]')")
    scheduler = hydra.utils.instantiate(cfg)(optimizer, **extra)
    return {"scheduler": scheduler, "interval": interval, "frequency": 1}
