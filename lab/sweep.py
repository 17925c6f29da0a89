"""Multiruns: job dirs named by the swept keys (the hydra.sweep.subdir resolver), and a Hydra callback that
writes the report at the end and flags failed jobs."""
import logging
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from lab.keys import run_overrides
from lab.run_files import read_results

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


class SweepCallback(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
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
