"""hydra/sweeper=tune: the config node and the Sweeper that Hydra instantiates. The work is in lab/tuning/,
imported only when a sweep starts: Hydra imports this module on every start of every lab command."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class TuneSweeperConf:
    _target_: str = "hydra_plugins.lab_tune.tune_sweeper.TuneSweeper"
    n_trials: int = 20            # trials in the study, counting those of earlier commands on the same sweep dir
    n_jobs: int = 1               # trials running at once; the next starts as one ends (hydra/launcher=joblib)
    sampler: str = "tpe"          # tpe | random | grid
    pruner: str = "asha"          # asha | median | hyperband | none
    objective: str = "best_val_acc"  # a number in each trial's results.json
    direction: str = "maximize"   # maximize | minimize
    epoch_metric: str = "val_acc"  # the metrics.csv column each epoch reports to the pruner (same direction)
    min_epochs: int = 1           # no trial is pruned before this many epochs (the first rung)
    reduction_factor: int = 4     # asha/hyperband keep 1 in this many trials at each rung (epochs 1, 4, 16, ...)
    seed: Optional[int] = None    # the sampler's seed; null: the run's seed
    study_name: str = "lab"
    storage: Optional[str] = None  # null: <sweep dir>/tune.journal; or an Optuna URL (sqlite:///path.db)
    params: Dict[str, Any] = field(default_factory=dict)  # search space: key -> override grammar
    trial: Optional[int] = None   # set by the sweeper for each job: the Optuna trial it trains
    # lab.train plugs this callback factory into each trial's run: it reports the epochs and prunes
    job_callback: str = "lab.tuning.pruning.trial_pruning"


ConfigStore.instance().store(group="hydra/sweeper", name="tune", node=TuneSweeperConf, provider="lab")


class TuneSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments):
        from lab.tuning.study import run_study

        return run_study(self.config, self.launcher, self.hydra_context.config_loader, arguments)
