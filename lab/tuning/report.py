"""The report of a hydra/sweeper=tune sweep dir (study.py): tune_progress.png (best so far vs trial),
tune_params.png (the objective against each tuned key, log x where sampled log), tune_importance.png (with two
keys or more) and tuning.md (the best trial as a command, epochs spent vs full trials, one row per trial).

The study is read from the sweep dir's storage; each trial's results.json gives its epochs and test_acc.
Pruned trials are drawn apart, at the last value their epochs reported (they have no objective value)."""
import logging
from pathlib import Path

from omegaconf import OmegaConf

from lab.keys import override_key
from lab.run_files import read_results, save_png, write_atomic
from lab.tuning.study import JOURNAL, open_storage, override_text

log = logging.getLogger("lab")
PRUNED_STYLE = dict(marker="x", color="0.55", linestyle="none", label="pruned (value at the stop)")
DONE_STYLE = dict(marker="o", color="tab:blue", linestyle="none", label="complete")


def tuning_settings(sweep_dir: Path):
    """The sweeper settings of a tuning sweep dir, else None."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    settings = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper")
    return settings if settings is not None and "TuneSweeper" in str(settings.get("_target_", "")) else None


def load_trials(sweep_dir: Path, settings):
    """(study, [one dict per trial: number, state, params, value, stop_value, epochs, test_acc, dir])."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=settings.study_name, storage=open_storage(settings, sweep_dir))
    rows = []
    for trial in study.get_trials(deepcopy=False):
        dirname = trial.user_attrs.get("dir", "")
        record = read_results(Path(sweep_dir) / dirname) or {}
        steps = trial.intermediate_values
        rows.append(dict(number=trial.number, state=trial.state.name.lower(), params=trial.params,
                         value=trial.value, stop_value=steps[max(steps)] if steps else None, dir=dirname,
                         epochs=record.get("epochs", max(steps) if steps else 0), test_acc=record.get("test_acc"),
                         distributions=trial.distributions, started_at=record.get("started_at"),
                         finished_at=record.get("finished_at")))
    return study, rows


def progress_figure(rows, settings):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    done = [r for r in rows if r["state"] == "complete"]
    pruned = [r for r in rows if r["state"] == "pruned" and r["stop_value"] is not None]
    ax.plot([r["number"] for r in done], [r["value"] for r in done], **DONE_STYLE)
    ax.plot([r["number"] for r in pruned], [r["stop_value"] for r in pruned], **PRUNED_STYLE)
    better = max if settings.direction == "maximize" else min
    best, xs, ys = None, [], []
    for r in sorted(done, key=lambda r: r["number"]):
        best = r["value"] if best is None else better(best, r["value"])
        xs.append(r["number"]), ys.append(best)
    if xs:
        ax.step(xs + [rows[-1]["number"]], ys + [ys[-1]], where="post", color="tab:orange", label="best so far")
    failed = sum(r["state"] == "fail" for r in rows)
    ax.set(xlabel="trial", ylabel=settings.objective,
           title=f"{len(rows)} trials: {len(done)} complete, {len(pruned)} pruned, {failed} failed")
    ax.legend(loc="best")
    return fig


def params_figure(rows, keys: list[str], settings):
    """One panel per key; a categorical key of words gets one x position per choice."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(keys), 4), layout="constrained")
    for ax, key in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys):
        dist = next(r["distributions"][key] for r in rows if key in r["distributions"])
        choices = list(getattr(dist, "choices", None) or [])
        words = any(not isinstance(c, (int, float)) or isinstance(c, bool) for c in choices)
        for style, kind, value in ((DONE_STYLE, "complete", "value"), (PRUNED_STYLE, "pruned", "stop_value")):
            chosen = [r for r in rows if r["state"] == kind and key in r["params"] and r[value] is not None]
            xs = [choices.index(r["params"][key]) if words else r["params"][key] for r in chosen]
            ax.plot(xs, [r[value] for r in chosen], **style)
        log_scale = getattr(dist, "log", False)
        if log_scale:
            ax.set_xscale("log")
        if words:
            ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        ax.set(xlabel=key + (" (log)" if log_scale else ""), ylabel=settings.objective)
    fig.axes[0].legend()
    fig.suptitle(f"{settings.objective} against each tuned key")
    return fig


def importance_figure(study, keys: list[str]):
    """Optuna's fANOVA importances over the complete trials; None when too few trials to fit them."""
    import optuna
    from matplotlib.figure import Figure

    try:
        importances = optuna.importance.get_param_importances(study, params=keys)
    except (RuntimeError, ValueError) as err:
        log.info(f"report: no parameter importances ({err})")
        return None
    fig = Figure(figsize=(6, 0.6 * len(keys) + 1.5), layout="constrained")
    ax = fig.subplots()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (fANOVA, sums to 1)", title="Which keys mattered")
    return fig


