"""python -m lab.study [study=NAME] [study.KEY=VALUE ...] [lab.train overrides ...]: run a study's steps (each a
lab.train run or sweep, in <study dir>/<step>) and write <study dir>/REPORT.md, report.json and the figures.

The same command again continues the same study dir: finished jobs are skipped, interrupted ones resume from
last.ckpt. Exit 0 when every job finished, 1 when a job or step failed (named), 2 for a bad study config,
130 after Ctrl-C and 143 after SIGTERM."""
import json
import logging
import shlex
import signal
import sys
import time
from pathlib import Path

from lab.errors import EXIT_STOPPED, ConfigError, say_user_error
from lab.run_files import read_results, write_json
from lab.study.plan import (
    Step,
    compose_study,
    gpu_overrides,
    inspect_step,
    mark_identical_jobs,
    selected_steps,
    split_argv,
    step_command,
    study_dir,
)
from lab.study.report import failed_jobs, write_study_report
from lab.study.run import (
    POLL_S,
    Progress,
    Stopped,
    all_finished,
    copy_identical_jobs,
    first_finished_run,
    job_dirs,
    start_step,
    step_error,
    stop_steps,
)
from lab.study.tracking import open_study_group, study_tracker
from lab.tracking import close_group

log = logging.getLogger("lab")


def plan_study(argv: list[str]):
    study_overrides, step_overrides, config_dir = split_argv(argv)
    study = compose_study(study_overrides, config_dir)
    study["config_dir"] = config_dir  # each step's lab.train gets it too: the user's groups and experiments
    study["tracker"] = study_tracker(step_overrides, config_dir)  # logger=mlflow/wandb: the study is one group
    out = study_dir(study, study_overrides, step_overrides)
    step_overrides = step_overrides + gpu_overrides(study, step_overrides)
    steps = [Step(name, study["plan"][name] or {}) for name in selected_steps(study)]
    return study, out, step_overrides, steps


def plan_jobs(steps: list[Step], study: dict, step_overrides: list[str], out: Path) -> dict:
    """Each step's jobs (step.jobs) and their count, for the ETA, after checking every job of every step: a bad
    value or path is one line before any step runs (ConfigError). A job identical to an earlier one is marked to be
    copied, not trained again. A step that needs an earlier one is planned with a stand-in dir."""
    totals = {}
    for step in steps:
        probe = Step(step.name, step.spec)
        step_command(probe, study, step_overrides, out, lambda name: out / name)
        if probe.skipped:
            totals[step.name] = 0
            continue
        step.jobs, problem = inspect_step(probe.command)
        if problem:
            raise ConfigError(f"study step {step.name} (python -m lab.train {' '.join(probe.command)}): {problem}")
        totals[step.name] = len(step.jobs) if step.jobs is not None else None
    mark_identical_jobs(steps)
    return totals


def run_steps(steps: list[Step], study: dict, step_overrides: list[str], out: Path, progress: Progress) -> dict:
    """{step: outcome dict}; starts steps in the plan's order, at most parallel_steps at once, a step only once
    the steps it needs (and those whose jobs it copies) have ended."""
    outcomes, running, pending = {}, {}, list(steps)
    by_name = {step.name: step for step in steps}
    try:
        while pending or running:
            for step in list(pending):
                if len(running) >= study["parallel_steps"]:
                    break
                if waits_for(step) & ({s.name for s in pending} | set(running)):
                    if study["parallel_steps"] == 1:
                        break
                    continue
                pending.remove(step)
                process, outcome = start_or_settle(step, study, step_overrides, out, progress)
                running.update({step.name: process} if process else {})
                outcomes.update({step.name: outcome} if outcome else {})
            time.sleep(POLL_S)
            for name, process in list(running.items()):
                ended = process.poll() is not None
                progress.scan(name, out / name)  # after poll: an ended step's last job is seen too
                if ended:
                    del running[name]
                    outcomes[name] = step_outcome(by_name[name], process.returncode, out)
    except (KeyboardInterrupt, Stopped) as stop:
        by = stop.by if isinstance(stop, Stopped) else "Ctrl-C"
        log.warning(f"study: {by}: stopping {', '.join(running) or 'nothing'} after the current batch")
        stop_steps(running, by)
        for name in running:
            outcomes[name] = dict(status="stopped", reason=f"stopped by {by}", command=by_name[name].command)
        raise Stopped(by, outcomes) from None
    return outcomes


def waits_for(step: Step) -> set:
    """The steps that must end before this one starts: its needs, and those whose jobs it copies."""
    copied = {job.same_as.split("/")[0] for job in step.jobs or [] if job.same_as}
    return set((step.spec.get("needs") or {}).values()) | copied


