"""The Hydra callback of every -m sweep (conf/train.yaml's hydra.callbacks): every job's values checked before
the first job starts, a progress line per job, the report at the end, and the failed jobs named with exit 1."""
import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from lab.config import check_tracker
from lab.errors import ConfigError, exit_for_user_error
from lab.run_files import read_results
from lab.sweeps.jobs import check_jobs, sweep_progress
from lab.tracking import close_group, open_sweep_group

log = logging.getLogger("lab")


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.slurm_watch = None  # the queue watch of hydra/launcher=slurm (a threading.Event), while the array runs
        self.group = None  # the sweep's parent run in a tracker (lab/tracking/)

    def __getstate__(self) -> dict:  # joblib and submitit send the callback to each job: the watch stays here
        return dict(self.__dict__, slurm_watch=None)

    def on_multirun_start(self, config, **kwargs) -> None:
        slurm = str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher")
        problem = check_jobs(config, ranks_by_launcher=slurm)  # a bad value among good ones: one line now
        if problem:
            exit_for_user_error(f"{problem} (no job was started)")
        try:
            check_tracker(config)  # a tuner's jobs are not known yet: its logger is checked here
        except ConfigError as err:
            exit_for_user_error(f"{err} (no job was started)")
        self.group = open_sweep_group(config)
        if slurm:
            from lab.sweeps.slurm_watch import check_and_watch

            self.slurm_watch = check_and_watch(config)  # refuse a request Slurm never runs, log the queue

    def on_job_start(self, config, **kwargs) -> None:
        log.info(f"{sweep_progress(config)}: starting {Path(config.hydra.runtime.output_dir).name}")

    def on_job_end(self, config, job_return, **kwargs) -> None:
        results = read_results(Path(config.hydra.runtime.output_dir)) or {}
        acc = results.get("test_acc")
        outcome = f"{results.get('status', 'no results.json')}" + (f", test_acc {acc:.4f}" if acc is not None else "")
        log.info(f"{sweep_progress(config)}: ended {Path(config.hydra.runtime.output_dir).name} ({outcome})")

    def on_multirun_end(self, config, **kwargs) -> None:
        if self.slurm_watch is not None:
            self.slurm_watch.set()
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = [p for p in sorted(sweep_dir.iterdir()) if p.is_dir()] if sweep_dir.is_dir() else []
        statuses = {p.name: (read_results(p) or {}).get("status") for p in jobs}
        failed = [name for name, status in statuses.items() if status == "failed"]
        close_group(self.group, [status for status in statuses.values() if status])
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
