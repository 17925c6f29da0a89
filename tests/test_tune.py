"""hydra/sweeper=tune (lab/tuning/): the search space from Hydra's override grammar, bad input as one line and
exit 2, pruning from inside the job, failed trials, and a killed study that continues."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TINY, results, run_train
from omegaconf import OmegaConf

from lab.errors import ConfigError
from lab.tuning.space import check_settings, search_space
from lab.tuning.study import trial_outcome

DIGITS = ["dataset=digits", *TINY]


def load_study(sweep_dir):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = JournalFileBackend(str(sweep_dir / "tune.journal"))
    return optuna.load_study(study_name="lab", storage=JournalStorage(journal))


def settings(**changes):
    from hydra_plugins.lab_tune.tune_sweeper import TuneSweeperConf

    return OmegaConf.merge(OmegaConf.structured(TuneSweeperConf), changes)


def test_search_space_reads_hydra_grammar_and_keeps_fixed_overrides():
    space, grid, fixed = search_space({"model.base_width": "choice(8,16)", "optimizer.momentum": "0.5,0.9"}, [
        "optimizer.lr=tag(log, interval(0.001, 1))", "optimizer=choice(sgd,adam)", "seed=range(1,5)",
        "trainer.max_epochs=interval(2, 6)", "optimizer.momentum=0.8", "+experiment=lr_sweep", "dataset=digits"])
    lr = space["optimizer.lr"]
    assert (type(lr).__name__, lr.low, lr.high, lr.log) == ("FloatDistribution", 0.001, 1, True)
    assert space["optimizer"].choices == ("sgd", "adam") and grid["optimizer"] == ["sgd", "adam"]
    seeds = space["seed"]  # Hydra's range stops before its end; Optuna's bounds are inclusive
    assert (type(seeds).__name__, seeds.low, seeds.high, seeds.step) == ("IntDistribution", 1, 4, 1)
    assert type(space["trainer.max_epochs"]).__name__ == "FloatDistribution"  # Hydra's interval is float
    assert grid["trainer.max_epochs"] is None  # no grid over an interval
    assert space["model.base_width"].choices == (8, 16)  # from hydra.sweeper.params, numbers stay numbers
    assert "optimizer.momentum" not in space  # the command line's fixed value wins over the params' sweep
    assert fixed == ["optimizer.momentum=0.8", "+experiment=lr_sweep", "dataset=digits"]


@pytest.mark.parametrize("arguments, message", [
    (["dataset=digits"], "search space is empty"),
    (["optimizer.lr=interval(0.5, 0.1)"], "low must be below high"),
    (["optimizer.lr=interval(0.1, 0.1)"], "low must be below high"),
    (["optimizer.lr=tag(log, interval(0, 1))"], "log scale needs values > 0"),
    (["optimizer.lr=tag(log, choice(0.1, -1))"], "log scale needs numbers > 0"),
])
def test_bad_search_spaces_are_one_line_errors(arguments, message):
    with pytest.raises(ConfigError, match=message) as err:
        search_space({}, arguments)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("changes, message", [
    (dict(sampler="cmaes"), "not a sampler: choose tpe, random, grid"),
    (dict(pruner="asa"), "not a pruner: choose asha, median, hyperband, none"),
    (dict(direction="up"), "choose maximize or minimize"),
    (dict(n_trials=0), "n_trials=0 is not allowed"),
    (dict(sampler="grid"), "grid needs choice"),
])
def test_bad_sweeper_settings_are_one_line_errors(changes, message):
    _, grid, _ = search_space({}, ["optimizer.lr=interval(0.01, 0.1)"])
    with pytest.raises(ConfigError, match=message):
        check_settings(settings(**changes), grid)


def test_sampled_values_go_back_as_hydra_parses_them():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from lab.tuning.study import override_text

    for value in (0.013292918943162165, 1e-07, 16, "adam", None, True):
        parsed = OverridesParser.create().parse_override(override_text("k", value)).value()
        assert parsed == value and type(parsed) is type(value)


def test_results_become_trial_states():
    from optuna.trial import TrialState

    assert trial_outcome({"status": "ok", "best_val_acc": 0.9}, "best_val_acc")[:2] == (TrialState.COMPLETE, 0.9)
    assert trial_outcome({"status": "pruned", "pruned_epoch": 1}, "best_val_acc")[0] == TrialState.PRUNED
    assert trial_outcome({"status": "diverged"}, "best_val_acc")[0] == TrialState.FAIL
    assert trial_outcome({"status": "ok", "best_val_acc": None}, "best_val_acc")[0] == TrialState.FAIL
    assert trial_outcome(None, "best_val_acc")[0] == TrialState.FAIL


def test_bad_input_exits_2_with_one_line_before_anything_trains(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_train("-m", "hydra/sweeper=tune", *DIGITS, "optimizer.lr=tag(log, interval(0, 1))",
                     f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: optimizer.lr") and "interval(0.0, 1.0)" in errors[0]
    assert "log scale" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not any(sweep_dir.glob("trial=*"))


def test_the_sweeper_exits_2_on_bad_settings_before_launching(tmp_path, capsys):
    from lab.tuning.study import run_study

    hydra = {"sweeper": settings(pruner="asa"), "sweep": {"dir": str(tmp_path)}}
    config = OmegaConf.create({"seed": 1, "hydra": hydra})
    with pytest.raises(SystemExit) as stop:
        run_study(config, launcher=None, config_loader=None, arguments=["optimizer.lr=interval(0.01, 0.1)"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: hydra.sweeper.pruner=asa") and err.count("\n") == 1 and "asha" in err
    assert not (tmp_path / "tune.journal").exists()


class ScriptedLauncher:
    """Stands in for a parallel launcher in the sweeper's own test (called from the sweeper's threads): each launch
    writes its trial's results.json. Trial 0 runs until trials 1-3 have ended, which only a sweeper that starts
    trials as slots free up lets happen (one that waits for a whole batch would wait for trial 0 first); trial 2's
    first launch fails before its job ends (as when joblib ends its pool), its second runs."""

    def __init__(self, sweep_dir):
        import threading

        self.sweep_dir, self.later_ended, self.ended = sweep_dir, threading.Event(), []
        self.waited_out, self.launches = None, []

    def launch(self, job_overrides, initial_job_idx):
        import json

        [overrides] = job_overrides  # one trial a launch
        number = int(next(o for o in overrides if o.startswith("hydra.sweeper.trial=")).split("=")[1])
        assert number == initial_job_idx
        self.launches.append((number, "resume=true" in overrides))
        if number == 0:
            self.waited_out = not self.later_ended.wait(timeout=30)
        if self.launches.count((2, False)) == 1 and number == 2 and "resume=true" not in overrides:
            raise RuntimeError("A task has failed to un-serialize")
        run_dir = self.sweep_dir / f"trial={number:03d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "results.json").write_text(json.dumps({"status": "ok", "best_val_acc": 0.5 + number / 100}))
        self.ended.append(number)
        if set(self.ended) >= {1, 2, 3}:
            self.later_ended.set()


def test_trials_start_as_slots_free_up_and_a_failed_launch_runs_its_trial_again(tmp_path):
    from lab.tuning.study import run_study

    launcher = ScriptedLauncher(tmp_path)
    tuned = settings(n_trials=4, n_jobs=2, sampler="random", pruner="none")
    hydra = {"sweeper": tuned, "sweep": {"dir": str(tmp_path)}}
    config = OmegaConf.create({"seed": 1, "trainer": {"max_epochs": 2}, "hydra": hydra})
    study = run_study(config, launcher, config_loader=None, arguments=["optimizer.lr=interval(0.01, 0.1)"])
    assert launcher.waited_out is False and launcher.ended[-1] == 0 and sorted(launcher.ended) == [0, 1, 2, 3]
    assert [resume for number, resume in launcher.launches if number == 2] == [False, True]  # from its last.ckpt
    assert {t.number: t.state.name for t in study.trials} == {n: "COMPLETE" for n in range(4)}
    assert study.best_trial.number == 3 and study.user_attrs["slots"] == 2  # what tuning.md's utilisation uses


def test_slots_are_n_jobs_but_no_more_than_joblibs_workers_and_one_in_process():
    from lab.tuning.slots import slot_count

    class BasicLauncher:
        pass

    assert [slot_count(object(), 4, 2), slot_count(object(), 2, None), slot_count(object(), 2, -1)] == [2, 2, 2]
    assert slot_count(BasicLauncher(), 4, None) == 1


def test_slots_take_trials_that_cannot_be_hashed():
    """An interrupted trial comes back from the journal as Optuna's FrozenTrial, which has no hash."""
    from lab.tuning.slots import Slots

    class Done:
        def launch(self, job_overrides, initial_job_idx):
            return []

    slots, trial = Slots(Done(), 2), {"number": 7}  # a dict: unhashable too
    slots.start(trial, ["resume=true"], 7)
    assert slots.wait_any() == [(trial, None)] and slots.free == 2


