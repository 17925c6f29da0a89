"""lab's default sweeper, registered as hydra/sweeper=seed_first (Hydra imports every module under hydra_plugins)."""
