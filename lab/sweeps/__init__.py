"""-m sweeps: callback.py is the Hydra callback of every sweep (checks before the first job, progress, the report
at the end, failed jobs named); jobs.py names job dirs and counts and expands a sweep's jobs; slurm.py and
slurm_watch.py serve hydra/launcher=slurm, loaded only under it."""
