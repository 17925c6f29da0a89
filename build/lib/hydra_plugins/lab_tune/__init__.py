"""lab's Optuna sweeper, registered as hydra/sweeper=tune (Hydra imports every module under hydra_plugins)."""
