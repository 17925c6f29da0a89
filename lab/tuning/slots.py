"""Trials start as slots free up.

Hydra's Launcher.launch takes a list of jobs and returns when every one has ended, so a sweeper that launches n_jobs
trials at a time waits for the slowest of each batch: a slot whose trial ASHA pruned at its first rung idles until
then, and the epochs the pruner saves barely show in wall time. So each trial is launched alone, from one of n
worker threads, and the next trial is asked for as soon as any one ends. The launcher still does the running
(joblib's loky processes, which joblib reuses from call to call; submitit's Slurm jobs, one per trial) and each call
still runs Hydra's own job set-up; the main thread alone talks to Optuna (ask, tell), so the study needs no lock.
Hydra's basic launcher runs a job inside the calling process, where two jobs at once would share Hydra's global
config, the working directory and torch's state: it gets one slot.

joblib's calls from several threads share one pool of loky workers, and joblib ends the whole pool when one call
fails (a worker killed for memory, a job that exits): the other slots' launches then fail too. study.py launches a
trial whose launch failed before its job ended again (resume=true, from its last.ckpt) rather than telling Optuna it
failed."""
import logging
import queue
import threading

log = logging.getLogger("lab")


def slot_count(launcher, n_jobs: int, workers) -> int:
    """Trials at once: n_jobs, or joblib's `workers` (hydra.launcher.n_jobs) if fewer, since a trial beyond them only
    waits for one; 1 under Hydra's basic launcher."""
    if type(launcher).__name__ == "BasicLauncher":
        if n_jobs > 1:
            log.info(f"tune: hydra.sweeper.n_jobs={n_jobs} with Hydra's basic launcher, which runs jobs in this "
                     f"process: one trial at a time (hydra/launcher=joblib runs several)")
        return 1
    return max(1, min(n_jobs, workers) if isinstance(workers, int) and workers > 0 else n_jobs)


class Slots:
    """n trials running at once: start() one into a free slot, wait_any() for those that end.

    Each launch runs in a daemon thread: on Ctrl-C or an error in the sweeper, the process exits at once instead
    of joining threads that wait on their jobs (a Slurm job may wait in the queue for hours). The jobs get the
    Ctrl-C themselves and save last.ckpt; the same command resumes them."""

    def __init__(self, launcher, n: int):
        self.launcher, self.size = launcher, n
        self.running = {}  # number -> the item start() was given (a trial: Optuna's FrozenTrial is not hashable)
        self.ended = queue.Queue()  # (number, item, launch error or None)

    @property
    def free(self) -> int:
        return self.size - len(self.running)

    def start(self, item, overrides: list[str], number: int) -> None:
        self.running[number] = item
        threading.Thread(target=self.launch_one, args=(item, overrides, number), daemon=True,
                         name=f"trial-{number}").start()

    def launch_one(self, item, overrides: list[str], number: int) -> None:
        """The launch's error, if the launch itself failed (a worker process that died, a Slurm submission refused,
        a job that exited): an error inside the job is in its results.json, as with any launch."""
        try:
            self.launcher.launch([overrides], initial_job_idx=number)
            self.ended.put((number, item, None))
        except BaseException as err:  # one trial's launch failing must not end the others
            self.ended.put((number, item, f"{type(err).__name__}: {err}"))

    def wait_any(self) -> list[tuple]:
        """Block until at least one running item ends; -> [(item, launch error or None)] of every one that has."""
        ended = [self.ended.get()]
        while not self.ended.empty():
            ended.append(self.ended.get())
        for number, _, _ in ended:
            del self.running[number]
        return [(item, error) for _, item, error in ended]