def start_or_settle(step: Step, study: dict, step_overrides: list[str], out: Path, progress: Progress):
    """(the step's process, None), or (None, its outcome) when it is skipped or has nothing left to run."""
    step_command(step, study, step_overrides, out, lambda name: first_finished_run(out / name))
    if step.skipped:
        log.warning(f"study: {step.name} skipped: {step.skipped}")
        return None, dict(status="skipped", reason=step.skipped)
    copy_identical_jobs(step, out)
    progress.begin(step.name, out / step.name)
    if all_finished(step, out):
        log.info(f"study: {step.name}: every job finished earlier: nothing to run")
        return None, dict(status="ok", command=step.command, note="every job finished earlier")
    return start_step(step, out), None


def step_outcome(step: Step, returncode: int, out: Path) -> dict:
    log_path = out / "logs" / f"{step.name}.log"
    outcome = dict(status="ok" if returncode == 0 else "failed", exit_code=returncode, command=step.command,
                   log=str(log_path.relative_to(out)))
    if returncode != 0:
        outcome["error"] = step_error(out / step.name, returncode, log_path.relative_to(out))
        log.error(f"study: {step.name} exited {returncode}: {outcome['error']} (log {log_path})")
    return outcome


def on_sigterm(signum, frame):
    raise Stopped("SIGTERM")


def previous_runs(out: Path) -> list[dict]:
    """study_runs.json: every command that worked on this study dir (the study's wall time sums them)."""
    try:
        return json.loads((out / "study_runs.json").read_text()).get("runs", [])
    except (OSError, ValueError, AttributeError):
        return []


def answer_flags(argv: list[str]) -> int | None:
    """--help (exit 0) and any flag lab.study does not take (exit 2); None: go on."""
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.strip() + "\n\nThe steps, keys and report: docs/study.md; the default study: "
              "conf/study/lab_report.yaml.")
        return 0
    unknown = [arg for arg in argv if arg.startswith("-") and arg not in ("-m", "--multirun", "--config-dir", "-cd")
               and not arg.startswith("--config-dir=")]
    if unknown:
        return say_user_error(f"{unknown[0]}: lab.study takes overrides (KEY=VALUE), --config-dir DIR and --help")
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags_said = answer_flags(argv)
    if flags_said is not None:
        return flags_said
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        study, out, step_overrides, steps = plan_study(argv)
        totals = plan_jobs(steps, study, step_overrides, out)  # every job checked before any step runs
    except ConfigError as err:
        return say_user_error(err)
    except KeyboardInterrupt:
        print("stopped by Ctrl-C before any step started", file=sys.stderr)
        return 130
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    group = open_study_group(study, out, step_overrides)
    log.info(f"study {study['name']}: {len(steps)} step(s) ({', '.join(s.name for s in steps)}) in {out}")
    progress = Progress(totals)
    for step in steps:
        progress.begin(step.name, out / step.name, say=False)
    signal.signal(signal.SIGTERM, on_sigterm)
    stopped_by, outcomes = None, {}
    try:
        outcomes = run_steps(steps, study, step_overrides, out, progress)
    except Stopped as stop:
        stopped_by, outcomes = stop.by, stop.outcomes
    exit_code = finish(study, out, argv, steps, outcomes, started, stopped_by)
    close_group(group, [(read_results(p) or {}).get("status") for step in steps for p in job_dirs(out / step.name)],
                stopped=stopped_by is not None)
    return exit_code


def finish(study, out, argv, steps, outcomes, started, stopped_by) -> int:
    command = shlex.join(["python", "-m", "lab.study", *argv])
    runs = previous_runs(out) + [dict(argv=argv, started_at=round(started, 3), ended_at=round(time.time(), 3))]
    report = write_study_report(study, out, steps, outcomes, runs, command=command)
    failed = failed_jobs(report)
    exit_code = EXIT_STOPPED[stopped_by] if stopped_by else 1 if failed else 0
    runs[-1]["exit_code"] = exit_code
    write_json(out / "study_runs.json", {"runs": runs})
    log.info(f"study: report {out / 'REPORT.md'}")
    if stopped_by:
        log.error(f"study: stopped by {stopped_by}; continue with the same command: {command} (finished jobs "
                  "are skipped, interrupted ones resume from last.ckpt)")
    elif failed:
        log.error(f"study: {len(failed)} failed: {', '.join(failed)} (see REPORT.md and {out / 'logs'})")
    return exit_code
