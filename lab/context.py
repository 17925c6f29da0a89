"""Where and how a run runs, resolved once at its start and passed down as one plain object: its dir, this
process's rank, the sweep and job it belongs to, Hydra's group choices and overrides, the callbacks a sweeper hands
to its jobs, Slurm's facts and the CPU thread budget.

This is the one module of a run that reads Hydra's global config and the environment; the rest of lab gets what it
needs from a RunContext. (lab.study counts the GPUs it may hand out and lab.bench sets its child processes'
threads: those are commands of their own.)"""
import fcntl
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import ConfigError
from lab.keys import swept_overrides

log = logging.getLogger("lab")
# Per process, not per run: the basic launcher runs a sweep's jobs one after another in one process, and a
# joblib worker lives for several jobs.
PROCESS = {"jobs_started": 0, "gpu_lock": None}


@dataclass(frozen=True)
class Slurm:
    """The Slurm job this process runs in (all empty outside Slurm)."""
    job_id: str | None = None
    tasks: int = 1            # SLURM_NTASKS: > 1 when srun started one process per rank
    task: int = 0             # SLURM_PROCID
    restarts: int = 0         # SLURM_RESTART_COUNT: > 0 in a job Slurm requeued (preemption, timeout)


@dataclass(frozen=True)
class RunContext:
    run_dir: Path
    rank_zero: bool = True            # only rank 0 writes the run's files
    in_sweep: bool = False            # a job of a -m sweep (a failed job returns NaN so the sweep goes on)
    sweep_dir: Path | None = None
    run_dir_given: bool = False       # hydra.run.dir on the command line: a rerun lands in the same dir
    overrides: tuple = ()             # the command's overrides as typed
    swept: dict = field(default_factory=dict)  # a sweep job's overrides that its sweep varies {key: value as typed}
    choices: dict = field(default_factory=dict)  # {group: option}, as Hydra composed them
    sweeper: dict = field(default_factory=dict)  # the sweeper's settings (a tuning trial's number among them)
    job_callbacks: tuple = ()         # "module.factory" paths a sweeper hands to each job (lab.train plugs them in)
    slurm: Slurm = Slurm()
    omp_threads_set: bool = False     # OMP_NUM_THREADS is set: cpu_threads=auto leaves torch's threads alone
    job_started_at: float | None = None  # None for the first job of a process: it counts from process start

    @property
    def requeued(self) -> bool:
        return self.slurm.restarts > 0


def slurm_facts(environ=os.environ) -> Slurm:
    def number(key: str, default: int) -> int:
        value = environ.get(key, "")
        return int(value) if value.strip().isdigit() else default
    return Slurm(job_id=environ.get("SLURM_JOB_ID") or None, tasks=number("SLURM_NTASKS", 1),
                 task=number("SLURM_PROCID", 0), restarts=number("SLURM_RESTART_COUNT", 0))


def is_rank_zero(slurm: Slurm, environ=os.environ) -> bool:
    # DDP children are re-executed copies of this command (LOCAL_RANK, NODE_RANK), or under Slurm tasks that srun
    # started, which only SLURM_PROCID tells apart.
    slurm_task = slurm.task if slurm.tasks > 1 else 0
    return environ.get("LOCAL_RANK", "0") == "0" and environ.get("NODE_RANK", "0") == "0" and slurm_task == 0


def run_context() -> RunContext:
    """The context of the Hydra run or sweep job under way (call it inside a @hydra.main function)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    sweeper = OmegaConf.to_container(hydra.sweeper, resolve=True) if multirun else {}
    callback = sweeper.get("job_callback") if sweeper.get("trial") is not None else None
    slurm = slurm_facts()
    PROCESS["jobs_started"] += 1
    return RunContext(
        run_dir=Path(hydra.runtime.output_dir), rank_zero=is_rank_zero(slurm), in_sweep=multirun,
        sweep_dir=Path(hydra.sweep.dir) if multirun else None,
        run_dir_given=any(o.startswith("hydra.run.dir=") for o in hydra.overrides.hydra),
        overrides=tuple(hydra.overrides.task),
        swept=swept_overrides(Path(hydra.sweep.dir), hydra.overrides.task) if multirun else {},
        choices={group: option for group, option in hydra.runtime.choices.items() if not group.startswith("hydra/")},
        sweeper=sweeper, job_callbacks=(callback,) if callback else (), slurm=slurm,
        omp_threads_set=bool(os.environ.get("OMP_NUM_THREADS")),
        job_started_at=None if PROCESS["jobs_started"] == 1 else time.time())


def claim_gpu(gpu_pool) -> None:
    """Under a parallel launcher (hydra/launcher=joblib) each worker process takes one GPU of gpu_pool for its
    whole life: CUDA_VISIBLE_DEVICES cannot change once CUDA is initialised, and workers are reused. Call it
    before any CUDA call."""
    if not gpu_pool or PROCESS["gpu_lock"] is not None:
        return
    for index, gpu in enumerate(gpu_pool):
        slot = list(gpu_pool)[:index].count(gpu)  # a GPU listed N times serves N workers (study.jobs_per_gpu)
        lock = open(os.path.join(tempfile.gettempdir(), f"lab-gpu-{gpu}-{slot}.lock"), "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        PROCESS["gpu_lock"] = lock  # held until the process exits
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        log.info(f"gpu_pool: this worker uses GPU {gpu}")
        return
    raise ConfigError(f"gpu_pool={list(gpu_pool)}: every GPU is held by another job; run at most "
                      f"{len(gpu_pool)} jobs at once (hydra.launcher.n_jobs={len(gpu_pool)})")
