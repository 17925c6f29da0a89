"""How a lab command ends when its work does not return: failed (one line for the user, the traceback in the
run's log) or interrupted by SIGTERM/Ctrl-C. `run_or_exit` is the one place lab.train, lab.eval and lab.predict
end; a finished run's results.json is never replaced by a failure or a stop. (lab/train.py writes the
running, ok and diverged statuses itself.)"""
import logging
import math
import os
import shutil
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

from lab.context import RunContext
from lab.errors import EXIT_STOPPED, USER_ERRORS, ResumeRefused, first_line
from lab.run_files import FINISHED, read_results, save_results, write_json

log = logging.getLogger("lab")


class StopRequest:
    """How this run was asked to stop: None, or "Ctrl-C" once the user pressed it (the last line names it)."""
    by: str | None = None


def run_or_exit(work, cfg, ctx: RunContext, records_run: bool = True):
    """work(cfg, ctx)'s value, or the end of the process: a stop exits 130/143, a user error 2, any other error 1,
    each after one log line. records_run: work writes results.json (lab.train), so a failure or a stop is recorded
    there. Under -m a failed job returns NaN instead, so the sweep goes on (the sweep's callback names the failed
    jobs and exits 1 at the end)."""
    stop = StopRequest()
    try:
        with ctrl_c_stops_after_the_batch(stop):
            value = work(cfg, ctx)
    except BaseException as err:
        by = stop_signal(err, stop)
        if by:
            stopped(cfg, ctx, by, records_run)
        if not isinstance(err, Exception):  # SystemExit that is not a stop, GeneratorExit
            raise
        message = fail(cfg, ctx, err, records_run)
        log.error(f"error: {message}" + (f" [run dir {ctx.run_dir}]" if ctx.run_dir.is_dir() and records_run else ""))
        if ctx.in_sweep:
            return math.nan
        sys.exit(2 if isinstance(err, USER_ERRORS) else 1)
    if stop.by:  # pressed where Lightning does not stop early (a last batch): stop a sweep too
        stopped(cfg, ctx, stop.by, records_run)
    return value


def stop_signal(err: BaseException, stop: StopRequest) -> str | None:
    """"SIGTERM" or "Ctrl-C" when err is how a stop surfaces, else None."""
    if isinstance(err, KeyboardInterrupt):
        return "Ctrl-C"
    # Lightning's SIGTERMException (a SystemExit). Looked up, not imported: a command that never loaded
    # Lightning cannot have raised it, and should not pay for the import on its way out.
    lightning = sys.modules.get("pytorch_lightning.utilities.exceptions")
    if lightning is not None and isinstance(err, lightning.SIGTERMException):
        return stop.by or "SIGTERM"
    if isinstance(err, SystemExit) and stop.by:  # Lightning exits 1 on a KeyboardInterrupt
        return stop.by
    return None


@contextmanager
def ctrl_c_stops_after_the_batch(stop: StopRequest):
    """The first Ctrl-C stops the run the way SIGTERM does: after the current batch, with last.ckpt saved
    there and status interrupted, so resume=true continues exactly. It sends this process SIGTERM, which
    Lightning's handler (installed while fit/test run) turns into a stop at the batch's end. Elsewhere, or
    pressed again, Ctrl-C interrupts at once (Lightning then exits 1 mid-batch, with no checkpoint)."""
    def on_ctrl_c(signum, frame):
        lightning_stops = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        first = stop.by is None
        stop.by = "Ctrl-C"
        if first and lightning_stops:
            log.warning("Ctrl-C: stopping after this batch and saving last.ckpt (press again to stop at once)")
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def log_file_only(text: str) -> None:
    """The traceback goes to the run's log file (Hydra's file handler), not to the console."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.stream.write(text)
            handler.flush()


def record_stop(cfg, ctx: RunContext, results: dict, keep_record: bool = False) -> bool:
    """Write a failed or interrupted status, but never over a finished run's results (a resume=true that
    stopped before training must not erase them); True when the run had finished. keep_record: keep the
    run's own config, choices and facts (a refused resume)."""
    earlier = read_results(ctx.run_dir) or {}
    finished = earlier.get("status") in FINISHED
    if finished or not ctx.rank_zero:
        return finished
    if keep_record:
        write_json(ctx.run_dir / "results.json", dict(earlier, **results))
    else:
        save_results(cfg, ctx, results)
    return False


