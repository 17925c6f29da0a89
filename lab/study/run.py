"""Running a study's steps: each a `python -m lab.train -m ...` subprocess with its log in <study dir>/logs/,
at most parallel_steps at once, a line per finished job with the study's ETA, and Ctrl-C/SIGTERM passed to
the running steps so they stop after the batch with last.ckpt saved."""
import ctypes
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from lab.run_files import ENDED, FINISHED, PREDICTIONS, read_results, write_atomic, write_json
from lab.study.plan import Step, python_command

log = logging.getLogger("lab")
POLL_S = 2.0
PR_SET_PDEATHSIG = 1


class Stopped(Exception):
    """Ctrl-C or SIGTERM; outcomes: the steps that ended before it."""

    def __init__(self, by: str, outcomes: dict | None = None):
        super().__init__(by)
        self.by, self.outcomes = by, outcomes or {}


def die_with_parent() -> None:
    """In the step's process: its own process group (Ctrl-C reaches the study, which passes one on), and
    SIGKILL when the study dies (kill -9 of the study kills its steps too; they resume from last.ckpt)."""
    os.setpgid(0, 0)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the step outlives a killed study
        pass


class Progress:
    """Watches the steps' results.json files and logs one line per job that ends, with the study's ETA from
    the jobs that ended since this command started."""

    def __init__(self, totals: dict):
        self.totals, self.started = totals, time.time()
        self.done, self.ended_now, self.seen, self.ended = {}, 0, {}, set()

    def total(self) -> int:
        return sum(n or 0 for n in self.totals.values())

    def begin(self, step: str, step_dir: Path, say: bool = True) -> None:
        """Jobs a step finished in an earlier command are done already (resume=true skips them). Called for every
        step as the study starts (say=False), so the ETA of a continued study counts only what is left."""
        earlier = job_dirs(step_dir)
        for path in earlier:  # what an earlier command left: only a change from now on is a job that ends
            self.seen[path] = mtime(path)
        finished = [p for p in earlier if (read_results(p) or {}).get("status") in FINISHED]
        self.ended.update(finished)
        self.done[step] = len(finished)
        if finished and say:
            log.info(f"study: {step}: {len(finished)} job(s) finished earlier, skipped")

    def scan(self, step: str, step_dir: Path) -> None:
        for path in job_dirs(step_dir):
            results, stamp = read_results(path) or {}, mtime(path)
            if results.get("status") not in ENDED or self.seen.get(path) == stamp or path in self.ended:
                continue
            self.seen[path] = stamp
            self.ended.add(path)  # a job's results.json can be rewritten after it ends: one line, one count
            self.done[step] = self.done.get(step, 0) + 1
            self.ended_now += 1
            # A single run's dir is 0: its model names it.
            job = path.name if not path.name.isdigit() else f"({results.get('model', 'one run')})"
            log.info(self.line(step, job, results))

    def line(self, step: str, job: str, results: dict) -> str:
        acc = results.get("test_acc")
        outcome = results["status"] + (f", test_acc {acc:.4f}" if acc is not None else "")
        total, done = self.total(), sum(self.done.values())
        eta = (time.time() - self.started) / self.ended_now * max(total - done, 0)
        return (f"study: {step} {job}: {outcome}, {results.get('total_time_s') or 0:.1f} s; "
                f"{done}/{total} jobs, study ETA {eta / 60:.1f} min")


def job_dirs(step_dir: Path) -> list[Path]:
    return sorted(p for p in step_dir.iterdir() if p.is_dir() and (p / "results.json").is_file()) \
        if step_dir.is_dir() else []


def mtime(run_dir: Path) -> float:
    try:
        return (run_dir / "results.json").stat().st_mtime
    except OSError:
        return 0.0


def first_finished_run(step_dir: Path) -> Path | None:
    """The run dir a later step reads (a teacher): the first job that finished ok (the original of a copy)."""
    run = next((p for p in job_dirs(step_dir) if (read_results(p) or {}).get("status") == "ok"), None)
    same_as = (read_results(run) or {}).get("same_as") if run else None
    return step_dir.parent / same_as if same_as else run


def all_finished(step: Step, out: Path) -> bool:
    """Every job the step plans has finished (its sweep would only skip them): no need to start it."""
    return step.jobs is not None and all((read_results(out / step.name / job.name) or {}).get("status") in FINISHED
                                         for job in step.jobs)


COPIED = ("metrics.csv", "steps.csv", PREDICTIONS)  # what a report reads of a job, besides results.json


def copy_identical_jobs(step: Step, out: Path) -> None:
    """A job identical to one an earlier step finished is not trained again: its record is copied here, with
    same_as naming the original, and the step's resume=true then skips it like any finished job."""
    for job in step.jobs or []:
        original, here = out / (job.same_as or ""), out / step.name / job.name
        record = read_results(original) if job.same_as else None
        if not record or record.get("status") not in FINISHED or (read_results(here) or {}).get("status") in FINISHED:
            continue
        here.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            if (original / name).is_file():
                write_atomic(here / name, (original / name).read_text())
        write_json(here / "results.json", dict(record, same_as=job.same_as))
        log.info(f"study: {step.name}/{job.name} is {job.same_as}'s job: its results are copied, not trained again")


def start_step(step: Step, out: Path) -> subprocess.Popen:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = open(logs / f"{step.name}.log", "a")
    log_file.write(f"\n$ python -m lab.train {' '.join(step.command)}\n")
    log_file.flush()
    log.info(f"study: {step.name}: python -m lab.train {' '.join(step.command)}")
    process = subprocess.Popen(python_command() + step.command, stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    log_file.close()  # the child holds its own copy
    return process


def step_error(step_dir: Path, returncode: int, log_path) -> str:
    """A failed step's one line: the errors its failed jobs recorded in their results.json, else where to look."""
    errors = [f"{path.name}: {record['error']}" for path in job_dirs(step_dir)
              if (record := read_results(path) or {}).get("status") == "failed" and record.get("error")]
    if errors:
        return "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
    return f"exited {returncode} with no job's results.json naming an error: see {log_path}"


def stop_steps(running: dict, by: str) -> None:
    """Pass the stop to each running step once (lab.train stops after the batch, saving last.ckpt); a
    second Ctrl-C while waiting kills them."""
    sig = signal.SIGINT if by == "Ctrl-C" else signal.SIGTERM
    for process in running.values():
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        for process in running.values():
            process.wait()
    except KeyboardInterrupt:
        for process in running.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
