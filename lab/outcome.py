"""How a run's results.json ends when lab.train does not finish it: failed (one line for the user, the
traceback in the run's log), or interrupted by SIGTERM/Ctrl-C. A finished run's results are never replaced
by either. (lab/train.py writes running and ok/diverged through save_results.)"""
import logging
import os
import sys
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from lab.errors import USER_ERRORS, ResumeRefused
from lab.run_files import FINISHED, git_commit, read_results, write_json
from lab.slurm import requeue_note

log = logging.getLogger("lab")


def is_rank_zero() -> bool:
    # DDP children are re-executed copies of this command; only rank 0 writes run files.
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def save_results(cfg, run_dir: Path, results: dict) -> None:
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # called outside Hydra (tests)
        overrides = []
    results = dict(results, seed=cfg.seed, overrides=overrides, git_commit=git_commit(),
                   model=cfg.model.name, dataset=cfg.dataset.name)
    write_json(run_dir / "results.json", results)


def log_file_only(text: str) -> None:
    """The traceback goes to the run's log file (Hydra's file handler), not to the console."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.stream.write(text)
            handler.flush()


def error_line(err: BaseException, limit: int = 300) -> str:
    """An unexpected error as one line that keeps its cause: Hydra's "Error in call to target 'X':" and
    torch's "Error(s) in loading state_dict for Classifier:" put the reason on the lines after the colon."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    line = f"{type(err).__name__}: {text}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def record_stop(cfg, run_dir: Path, results: dict, keep_record: bool = False) -> bool:
    """Write a failed or interrupted status, but never over a finished run's results (a resume=true that
    stopped before training must not erase them); True when the run had finished. keep_record: keep the
    run's own overrides and facts."""
    earlier = read_results(run_dir) or {}
    finished = earlier.get("status") in FINISHED
    if finished or not is_rank_zero():
        return finished
    if keep_record:
        write_json(run_dir / "results.json", dict(earlier, **results))
    else:
        save_results(cfg, run_dir, results)
    return False


def fail(cfg, run_dir: Path, err: Exception) -> str:
    """Record a failed run: one line for the user, the traceback in the run's log file."""
    if isinstance(err, USER_ERRORS):
        message = str(err)
    else:
        log_file_only("".join(traceback.format_exception(err)))
        message = error_line(err)
    # Failed, so a sweep names the job; a refused resume leaves the run's record as it was otherwise.
    record_stop(cfg, run_dir, dict(status="failed", error=message, test_acc=None),
                keep_record=isinstance(err, ResumeRefused))
    return message


def stopped(cfg, run_dir: Path, by: str) -> None:
    """SIGTERM or Ctrl-C: record the run as interrupted (unless it finished) and say how to continue it."""
    if record_stop(cfg, run_dir, dict(status="interrupted", test_acc=None)):
        log.error(f"stopped by {by}; {run_dir} had finished, its results are saved")
    else:
        log.error(f"stopped by {by}; {requeue_note(by)}continue with the same command plus resume=true "
                  f"{resume_dir(run_dir)}")
    sys.exit(130 if by == "Ctrl-C" else 143)  # 128 + the signal's number, as a shell reports it


def resume_dir(run_dir: Path) -> str:
    """The override that points resume=true at this run, or at its whole sweep under -m."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"hydra.sweep.dir={HydraConfig.get().sweep.dir} (the whole sweep: finished jobs are skipped)"
    return f"hydra.run.dir={run_dir}"
