"""hydra/sweeper=seed_first, lab's default (conf/train.yaml): Hydra's basic sweeper with the seed varied slowest.

`-m optimizer=adam,sgd seed=1,2,3` then runs seed 1's arms, then seed 2's, where the basic sweeper varies the first
override slowest and an experiment's sweeper.params come before the command line, so each arm's seeds ran back to
back. Taking turns keeps the arms' runs in the same stretches of a drifting machine's speed, and a sweep stopped
halfway has every arm at its first seeds. lab/sweeps/jobs.py expands a sweep's jobs in the same order."""
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class SeedFirstSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.lab_sweeps.seed_first_sweeper.SeedFirstBasicSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="seed_first", node=SeedFirstSweeperConf, provider="lab")


class SeedFirstBasicSweeper(BasicSweeper):
    @staticmethod
    def split_arguments(overrides, max_batch_size):
        seed_first = sorted(overrides, key=lambda o: o.get_key_element() != "seed")  # stable: the rest keep order
        return BasicSweeper.split_arguments(seed_first, max_batch_size)
