"""The job side of hydra/sweeper=tune: each epoch's val_acc goes to the job's Optuna trial, and the run stops at
the end of an epoch the pruner rejects (results.json then says status pruned). A pytorch_lightning callback:
optuna-integration's targets lightning.pytorch, a separate class hierarchy."""
import logging
import math
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig

log = logging.getLogger("lab")


class TrialPruning(pl.Callback):
    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.pruned_epoch = trial, metric, None

    def on_train_epoch_end(self, trainer, pl_module):
        value = trainer.callback_metrics.get(self.metric)
        # EpochRecorder (an earlier callback) stops a run whose loss is NaN/inf: the sweeper tells it failed.
        if trainer.should_stop or value is None or not math.isfinite(float(value)) or not trainer.is_global_zero:
            return
        epochs = trainer.current_epoch + 1  # the pruner's step: epochs trained
        self.trial.report(float(value), epochs)
        if epochs < trainer.max_epochs and self.trial.should_prune():
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True
            log.info(f"tune: trial {self.trial.number} pruned after epoch {trainer.current_epoch} "
                     f"({self.metric} {float(value):.4f})")


def trial_pruning(cfg) -> TrialPruning | None:
    """The callback when this job is a trial of a tuning sweep (the sweeper sets hydra.sweeper.trial)."""
    if not HydraConfig.initialized() or HydraConfig.get().sweeper.get("trial") is None:
        return None
    import optuna

    from lab.tune import make_pruner, open_storage

    settings = HydraConfig.get().sweeper
    storage = open_storage(settings, Path(HydraConfig.get().sweep.dir))
    study = optuna.load_study(study_name=settings.study_name, storage=storage,
                              pruner=make_pruner(settings, cfg.trainer.max_epochs))
    study_id = storage.get_study_id_from_name(settings.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, settings.trial)
    return TrialPruning(optuna.trial.Trial(study, trial_id), settings.epoch_metric)


def pruned_epoch(trainer) -> int | None:
    return next((c.pruned_epoch for c in trainer.callbacks if isinstance(c, TrialPruning)), None)
