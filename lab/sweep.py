"""Multiruns: job dirs named by the swept keys (the hydra.sweep.subdir resolver), and a Hydra callback that
writes the report at the end and flags failed jobs."""
import logging
import sys
import time
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import OmegaConf

from lab.keys import run_overrides
from lab.run_files import read_results
from lab.slurm_queue import check_and_watch, stop_watching

log = logging.getLogger("lab")


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


def sweep_size(config) -> int | None:
    """How many jobs the sweep launches: n_trials for a tuner, else the product of the swept values' counts
    (None when a value needs Hydra's config loader to expand, such as glob)."""
    if OmegaConf.select(config, "hydra.sweeper.n_trials"):
        return int(config.hydra.sweeper.n_trials)
    given = list(config.hydra.overrides.task)
    typed = {item.split("=", 1)[0].lstrip("+~") for item in given}
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    given += [f"{key}={value}" for key, value in params.items() if key not in typed]  # the command line wins
    size = 1
    try:
        for override in OverridesParser.create().parse_overrides(given):
            if override.is_sweep_override():
                size *= len(list(override.sweep_string_iterator()))
    except Exception:
        return None
    return size


def sweep_progress(config) -> str:
    """'job 3/10' for this job, and once jobs have ended, how many and the sweep's ETA from the pace of those
    that ended since this command started (a resumed sweep's earlier jobs say nothing of it)."""
    sweep_dir = Path(config.hydra.sweep.dir)
    master_file = sweep_dir / "multirun.yaml"
    total = sweep_size(OmegaConf.load(master_file)) if master_file.is_file() else None
    line = f"job {config.hydra.job.num + 1}/{total or '?'}"
    if not total:
        return line
    ended = [r for r in (read_results(p) or {} for p in sweep_dir.iterdir() if p.is_dir())
             if r.get("status") in ("ok", "diverged", "failed", "pruned")]
    started_at = master_file.stat().st_mtime
    paced = [r for r in ended if (r.get("finished_at") or started_at) >= started_at]
    if paced:
        elapsed_s = time.time() - started_at
        eta_s = elapsed_s / len(paced) * max(total - len(ended), 0)
        line += f"; {len(ended)}/{total} jobs ended, sweep ETA {eta_s:.0f} s"
    return line


class SweepCallback(Callback):
    def on_multirun_start(self, config, **kwargs) -> None:
        check_and_watch(config)  # hydra/launcher=slurm: refuse a request Slurm never runs, log the queue

    def on_job_start(self, config, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:  # Hydra calls job callbacks for single runs too
            return
        log.info(f"{sweep_progress(config)}: starting {Path(config.hydra.runtime.output_dir).name}")

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        results = read_results(Path(config.hydra.runtime.output_dir)) or {}
        acc = results.get("test_acc")
        outcome = f"{results.get('status', 'no results.json')}" + (f", test_acc {acc:.4f}" if acc is not None else "")
        log.info(f"{sweep_progress(config)}: ended {Path(config.hydra.runtime.output_dir).name} ({outcome})")

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
