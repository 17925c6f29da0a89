"""conf/scheduler/: a `_partial_` torch scheduler plus `interval` (epoch or step) for Lightning to step it,
and `warmup_epochs` of linear warm-up on top of any of them (scheduler=none included)."""
import logging
import math

import hydra
from omegaconf import OmegaConf
from torch.optim.lr_scheduler import LRScheduler

log = logging.getLogger("lab")


class LinearWarmup(LRScheduler):
    """Stepped once per batch: the lr of `base` times a ramp from 1/warmup_steps up to 1 over the first
    warmup_steps batches (linear scaling rule warm-up, Goyal et al. 2017). An epoch-interval base is stepped
    every steps_per_epoch batches, at the same points Lightning would step it, so MultiStepLR milestones and
    cosine T_max keep counting epochs and the lr after the warm-up is the one the base alone would give."""

    def __init__(self, optimizer, warmup_steps: int, steps_per_epoch: int, base: LRScheduler | None = None,
                 base_interval: str = "epoch"):
        self.base, self.warmup_steps = base, warmup_steps
        self.base_every = 1 if base_interval == "step" else steps_per_epoch  # batches between base steps
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        batches_done = self.last_epoch
        if self.base is not None and batches_done > 0 and batches_done % self.base_every == 0:
            # Chainable schedulers (MultiStepLR, cosine) compute from the lr they left, not the ramped one.
            for group, lr in zip(self.optimizer.param_groups, self.base.get_last_lr()):
                group["lr"] = lr
            self.base.step()
        lrs = self.base.get_last_lr() if self.base is not None else self.base_lrs
        ramp = min(1.0, (batches_done + 1) / self.warmup_steps)
        return [lr * ramp for lr in lrs]

    def state_dict(self) -> dict:
        # The base's own state_dict, not the object: checkpoints hold tensors and plain Python only.
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "base")}
        return dict(state, base=self.base.state_dict() if self.base is not None else None)

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        base_state = state.pop("base")
        self.__dict__.update(state)
        if self.base is not None:
            self.base.load_state_dict(base_state)


def steps_per_epoch(trainer) -> int:
    trainer.estimated_stepping_batches  # sets up the train loader, so num_training_batches is known
    return math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)


def build_base(cfg: dict, optimizer, trainer):
    """The conf/scheduler/ torch scheduler without lab's keys, or None for scheduler=none."""
    if cfg.get("_target_") is None:
        return None
    extra = {}
    if cfg["_target_"].endswith("OneCycleLR"):
        # OneCycle's shape is defined over the whole run, which only the trainer knows.
        extra = {"total_steps": int(trainer.estimated_stepping_batches),
                 "max_lr": [g["lr"] for g in optimizer.param_groups]}
    return hydra.utils.instantiate(cfg)(optimizer, **extra)


def build_scheduler(cfg, optimizer, trainer) -> dict | None:
    """Lightning's scheduler dict, or None for a constant lr (scheduler=none without warm-up)."""
    if cfg is None:
        return None
    cfg = OmegaConf.to_container(cfg, resolve=True)
    interval, warmup_epochs = cfg.pop("interval", "epoch"), cfg.pop("warmup_epochs", 0) or 0
    unreached = [m for m in cfg.get("milestones") or [] if m >= trainer.max_epochs]
    if unreached and interval == "epoch":
        # MultiStepLR decays after epoch m; at or past the run's end that never happens.
        log.warning(f"scheduler.milestones {unreached} are not before trainer.max_epochs={trainer.max_epochs}: "
                    f"the lr never decays there (scale them to the run: '++scheduler.milestones=[...]')")
    base = build_base(cfg, optimizer, trainer)
    if warmup_epochs > 0:
        batches = steps_per_epoch(trainer)
        warmup = LinearWarmup(optimizer, max(1, round(warmup_epochs * batches)), batches, base, interval)
        return {"scheduler": warmup, "interval": "step", "frequency": 1}
    if base is None:
        return None
    return {"scheduler": base, "interval": interval, "frequency": 1}