def fail(cfg, ctx: RunContext, err: Exception, records_run: bool = True) -> str:
    """Record a failed run: one line for the user, the traceback in the run's log file. A user error before
    a single new run began leaves no run dir: the line says everything (a sweep's job dir stays, for the
    report, and so does a resumed run's)."""
    user_error = isinstance(err, USER_ERRORS)
    name = type(err).__name__
    message = str(err) if user_error else f"{name}: {first_line(err, limit=300 - len(name) - 2)}"
    if not user_error:
        log_file_only("".join(traceback.format_exception(err)))
    if not records_run:
        return message
    # Nothing of a run yet: no epoch, no checkpoint, and no results.json but this run's own "running" mark.
    run_dir = ctx.run_dir
    began = any((run_dir / name).exists() for name in ("metrics.csv", "checkpoints")) or \
        (read_results(run_dir) or {"status": "running"})["status"] != "running"
    if user_error and not began and not ctx.in_sweep and not cfg.get("resume") and ctx.rank_zero:
        remove_run_dir(run_dir)
        return message
    record_stop(cfg, ctx, dict(status="failed", error=message, test_acc=None),
                keep_record=isinstance(err, ResumeRefused))
    return message


def remove_run_dir(run_dir: Path) -> None:
    """Hydra's own files only (.hydra/, the log) and the run's "running" mark: nothing of a run is lost. The
    date dir above goes too when this run was its only one."""
    if any(p.name not in (".hydra", ".lock", "train.log", "eval.log", "predict.log", "results.json")
           for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()
    except OSError:  # not empty: other runs of that day
        pass


def stopped(cfg, ctx: RunContext, by: str, records_run: bool = True) -> None:
    """SIGTERM or Ctrl-C: record the run as interrupted (unless it finished) and say how to continue it."""
    if not records_run:
        log.error(f"stopped by {by}")
    elif record_stop(cfg, ctx, dict(status="interrupted", test_acc=None)):
        log.error(f"stopped by {by}; {ctx.run_dir} had finished, its results are saved")
    else:
        log.error(f"stopped by {by}; {requeue_note(by, ctx)}continue with the same command plus resume=true "
                  f"{resume_dir(ctx)}")
    sys.exit(EXIT_STOPPED.get(by, 143))


def resume_dir(ctx: RunContext) -> str:
    """The override that points resume=true at this run, or at its whole sweep under -m."""
    if ctx.in_sweep:
        return f"hydra.sweep.dir={ctx.sweep_dir} (the whole sweep: finished jobs are skipped)"
    return f"hydra.run.dir={ctx.run_dir}"


def requeue_note(by: str, ctx: RunContext) -> str:
    """The words for a SIGTERM inside a Slurm job, put before the resume=true hint: a requeue (preemption,
    scontrol requeue) reruns the same command with SLURM_RESTART_COUNT > 0, which resumes by itself when that
    command lands in the same dir; a cancelled (scancel) job needs the hint."""
    if by != "SIGTERM" or not ctx.slurm.job_id:
        return ""
    same_dir = ctx.in_sweep or ctx.run_dir_given  # submitit reruns the pickled sweep
    when = "" if same_dir else " if its command sets hydra.run.dir (else a rerun starts over in a new dir)"
    return (f"if Slurm requeues this job (preemption, scontrol requeue), it resumes from last.ckpt on its "
            f"own{when}; if it was cancelled (scancel), ")
