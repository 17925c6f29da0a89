"""Hydra callback for multiruns: names job dirs by the swept keys, writes the report, flags failed jobs."""
import fcntl
import logging
import os
import sys
import tempfile
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from lab.errors import ConfigError
from lab.keys import run_overrides
from lab.run_files import read_results
from lab.slurm import check_and_watch, stop_watching

log = logging.getLogger("lab")
_claimed_gpu_lock = None  # held for the life of this worker process


def claim_gpu(gpu_pool) -> None:
    """Under a parallel launcher (hydra/launcher=joblib) each worker process takes one GPU of gpu_pool
    for its whole life: CUDA_VISIBLE_DEVICES cannot change once CUDA is initialised, and workers are reused."""
    global _claimed_gpu_lock
    if not gpu_pool or _claimed_gpu_lock is not None:
        return
    for gpu in gpu_pool:
        lock = open(os.path.join(tempfile.gettempdir(), f"lab-gpu-{gpu}.lock"), "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _claimed_gpu_lock = lock
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        log.info(f"gpu_pool: this worker uses GPU {gpu}")
        return
    raise ConfigError(f"gpu_pool={list(gpu_pool)}: every GPU is held by another job; run at most "
                      f"{len(gpu_pool)} jobs at once (hydra.launcher.n_jobs={len(gpu_pool)})")


def swept_keys(config) -> list[str]:
    """Keys that take several values: `key=a,b` on the command line, or an experiment's sweeper.params."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return keys + [k for k in params if k not in keys]


def job_dirname(*, _root_) -> str:
    """A sweep job's dir from its swept overrides only (`optimizer.lr=0.03`), so names stay short and a rerun
    of the same command maps every job to the same dir (what resume=true relies on). The swept keys come from
    the sweep's multirun.yaml, which the sweeper writes before any job starts; without it every override
    names the dir."""
    sweep_file = Path(_root_.hydra.sweep.dir) / "multirun.yaml"
    swept = {k.lstrip("+~") for k in swept_keys(OmegaConf.load(sweep_file))} if sweep_file.is_file() else None
    parts = [typed.lstrip("+~") for key, _, typed in run_overrides(_root_.hydra.overrides.task)
             if swept is None or key in swept]
    name = ",".join(parts).replace("/", "_")
    return name[:200] if name else str(_root_.hydra.job.num)


class SweepCallback(Callback):
    def on_multirun_start(self, config, **kwargs) -> None:
        check_and_watch(config)  # hydra/launcher=slurm: refuse a request Slurm never runs, log the queue

    def on_multirun_end(self, config, **kwargs) -> None:
        stop_watching()
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = [p.name for p in sorted(sweep_dir.iterdir()) if p.is_dir()
                  and (read_results(p) or {}).get("status") == "failed"] if sweep_dir.is_dir() else []
        try:
            from lab.report import write_report
            write_report([sweep_dir], sweep_dir)
        except Exception as err:  # a broken figure must not hide the jobs' results
            log.error(f"report for {sweep_dir} failed: {type(err).__name__}: {err}")
        if failed:
            log.error(f"{len(failed)} job(s) failed in {sweep_dir}: {', '.join(failed)} (see results.json "
                      f"and the log in each; once the cause is fixed, rerun with resume=true "
                      f"hydra.sweep.dir={sweep_dir} to run only those again)")
            sys.exit(1)
