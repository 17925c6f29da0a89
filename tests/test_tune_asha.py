"""lab's ASHA pruner (lab/tuning/asha.py) on Optuna studies told by hand: its rungs, the ranking against trials that
reach a rung later, and no rung past half the run."""
import optuna
import pytest

from lab.tuning.asha import ASHAPruner, rungs

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study(direction="maximize", max_epochs=10):
    return optuna.create_study(direction=direction, pruner=ASHAPruner(1, 3, max_epochs))


def reported(study_, values: list[float]):
    """A running trial that has reported values for epochs 1, 2, ..."""
    trial = study_.ask()
    for epoch, value in enumerate(values, start=1):
        trial.report(value, epoch)
    return trial


@pytest.mark.parametrize("first,factor,max_epochs,expected", [
    (1, 3, 10, [1, 3]), (1, 3, 50, [1, 3, 9]), (1, 2, 10, [1, 2, 4]), (2, 3, 3, []), (1, 3, 2, [1]),
])
def test_rungs_stop_at_half_the_run(first, factor, max_epochs, expected):
    assert rungs(first, factor, max_epochs) == expected


def test_a_first_trial_is_ranked_again_when_a_better_one_reaches_its_rung():
    s = study()
    early = reported(s, [0.30])
    assert not early.should_prune()  # alone at rung 1: nothing to rank it against
    better = reported(s, [0.90])
    assert not better.should_prune()
    early.report(0.35, 2)
    assert early.should_prune()  # Optuna's SuccessiveHalvingPruner ranks once, on arrival, and keeps it
    better.report(0.95, 2)
    assert not better.should_prune()


def test_one_in_reduction_factor_goes_on_from_a_rung():
    s = study()
    trials = [reported(s, [v]) for v in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)]
    for t in trials:
        t.report(0.0, 2)  # epoch 2 is no rung: only the rung-1 ranking decides
    assert [t.should_prune() for t in trials] == [True, True, True, True, False, False]  # 6 // 3 = 2 kept


def test_ties_at_a_rung_all_go_on():
    s = study()
    trials = [reported(s, [0.5]) for _ in range(4)]
    assert not any(t.should_prune() for t in trials)


def test_no_rung_near_the_end_of_the_run():
    s = study(max_epochs=10)  # rungs at epochs 1 and 3; 9 is past half of 10
    level = [0.8, 0.8, 0.8]  # every trial ties at rungs 1 and 3
    trials = [reported(s, level + [0.8] * 5 + [value]) for value in (0.2, 0.9, 0.9)]
    assert not any(t.should_prune() for t in trials)  # the worst at epoch 9 still finishes its 10


def test_minimize_keeps_the_lowest():
    s = study(direction="minimize")
    low, high = reported(s, [0.1]), reported(s, [2.0])
    assert not low.should_prune() and high.should_prune()


def test_a_nan_value_is_pruned():
    s = study()
    assert reported(s, [float("nan")]).should_prune()
