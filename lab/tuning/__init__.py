"""hydra/sweeper=tune (hydra_plugins/lab_tune registers it): study.py runs an Optuna study whose trials are lab.train
jobs; space.py reads the search space from Hydra's override grammar; asha.py is lab's successive-halving pruner;
pruning.py is the callback the sweeper hands each job; report.py writes tuning.md and the study's figures."""
