"""hydra.sweeper.pruner=asha: asynchronous successive halving over epochs (Li et al. 2020), the rule of Optuna's
SuccessiveHalvingPruner with two changes for studies of tens of trials, a few at a time (why, measured:
BENCHMARKS.md, "Tuning"):

- A trial is ranked at each rung against every trial that has reached that rung, also those that reach it after
  it did, at each of its later epochs: Optuna ranks a trial once, on arrival, so the first trials of a study
  (nothing to rank against yet) go on to the last epoch, whatever they score.
- No rung past half the run (rungs at min_epochs x factor^k <= max_epochs / 2): a late rung saves one epoch for
  each trial it stops, and throws away the rest of a run that had almost finished.

The values ranked are the epoch metric each job reports (pruning.py), read from the study's storage, so jobs in
other processes rank against each other."""
import math

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection


def rungs(min_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs at which trials are ranked: min_epochs x factor^k up to half of max_epochs."""
    found, epoch = [], min_epochs
    while epoch <= max_epochs / 2:
        found.append(epoch)
        epoch *= reduction_factor
    return found


def kept(value: float, rivals: list[float], reduction_factor: int, maximize: bool) -> bool:
    """Whether value is among the best 1/reduction_factor of rivals (which include it; at least the best one)."""
    best_first = sorted(rivals, reverse=maximize)
    bar = best_first[max(1, len(rivals) // reduction_factor) - 1]
    return value >= bar if maximize else value <= bar


class ASHAPruner(BasePruner):
    def __init__(self, min_epochs: int, reduction_factor: int, max_epochs: int):
        self.reduction_factor = reduction_factor
        self.rungs = rungs(min_epochs, reduction_factor, max_epochs)

    def prune(self, study: "optuna.study.Study", trial: "optuna.trial.FrozenTrial") -> bool:
        step = trial.last_step
        if step is None:
            return False
        if math.isnan(trial.intermediate_values[step]):
            return True
        passed = [r for r in self.rungs if r <= step and r in trial.intermediate_values]
        if not passed:
            return False
        others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        maximize = study.direction == StudyDirection.MAXIMIZE
        for rung in passed:
            value = trial.intermediate_values[rung]
            rivals = [value] + [t.intermediate_values[rung] for t in others if rung in t.intermediate_values]
            if not kept(value, rivals, self.reduction_factor, maximize):
                return True
        return False
