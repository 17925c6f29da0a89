"""hydra/sweeper=tune: an Optuna study (ask and tell) whose trials are lab.train jobs sent out through the
configured Hydra launcher, n_jobs running at once, a new one as each ends (slots.py). The search space is Hydra's
override grammar (interval, range, choice, tag(log, ...); space.py); each job reports its epochs to its trial
(pruning.py, a callback the sweeper hands to lab.train), so the pruner stops bad trials early; the study lives in
the sweep dir (tune.journal), so the same command continues it.

Trial dirs are named trial=NNN (sampled floats make poor dir names); each job's results.json holds its
overrides. Optuna is imported only here, when a tuning sweep starts."""
import logging
import math
from pathlib import Path

from omegaconf import OmegaConf

from lab.errors import ConfigError, exit_for_user_error
from lab.run_files import ENDED, read_results
from lab.tuning.slots import Slots, slot_count
from lab.tuning.space import check_same_space, check_settings, grid_left, search_space

log = logging.getLogger("lab")
JOURNAL = "tune.journal"


def grid_sampler_class():
    import optuna

    class AskAndTellGrid(optuna.samplers.GridSampler):
        """GridSampler calls study.stop() once the grid is done, which raises outside study.optimize; the
        sweeper stops at the grid's size itself (grid_left)."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return AskAndTellGrid


def make_sampler(settings, grid: dict, seed: int):
    import optuna

    if settings.sampler == "grid":
        return grid_sampler_class()(grid, seed=seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(settings, max_epochs: int):
    """Steps are epochs trained (1 = after the first epoch)."""
    import optuna

    first, factor = settings.min_epochs, settings.reduction_factor
    if settings.pruner == "asha":
        from lab.tuning.asha import ASHAPruner

        return ASHAPruner(first, factor, max_epochs)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=max_epochs, reduction_factor=factor)
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=first - 1)
    return optuna.pruners.NopPruner()


def open_storage(settings, sweep_dir: Path):
    """The journal file in the sweep dir (one append-only file, safe for several processes), or a URL."""
    from optuna.storages import JournalStorage, get_storage
    from optuna.storages.journal import JournalFileBackend

    if settings.storage:
        return get_storage(settings.storage)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(Path(sweep_dir) / JOURNAL)))


def open_study(settings, sweep_dir: Path, max_epochs: int, sampler=None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # lab logs each trial itself
    return optuna.create_study(storage=open_storage(settings, sweep_dir), study_name=settings.study_name,
                               sampler=sampler, pruner=make_pruner(settings, max_epochs),
                               direction=settings.direction, load_if_exists=True)


def trial_dirname(number: int) -> str:
    return f"trial={number:03d}"


def trial_outcome(record: dict | None, objective: str):
    """(Optuna state, value, what the log says) for a job's results.json."""
    from optuna.trial import TrialState

    status = (record or {}).get("status", "no results.json")
    if status == "pruned":
        return TrialState.PRUNED, None, f"pruned after epoch {record.get('pruned_epoch')}"
    if status != "ok":
        return TrialState.FAIL, None, status + (f": {record.get('error')}" if record and record.get("error") else "")
    if objective not in record:
        numbers = sorted(k for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        exit_for_user_error(f"hydra.sweeper.objective={objective} is not in results.json (numbers there: "
                            f"{', '.join(numbers)})")
    value = record[objective]
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return TrialState.FAIL, None, f"{objective} is {value}"
    return TrialState.COMPLETE, float(value), f"{objective} {value:.4f}"


def override_text(key: str, value) -> str:
    """key=value as Hydra parses it back: floats at full precision, null and true/false in YAML's words."""
    if value is None or isinstance(value, bool):
        return f"{key}={'null' if value is None else str(value).lower()}"
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"


def job_overrides(trial, fixed: list[str], resume: bool) -> list[str]:
    sampled = [override_text(key, value) for key, value in trial.params.items()]
    return fixed + sampled + [f"hydra.sweeper.trial={trial.number}",
                              f"hydra.sweep.subdir='{trial.user_attrs['dir']}'"] + (["resume=true"] if resume else [])


def settle_earlier(study, sweep_dir: Path, objective: str) -> list:
    """Trials an earlier command left running: told from their results.json when the job had finished,
    else returned, to be launched again into their own dir with resume=true."""
    from optuna.trial import TrialState

    again = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = read_results(sweep_dir / trial.user_attrs.get("dir", trial_dirname(trial.number)))
        if record and record.get("status") in ("ok", "diverged", "pruned"):
            tell(study, trial, record, objective)
        else:
            again.append(trial)
    if again:
        log.info(f"tune: {len(again)} interrupted trial(s) run again: {', '.join(str(t.number) for t in again)}")
    return again


def tell(study, trial, record: dict | None, objective: str, launch_error: str | None = None) -> bool:
    """Tell the trial's outcome; True when it finished (complete or pruned)."""
    from optuna.trial import TrialState

    state, value, note = trial_outcome(record, objective)
    if launch_error and state == TrialState.FAIL:
        note += f"; the launch failed: {launch_error}"
    study.tell(trial.number, value, state=state, skip_if_finished=True)
    log.info(f"tune: trial {trial.number} {state.name.lower()} ({note}) {dict(trial.params)}")
    return state != TrialState.FAIL


def exit_on_config_error(check, *args):
    """A user's mistake in the sweep, before anything trains: one line and exit 2 (raised inside a Sweeper,
    Hydra would print a traceback and exit 1)."""
    try:
        return check(*args)
    except ConfigError as err:
        exit_for_user_error(err)


def checked_space(settings, arguments: list[str], config_loader):
    space, grid, fixed = search_space(OmegaConf.to_container(settings.params), list(arguments), config_loader)
    check_settings(settings, grid)
    return space, grid, fixed


def prepare_study(config, grid: dict, fixed: list[str], space: dict):
    """The study in the sweep dir (new or continued), with its sampler; -> (study, n_trials)."""
    settings, sweep_dir = config.hydra.sweeper, Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")  # before any job: lab.sweeps reads the sweep from it
    max_epochs = int(OmegaConf.select(config, "trainer.max_epochs", default=1))
    study = open_study(settings, sweep_dir, max_epochs)
    exit_on_config_error(check_same_space, study, space, sweep_dir)
    n_trials = settings.n_trials
    if settings.sampler == "grid":
        n_trials = min(n_trials, len(study.trials) + grid_left(study, grid))
    seed = (settings.seed if settings.seed is not None else config.seed) + len(study.trials)  # no replayed draws
    study.sampler = make_sampler(settings, grid, seed)
    study.set_user_attr("max_epochs", max_epochs)
    study.set_user_attr("fixed_overrides", fixed)
    return study, n_trials


RELAUNCHES = 2  # launches of one trial that may fail before its job ended (see slots.py) before it counts as failed


def run_study(config, launcher, config_loader, arguments: list[str]):
    """n_jobs trials running at once, interrupted ones of an earlier command first, a new one asked for as each ends,
    until the study holds n_trials (slots.py says why one launch per trial)."""
    settings, sweep_dir = config.hydra.sweeper, Path(config.hydra.sweep.dir)
    space, grid, fixed = exit_on_config_error(checked_space, settings, arguments, config_loader)
    study, n_trials = prepare_study(config, grid, fixed, space)
    again = settle_earlier(study, sweep_dir, settings.objective)
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
    failed, relaunched = 0, {}
    slots = Slots(launcher, slot_count(launcher, settings.n_jobs, OmegaConf.select(config, "hydra.launcher.n_jobs")))
    study.set_user_attr("slots", slots.size)  # tuning.md's utilisation is over these
    while True:
        # A typo in a fixed override fails every job at start-up: the first n_jobs trials show it.
        given_up = not finished and failed >= slots.size
        while slots.free and not given_up and (again or len(study.trials) < n_trials):
            trial, resume = (again.pop(0), True) if again else (ask(study, space), False)
            slots.start(trial, job_overrides(trial, fixed, resume), trial.number)
        if not slots.running:
            break
        for trial, launch_error in slots.wait_any():
            record = read_results(sweep_dir / trial.user_attrs["dir"])
            if launch_error and (record or {}).get("status") not in ENDED and \
                    relaunched.get(trial.number, 0) < RELAUNCHES:
                relaunched[trial.number] = relaunched.get(trial.number, 0) + 1
                log.warning(f"tune: trial {trial.number}'s launch failed before its job ended ({launch_error}): "
                            f"launched again from its last.ckpt")
                again.append(trial)
                continue
            ended = tell(study, trial, record, settings.objective, launch_error)
            finished, failed = finished + ended, failed + (not ended)
    if given_up:
        log.error(f"tune: every trial failed: stopping the study (see results.json in {sweep_dir})")
    log_best(study, settings.objective)
    return study


def ask(study, space: dict):
    trial = study.ask(space)
    trial.set_user_attr("dir", trial_dirname(trial.number))
    return trial


def log_best(study, objective: str) -> None:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        log.warning("tune: no trial completed")
        return
    best = study.best_trial
    log.info(f"tune: best trial {best.number}: {objective} {best.value:.4f} {dict(best.params)}")
