"""hydra/launcher=slurm while the job array runs: log the jobs' states and Slurm's reasons, and name a job
that left the queue without a result (without Slurm accounting submitit would wait for it forever)."""
import glob
import logging
import os
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from omegaconf import OmegaConf

from lab.errors import ConfigError, exit_for_user_error
from lab.sweeps.slurm import check_request

log = logging.getLogger("lab")
POLL_S = 10    # squeue for the sweep's jobs this often; a line when their states change...
REPEAT_S = 60  # ...and at least this often while any is queued or running


def submitted_arrays(submitit_folder: str) -> list[str]:
    """Job ids of this sweep's arrays (or of its one job), from the folders submitit makes for them (its
    folder ends in %j: 1234 and 1234_0, 1234_1, ... for an array; 1234 for a sweep of one job)."""
    if not submitit_folder.endswith("%j"):
        return []
    ids = {Path(f).name.split("_")[0] for f in glob.glob(glob.escape(submitit_folder[:-2]) + "*")}
    return sorted((job for job in ids if job.isdigit()), key=int)


def slurm_jobs(job_ids: list[str]) -> str:
    return f"Slurm job{'s' if len(job_ids) > 1 else ''} {', '.join(job_ids)}"  # an array's tasks share its id


def queue_line(array_ids: list[str], squeue_out: str) -> str | None:
    """`Slurm job 12: 2 RUNNING, 3 PENDING (Resources)` from `squeue -h -r -o %T|%r` lines; None when none."""
    states = Counter(tuple(line.strip().split("|", 1)) for line in squeue_out.splitlines() if "|" in line)
    counts = [f"{n} {state}" + (f" ({reason})" if reason not in ("None", "") else "")
              for (state, reason), n in sorted(states.items(), key=lambda item: (-item[1], item[0]))]
    return f"{slurm_jobs(array_ids)}: {', '.join(counts)}" if counts else None


def jobs_without_result(submitit_folder: str) -> list[str]:
    """This sweep's jobs (1234_0 in an array, 1234 alone) whose folder holds no result file yet: submitit
    writes one as a job ends."""
    folders = [f for f in glob.glob(glob.escape(submitit_folder[:-2]) + "*")
               if glob.glob(os.path.join(glob.escape(f), "*_submitted.pkl"))]
    return sorted((Path(f).name for f in folders if not glob.glob(os.path.join(glob.escape(f), "*_result.pkl"))),
                  key=lambda job: [int(n) for n in job.split("_") if n.isdigit()])


def stranded_line(array_ids: list[str], missing: list[str], sweep_dir: str) -> str | None:
    """A job that left the queue without a result (scancel, a node failure, out of memory) leaves submitit
    waiting: it learns of the end only from Slurm accounting (sacct), late, or never where that is off."""
    if not missing:
        return None
    return (f"{slurm_jobs(array_ids)}: no job is queued or running, "
            f"yet {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} wrote no result (cancelled, or "
            f"killed: node failure, out of memory) and submitit may wait for it forever; stop this process "
            f"(Ctrl-C) and rerun the same command with resume=true hydra.sweep.dir={sweep_dir}")


def squeue_states(array_ids: list[str]) -> str | None:
    """`%T|%r` lines of the arrays' queued and running jobs; None when squeue does not answer."""
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(array_ids), "-o", "%T|%r"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):  # a busy controller: try again at the next poll
        return None
    # squeue fails with "Invalid job id" once every job of the arrays has ended and left its memory.
    return proc.stdout if proc.returncode == 0 or "Invalid job id" in proc.stderr else None


def watch_queue(submitit_folder: str, sweep_dir: str, stop: threading.Event) -> None:
    last_line, logged_at, empty_polls = None, 0.0, 0
    while not stop.wait(POLL_S):
        arrays = submitted_arrays(submitit_folder)
        states = squeue_states(arrays) if arrays else None
        if states is None:
            continue
        line, level = queue_line(arrays, states), logging.INFO
        empty_polls = 0 if line else empty_polls + 1
        if empty_polls >= 2:  # two polls apart: a result file may land just after its job leaves the queue
            line, level = stranded_line(arrays, jobs_without_result(submitit_folder), sweep_dir), logging.WARNING
        if line and (line != last_line or time.time() - logged_at >= REPEAT_S):
            log.log(level, line)
            last_line, logged_at = line, time.time()


def check_and_watch(config) -> threading.Event:
    """SweepCallback.on_multirun_start under hydra/launcher=slurm: refuse (one line, exit 2) a request the
    partition cannot meet, then watch the array in a daemon thread until the returned event is set."""
    launcher = config.hydra.launcher
    try:
        check_request(launcher)
    except ConfigError as err:  # Hydra calls back outside lab.train's main: raised, it prints a traceback
        exit_for_user_error(err)
    stop = threading.Event()
    folder = str(OmegaConf.select(config, "hydra.launcher.submitit_folder") or "")
    threading.Thread(target=watch_queue, args=(folder, str(config.hydra.sweep.dir), stop), daemon=True,
                     name="slurm-queue").start()
    return stop
