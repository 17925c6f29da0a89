"""Trials start as slots free up.

Hydra's Launcher.launch takes a list of jobs and returns when every one has ended, so a sweeper that launches n_jobs
trials at a time waits for the slowest of each batch: a slot whose trial ASHA pruned at its first rung idles until
then, and the epochs the pruner saves barely show in wall time. So each trial is launched alone, from one of n
worker threads, and the next trial is asked for as soon as any one ends. The launcher still does the running
(joblib's loky processes, which joblib reuses from call to call; submitit's Slurm jobs, one per trial) and each call
still runs Hydra's own job set-up; the main thread alone talks to Optuna (ask, tell), so the study needs no lock.
Hydra's basic launcher runs a job inside the calling process, where two jobs at once would share Hydra's global
config, the working directory and torch's state: it gets one slot."""
import logging
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

log = logging.getLogger("lab")


def slot_count(launcher, n_jobs: int) -> int:
    if type(launcher).__name__ == "BasicLauncher":
        if n_jobs > 1:
            log.info(f"tune: hydra.sweeper.n_jobs={n_jobs} with Hydra's basic launcher, which runs jobs in this "
                     f"process: one trial at a time (hydra/launcher=joblib runs several)")
        return 1
    return max(1, n_jobs)


def launch_one(launcher, overrides: list[str], number: int) -> str | None:
    """None, or why the launch itself failed (a worker process that died, a Slurm submission refused); an error
    inside the job is in the job's results.json, as with any launch."""
    try:
        launcher.launch([overrides], initial_job_idx=number)
    except Exception as err:  # one trial's launch failing must not end the others
        return f"{type(err).__name__}: {err}"
    return None


class Slots:
    """n trials running at once: start() one into a free slot, wait_any() for those that end."""

    def __init__(self, launcher, n: int):
        self.launcher, self.size = launcher, n
        self.running = {}  # future -> the item start() was given (a trial)
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="trial")

    @property
    def free(self) -> int:
        return self.size - len(self.running)

    def start(self, item, overrides: list[str], number: int) -> None:
        self.running[self.pool.submit(launch_one, self.launcher, overrides, number)] = item

    def wait_any(self) -> list[tuple]:
        """Block until at least one running item ends; -> [(item, launch error or None)] of every one that has."""
        done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
        return [(self.running.pop(future), future.result()) for future in done]

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace) -> None:
        # On Ctrl-C the jobs get the signal too (lab.train saves last.ckpt and stops): don't queue more.
        self.pool.shutdown(wait=error is None, cancel_futures=True)