SWEEPER_WITH_JOBS_THAT_NEVER_END = """
import sys, threading
from omegaconf import OmegaConf
from hydra_plugins.lab_tune.tune_sweeper import TuneSweeperConf
from lab.tuning.study import run_study

class NeverEnds:  # a Slurm job that waits in the queue, as far as the sweeper can tell
    def launch(self, job_overrides, initial_job_idx):
        print("launched", flush=True)
        threading.Event().wait()

tuned = dict(n_trials=4, n_jobs=2, sampler="random", pruner="none")
settings = OmegaConf.merge(OmegaConf.structured(TuneSweeperConf), tuned)
config = OmegaConf.create({"seed": 1, "trainer": {"max_epochs": 2},
                           "hydra": {"sweeper": settings, "sweep": {"dir": sys.argv[1]}}})
run_study(config, NeverEnds(), None, ["optimizer.lr=interval(0.01, 0.1)"])
"""


def test_ctrl_c_ends_the_sweeper_at_once_while_its_trials_wait(tmp_path):
    # SIGINT as in a terminal: a shell that runs pytest in the background (`&`) makes its children ignore it.
    proc = subprocess.Popen([sys.executable, "-c", SWEEPER_WITH_JOBS_THAT_NEVER_END, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert [proc.stdout.readline() for _ in range(2)] == ["launched\n"] * 2  # both slots busy
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)  # the launch threads do not hold the process
    finally:
        proc.kill()
    assert proc.returncode != 0


def tune(sweep_dir, *arguments, **kwargs):
    return run_train("-m", "hydra/sweeper=tune", *DIGITS, "trainer.max_epochs=3", f"hydra.sweep.dir={sweep_dir}",
                     *arguments, **kwargs)


def grid_seed_running_first(values: list, first) -> int:
    """A sampler seed whose grid order starts with `first` (the sweeper seeds with it plus the trials so far)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in range(100):
        study = optuna.create_study(sampler=optuna.samplers.GridSampler({"x": values}, seed=seed))
        if study.ask({"x": optuna.distributions.CategoricalDistribution(values)}).params["x"] == first:
            return seed
    raise AssertionError("no seed found")


@pytest.mark.slow
def test_study_goes_on_past_a_diverged_trial_and_prunes_a_bad_one(tmp_path):
    sweep = tmp_path / "sweep"
    # lr 0.05 first; then lr 1000 diverges and lr 1e-7 trails it at the first rung (in either order).
    seed = grid_seed_running_first([0.05, 1000, 1e-07], 0.05)
    proc = tune(sweep, "optimizer.lr=choice(0.05,1000,0.0000001)", "hydra.sweeper.sampler=grid",
                "hydra.sweeper.n_trials=5", f"hydra.sweeper.seed={seed}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load_study(sweep).trials  # the grid's 3 points, not n_trials
    assert [t.state.name for t in sorted(trials, key=lambda t: t.params["optimizer.lr"])] == \
        ["PRUNED", "COMPLETE", "FAIL"]
    by_lr = {t.params["optimizer.lr"]: results(sweep / t.user_attrs["dir"]) for t in trials}
    assert by_lr[1000]["status"] == "diverged"
    pruned = by_lr[1e-07]
    assert (pruned["status"], pruned["pruned_epoch"], pruned["epochs"]) == ("pruned", 0, 1)
    assert by_lr[0.05]["status"] == "ok" and by_lr[0.05]["epochs"] == 3
    summary = (sweep / "summary.md").read_text()
    assert "1 pruned" in summary and "1 diverged" in summary
    # The same sweep dir with another search space is refused: Optuna keeps one distribution per key.
    other = tune(sweep, "optimizer.lr=choice(0.1,0.2)")
    assert other.returncode == 2 and "pass a new hydra.sweep.dir" in other.stderr


@pytest.mark.slow
def test_a_killed_study_continues_without_training_a_finished_trial_again(tmp_path):
    sweep = tmp_path / "sweep"
    arguments = ["optimizer.lr=tag(log, interval(0.01, 0.1))", "hydra.sweeper.n_trials=3",
                 "hydra.sweeper.sampler=random", "hydra.sweeper.pruner=none", "trainer.max_epochs=4"]
    command = [sys.executable, "-m", "lab.train", "-m", "hydra/sweeper=tune", *DIGITS,
               f"hydra.sweep.dir={sweep}", *arguments]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    deadline = time.time() + 300
    while time.time() < deadline and not (sweep / "trial=001" / "checkpoints" / "last.ckpt").exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: (p / "results.json").read_text() for p in sweep.glob("trial=*")
                if (results(p) if (p / "results.json").exists() else {}).get("status") == "ok"}
    interrupted = results(sweep / "trial=001")["status"] == "running"
    assert "trial=000" in finished
    again = run_train("-m", "hydra/sweeper=tune", *DIGITS, f"hydra.sweep.dir={sweep}", *arguments)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = load_study(sweep).trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(p.name for p in sweep.glob("trial=*")) == ["trial=000", "trial=001", "trial=002"]
    for name, text in finished.items():  # untouched: not trained again
        assert (sweep / name / "results.json").read_text() == text
    if interrupted:  # continued from its last.ckpt in its own dir
        assert results(sweep / "trial=001")["processes"] == 2


@pytest.mark.slow
def test_two_workers_start_a_trial_as_one_ends_and_a_killed_sweeper_resumes_them(tmp_path):
    """Grid over max_epochs, the long trial first: trial 2 starts when trial 1 ends, while trial 0 still trains (a
    batch of 2 would wait for trial 0). kill -9 of the sweeper then: its joblib workers finish the trials they hold,
    and the same command, run while they do, waits for them (lab.run_files.trained_alone) rather than train a dir
    beside them; each trial's epochs are trained once and the finished trial is not touched."""
    sweep = tmp_path / "sweep"
    seed = grid_seed_running_first([150, 1, 2], 150)
    arguments = ["trainer.max_epochs=choice(150,1,2)", "hydra.sweeper.sampler=grid", "hydra.sweeper.pruner=none",
                 f"hydra.sweeper.seed={seed}", "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib",
                 "hydra.launcher.n_jobs=2"]
    command = [sys.executable, "-m", "lab.train", "-m", "hydra/sweeper=tune", *DIGITS, f"hydra.sweep.dir={sweep}",
               *arguments]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (sweep / "trial=002" / "results.json").exists():
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the sweeper alone: its joblib workers live on, in its process group
        proc.wait()
        os.killpg(proc.pid, signal.SIGSTOP)  # hold them (and their locks) until the rerun has found trial 0 busy
        statuses = {n: results(sweep / f"trial={n:03d}")["status"] for n in range(3)}
        assert statuses[0] == "running" and statuses[1] == "ok", statuses
        trial_1 = (sweep / "trial=001" / "results.json").read_text()
        log = tmp_path / "again.log"
        with open(log, "w") as err:
            again = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)
        while time.time() < deadline and "another process is training this run" not in log.read_text():
            assert again.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGCONT)
        assert again.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of the first command's workers
        except ProcessLookupError:
            pass
    trials = load_study(sweep).trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(p.name for p in sweep.glob("trial=*")) == ["trial=000", "trial=001", "trial=002"]
    assert (sweep / "trial=001" / "results.json").read_text() == trial_1  # not trained again
    assert trials[0].params["trainer.max_epochs"] == 150
    for trial in trials:
        record = results(sweep / trial.user_attrs["dir"])
        assert (record["status"], record["epochs"]) == ("ok", trial.params["trainer.max_epochs"])
        with open(sweep / trial.user_attrs["dir"] / "metrics.csv") as f:
            epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
        assert epochs == list(range(record["epochs"]))  # no epoch trained twice


