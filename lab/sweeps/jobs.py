"""A sweep's jobs: the swept keys, each job's dir name (the hydra.sweep.subdir resolver), how many jobs the sweep
launches and how far it has got."""
import time
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from lab.keys import override_key, run_overrides, swept_keys, without_prefix
from lab.run_files import ENDED, read_results


def job_dirname(_root_) -> str:
    """A sweep job's dir from its swept overrides only (`optimizer.lr=0.03`), so names stay short and a rerun
    of the same command maps every job to the same dir (what resume=true relies on). The swept keys come from
    the sweep's multirun.yaml, which the sweeper writes before any job starts; without it every override
    names the dir."""
    sweep_dir, task = Path(_root_.hydra.sweep.dir), list(_root_.hydra.overrides.task)
    if not (sweep_dir / "multirun.yaml").is_file():
        return job_name(task, None) or str(_root_.hydra.job.num)
    sweep = OmegaConf.load(sweep_dir / "multirun.yaml")
    swept = [override_key(k) for k in swept_keys(sweep)]
    name = job_name(task, set(swept)) or str(_root_.hydra.job.num)
    # A sweep dir whose jobs are named in Hydra's basic-sweeper order (the sweeper's params, then the command line,
    # the seed where it was typed) keeps those dirs, so resume=true finds its jobs.
    params = [override_key(k) for k in OmegaConf.select(sweep, "hydra.sweeper.params") or {}]
    earlier = job_name(task, set(swept), order=params + [k for k in swept if k not in params])
    older = earlier and earlier != name and (sweep_dir / earlier).is_dir() and not (sweep_dir / name).exists()
    return earlier if older else name


def job_name(overrides: list[str], swept: set | None, order: list[str] | None = None) -> str:
    """The swept overrides of a job as typed, without +/~, the seed last: 'optimizer.lr=0.03,seed=1' ('' when none
    is swept; every override when `swept` is None). The seed's place on the command line (lab.study puts it first)
    does not rename a job. `order`: the keys' order instead (the seed's place too)."""
    found = [(key, without_prefix(typed)) for key, _, typed in run_overrides(overrides)
             if swept is None or key in swept]
    rank = (lambda kv: order.index(kv[0]) if kv[0] in order else len(order)) if order else (lambda kv: kv[0] == "seed")
    return ",".join(typed for _, typed in sorted(found, key=rank)).replace("/", "_")[:200]  # sorted() is stable


if not OmegaConf.has_resolver("lab_job_dir"):  # hydra.sweep.subdir: ${lab_job_dir:}
    OmegaConf.register_new_resolver("lab_job_dir", lambda *, _root_: job_dirname(_root_))


def sweep_size(config) -> int | None:
    """How many jobs the sweep launches: n_trials for a tuner, else the product of the swept values' counts
    (None when a value needs Hydra's config loader to expand, such as glob)."""
    if OmegaConf.select(config, "hydra.sweeper.n_trials"):
        return int(config.hydra.sweeper.n_trials)
    given = list(config.hydra.overrides.task)
    typed = {override_key(item) for item in given}
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
             if r.get("status") in ENDED]
    started_at = master_file.stat().st_mtime
    paced = [r for r in ended if (r.get("finished_at") or started_at) >= started_at]
    if paced:
        elapsed_s = time.time() - started_at
        eta_s = elapsed_s / len(paced) * max(total - len(ended), 0)
        line += f"; {len(ended)}/{total} jobs ended, sweep ETA {eta_s:.0f} s"
    return line


def job_overrides(config) -> list[list[str]] | None:
    """Each job's overrides, as lab's seed_first sweeper expands them: the seed, then the sweeper's params, then the
    command line (which wins), every swept value crossed with the others. None when the sweeper is another one (a tuner
    samples its jobs) or a value needs Hydra's config loader to expand (glob)."""
    import itertools

    if not str(OmegaConf.select(config, "hydra.sweeper._target_") or "").endswith("BasicSweeper"):
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    given = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    choices = {}
    try:
        for override in OverridesParser.create().parse_overrides(given):
            key = override.get_key_element()
            choices[key] = ([f"{key}={v}" for v in override.sweep_string_iterator()] if override.is_sweep_override()
                            else [f"{key}={override.get_value_element_as_str()}"])
    except Exception:
        return None
    seed_first = "SeedFirst" in str(OmegaConf.select(config, "hydra.sweeper._target_"))  # lab's default sweeper
    order = sorted(choices, key=lambda key: key != "seed") if seed_first else list(choices)
    return [list(job) for job in itertools.product(*(choices[key] for key in order))]


def check_jobs(config, ranks_by_launcher: bool = False) -> str | None:
    """The first problem in any job's config (lab.config.check_job; DDP too, unless the launcher starts every
    rank itself), as one line naming the job; None when every job passes. Composed with Hydra's compose API,
    inside the running sweep (its search path, its config)."""
    from hydra import compose

    from lab.config import check_ddp_outside_sweeps, check_job
    from lab.context import RunContext
    from lab.errors import ConfigError, first_line

    jobs = job_overrides(config)
    if jobs is None:
        return None
    swept = {override_key(k) for k in swept_keys(config)}
    for overrides in jobs:
        name = ",".join(o for o in overrides if override_key(o) in swept) or "the only job"
        try:
            cfg = compose(config_name=config.hydra.job.config_name, overrides=overrides)
            check_job(cfg)
            if not ranks_by_launcher:
                check_ddp_outside_sweeps(cfg, RunContext(run_dir=Path(config.hydra.sweep.dir), in_sweep=True))
        except ConfigError as err:
            return f"job {name}: {err}"
        except Exception as err:  # Hydra's composition errors name the override on their first line
            return f"job {name}: {first_line(err)}"
    return None