def slot_use(rows, slots: int) -> dict | None:
    """How busy the sweep kept its slots: the trials' summed time (each job's start of training to its results.json)
    over slots x the span from the first trial's start to the last one's end. None without two timed trials."""
    timed = [r for r in rows if r["started_at"] and r["finished_at"]]
    if len(timed) < 2:
        return None
    busy = sum(r["finished_at"] - r["started_at"] for r in timed)
    span = max(r["finished_at"] for r in timed) - min(r["started_at"] for r in timed)
    return dict(slots=slots, busy_s=busy, span_s=span, utilisation=busy / (slots * span) if span > 0 else None)


def slot_line(use: dict | None) -> list[str]:
    if not use or use["utilisation"] is None:
        return []
    return [f"Slots: {use['slots']} trial(s) at once; the trials' summed time {use['busy_s'] / 60:.1f} min over "
            f"{use['slots']} x {use['span_s'] / 60:.1f} min from the first trial's start to the last one's end: "
            f"**utilisation {use['utilisation']:.2f}** (a continued study's span includes the time between "
            f"its commands).", ""]


def best_command(study, best: dict) -> str:
    fixed = list(study.user_attrs.get("fixed_overrides", []))
    if any(override_key(item) == "experiment" for item in fixed):
        fixed.append("hydra.mode=RUN")  # an experiment may carry its own sweep (hydra.mode: MULTIRUN)
    items = fixed + [override_text(k, v) for k, v in best["params"].items()]
    return "python -m lab.train " + " ".join(f"'{i}'" if any(c in i for c in " ()") else i for i in items)


def tuning_markdown(study, rows, keys, settings, sweep_dir: Path, figures: list[Path]) -> str:
    done = [r for r in rows if r["state"] == "complete"]
    max_epochs = study.user_attrs.get("max_epochs")
    spent = sum(int(r["epochs"] or 0) for r in rows)
    counts = ", ".join(f"{sum(r['state'] == state for r in rows)} {state}" for state in ("complete", "pruned", "fail"))
    lines = [f"# Tuning study `{settings.study_name}` in {sweep_dir}", "",
             f"{len(rows)} trials ({counts}); "
             f"sampler {settings.sampler}, pruner {settings.pruner} (from epoch {settings.min_epochs}, reduction "
             f"factor {settings.reduction_factor}); objective {settings.objective} ({settings.direction}).", ""]
    if max_epochs:
        full = len(rows) * int(max_epochs)
        lines += [f"Epochs trained: {spent} of the {full} that {len(rows)} full trials of {max_epochs} epochs would "
                  f"cost ({100 * spent / full:.0f}%).", ""]
    # A study of a lab that did not record its slots ran n_jobs at a time.
    lines += slot_line(slot_use(rows, study.user_attrs.get("slots", settings.n_jobs)))
    if not settings.storage:
        lines += ['Browse it in optuna-dashboard (`pip install -e ".[dashboard]"`): '
                  f"`optuna-dashboard {Path(sweep_dir) / JOURNAL}`", ""]
    if done:
        best = next(r for r in done if r["number"] == study.best_trial.number)
        test = f", test_acc {best['test_acc']:.4f}" if best["test_acc"] is not None else ""
        lines += [f"Best trial {best['number']} ({best['dir']}): {settings.objective} {best['value']:.4f}{test}. "
                  "Train it again with:", "", "    " + best_command(study, best), ""]
    lines += ["| trial | state | " + " | ".join(keys) + f" | {settings.objective} | epochs | test_acc |",
              "|" + "---|" * (len(keys) + 5)]
    for r in rows:
        value = r["stop_value"] if r["state"] == "pruned" else r["value"]
        cells = [str(r["number"]), r["state"]] + [f"{r['params'].get(k, ''):.4g}" if isinstance(
            r["params"].get(k), float) else str(r["params"].get(k, "")) for k in keys]
        cells += ["" if value is None else f"{value:.4f}" + (" (at stop)" if r["state"] == "pruned" else ""),
                  str(r["epochs"]), "" if r["test_acc"] is None else f"{r['test_acc']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"![{p.stem}]({p.name})" for p in figures]
    return "\n".join(lines) + "\n"


def write_tuning_report(dirs, out: Path) -> list[Path]:
    """For each tuning sweep among `dirs`: its figures (returned) and tuning.md, in `out`."""
    studies = [(Path(d), s) for d in dirs if (s := tuning_settings(d)) is not None]
    figures = []
    for sweep_dir, settings in studies:
        prefix = "tune_" + (f"{sweep_dir.name}_" if len(studies) > 1 else "")
        study, rows = load_trials(sweep_dir, settings)
        if not rows:
            continue
        keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
        drawn = {"progress": progress_figure(rows, settings), "params": params_figure(rows, keys, settings)}
        if len(keys) >= 2 and sum(r["state"] == "complete" for r in rows) >= 2:
            drawn["importance"] = importance_figure(study, keys)
        mine = [save_png(fig, Path(out) / f"{prefix}{name}.png") for name, fig in drawn.items() if fig is not None]
        write_atomic(Path(out) / f"tuning{'_' + sweep_dir.name if len(studies) > 1 else ''}.md",
                     tuning_markdown(study, rows, keys, settings, sweep_dir, mine))
        figures += mine
    return figures