def test_tuning_report_draws_the_study_and_gives_the_best_command(tmp_path):
    """A study told by hand (4 complete, 1 pruned, 1 failed) in a sweep dir: figures, importances, tuning.md."""
    import json

    from optuna.trial import TrialState

    from lab.tuning.report import write_tuning_report
    from lab.tuning.study import open_study

    tuned = settings(n_trials=6)
    OmegaConf.save(OmegaConf.create({"hydra": {"sweeper": tuned}}), tmp_path / "multirun.yaml")
    space, _, _ = search_space({}, ["optimizer.lr=tag(log, interval(0.001, 1))", "optimizer=choice(sgd,adam)"])
    study = open_study(tuned, tmp_path, max_epochs=4)
    study.set_user_attr("max_epochs", 4)
    study.set_user_attr("fixed_overrides", ["dataset=digits"])
    for number, (lr, name, state, value, epochs) in enumerate([
            (0.01, "sgd", "COMPLETE", 0.9, 4), (0.5, "adam", "COMPLETE", 0.3, 4), (0.03, "adam", "COMPLETE", 0.7, 4),
            (0.002, "sgd", "COMPLETE", 0.8, 4), (0.9, "sgd", "PRUNED", 0.2, 1), (0.1, "sgd", "FAIL", None, 2)]):
        trial = study.ask(space)
        trial.set_user_attr("dir", f"trial={number:03d}")
        for step in range(1, min(epochs, 2) + 1):
            trial.report(0.1 * step, step)
        study.tell(trial, value if state == "COMPLETE" else None, state=TrialState[state])
        (tmp_path / f"trial={number:03d}").mkdir()
        (tmp_path / f"trial={number:03d}" / "results.json").write_text(json.dumps(
            {"status": state.lower(), "epochs": epochs, "test_acc": value}))
    figures = write_tuning_report([tmp_path], tmp_path / "out")
    assert [p.name for p in figures] == ["tune_progress.png", "tune_params.png", "tune_importance.png"]
    assert all(p.stat().st_size > 1000 for p in figures)
    text = (tmp_path / "out" / "tuning.md").read_text()
    best = study.best_trial
    assert best.value == 0.9 and f"Best trial {best.number} (trial=000)" in text
    assert f"python -m lab.train dataset=digits optimizer.lr={best.params['optimizer.lr']!r} optimizer=" in text
    assert "Epochs trained: 19 of the 24 that 6 full trials of 4 epochs would cost (79%)" in text
    assert "4 complete, 1 pruned, 1 fail" in text and "0.1000 (at stop)" in text  # the last epoch it reported
