"""The job side of hydra/sweeper=tune: each epoch's val_acc goes to the job's Optuna trial, and the run stops at
the end of an epoch the pruner rejects (its record() then makes results.json say status pruned). The sweeper
hands `trial_pruning` to each of its jobs (hydra.sweeper.job_callback); lab.train never imports this module. A
pytorch_lightning callback: optuna-integration's targets lightning.pytorch, a separate class hierarchy."""
import logging
import math

import pytorch_lightning as pl

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

    def record(self) -> dict:
        """What this callback adds to the run's results.json."""
        return {} if self.pruned_epoch is None else dict(status="pruned", pruned_epoch=self.pruned_epoch)


def trial_pruning(cfg, ctx) -> TrialPruning:
    """The callback of the trial this job trains (the sweeper sets hydra.sweeper.trial; ctx.sweeper holds it)."""
    import optuna
    from omegaconf import OmegaConf

    from lab.tuning.study import make_pruner, open_storage

    settings = OmegaConf.create(ctx.sweeper)
    storage = open_storage(settings, ctx.sweep_dir)
    study = optuna.load_study(study_name=settings.study_name, storage=storage,
                              pruner=make_pruner(settings, cfg.trainer.max_epochs))
    study_id = storage.get_study_id_from_name(settings.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, settings.trial)
    return TrialPruning(optuna.trial.Trial(study, trial_id), settings.epoch_metric)
