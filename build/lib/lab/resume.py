"""resume=true: continue a run from its last.ckpt, or report a finished one, always with the settings the run
was trained with.

Hydra rewrites the run's .hydra/config.yaml and overrides.yaml with the new command's before lab starts, and
Lightning restores the optimizer and scheduler from the checkpoint whatever the config says: a resume with
another lr, optimizer or schedule would silently mix two experiments in one run. The checkpoint's copy of the
config is the reference."""
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lab.errors import CheckpointError, ConfigError, ResumeRefused
from lab.keys import flatten
from lab.outcome import is_rank_zero
from lab.run_files import FINISHED, print_results, read_results, write_atomic

log = logging.getLogger("lab")
# What a resumed run may change: where files are, how long it runs, where it runs, how it logs. (A longer
# trainer.max_epochs also changes a cosine schedule's T_max, which is then reported as a difference.)
MAY_DIFFER = ("resume", "trainer.max_epochs", "trainer.max_steps", "trainer.accelerator", "paths", "gpu_pool",
              "logger", "dataset.num_workers", "model.compile")


def slurm_requeued() -> bool:
    """A SLURM job requeued after preemption or timeout (submitit) runs its command again: it resumes."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def report_finished(cfg, run_dir: Path, done: dict) -> float:
    """resume=true on a run that already finished: nothing to train (so nothing may fail it now); say so, and
    what it reported. Other settings only warn, and the run keeps its record."""
    check_resume(cfg, run_dir, done)
    log.info(f"resume: {run_dir} already finished ({done['status']}), nothing to do")
    by_epochs = cfg.trainer.get("max_steps") in (None, -1)  # a max_steps run stops mid-way on purpose
    if done["status"] == "ok" and by_epochs and done.get("epochs") not in (None, cfg.trainer.max_epochs):
        log.warning(f"resume: the run finished after {done['epochs']} epochs and resume=true does not extend "
                    f"a finished run (trainer.max_epochs={cfg.trainer.max_epochs} ignored): start a new run")
    if is_rank_zero():
        print_results(done)
    return done["test_acc"] if done.get("test_acc") is not None else math.nan


@contextmanager
def keeping_run_record(run_dir: Path, resume: bool):
    """A check that fails before a resumed run trains leaves the run's record as it was (ResumeRefused)."""
    try:
        yield
    except ConfigError as err:
        if resume and keep_run_record(run_dir, read_results(run_dir)):
            raise ResumeRefused(str(err)) from None
        raise


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest readable checkpoint to continue from: last.ckpt, else best.ckpt (an earlier epoch: the
    epochs after it are trained again). None when the run has none yet."""
    folder = run_dir / "checkpoints"
    found = [folder / name for name in ("last.ckpt", "best.ckpt") if (folder / name).is_file()]
    if not found:
        return None
    for path in found:
        if read_checkpoint(path) is not None:
            if path.name != "last.ckpt":
                log.warning(f"resume: {folder / 'last.ckpt'} is missing or damaged: continuing from {path}, "
                            "so the epochs after it are trained again")
            return path
    raise CheckpointError(f"resume: every checkpoint in {folder} is damaged ({', '.join(p.name for p in found)} "
                          f"cannot be read), so the run cannot continue: delete {folder} to train it again from "
                          f"the start, or start a new run in another dir")


def read_checkpoint(path: Path) -> dict | None:
    """The checkpoint, memory-mapped (the weights are not read), or None when it is damaged."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None


def trained_record(run_dir: Path) -> dict:
    """The newest readable checkpoint's hyperparameters: the resolved `config` and the group `choices` the run
    was trained with. Empty when it has no readable checkpoint."""
    for name in ("last.ckpt", "best.ckpt"):
        path = run_dir / "checkpoints" / name
        ckpt = read_checkpoint(path) if path.is_file() else None
        if ckpt is not None:
            return ckpt.get("hyper_parameters") or {}
    return {}


def differences(trained: dict, now: dict) -> list[str]:
    """'key: trained value -> this command's value' for every setting outside MAY_DIFFER that changed."""
    old, new = flatten(trained), flatten(now)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k, "unset") != new.get(k, "unset")
               and not any(k == p or k.startswith(p + ".") for p in MAY_DIFFER)]
    return [f"{k}: {old.get(k, 'unset')} -> {new.get(k, 'unset')}" for k in changed]


def restore_hydra_record(run_dir: Path, record: dict, overrides) -> None:
    """Put back the run's own config.yaml, overrides.yaml and, in hydra.yaml, the group choices and overrides
    that lab.report reads (the rest of hydra.yaml keeps the latest command)."""
    hydra_dir = run_dir / ".hydra"
    if not hydra_dir.is_dir():
        return
    write_atomic(hydra_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(record["config"])))
    if isinstance(overrides, list):
        write_atomic(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    hydra_yaml = hydra_dir / "hydra.yaml"
    if hydra_yaml.is_file() and isinstance(overrides, list) and record.get("choices") is not None:
        node = OmegaConf.load(hydra_yaml)
        node.hydra.runtime.choices, node.hydra.overrides.task = record["choices"], overrides
        write_atomic(hydra_yaml, OmegaConf.to_yaml(node))


def keep_run_record(run_dir: Path, done: dict | None) -> bool:
    """Put back the record of a run that has a checkpoint; False when there is none (nothing to keep)."""
    record = trained_record(run_dir)
    if record.get("config") is None:
        return False
    restore_hydra_record(run_dir, record, (done or {}).get("overrides"))
    return True


def check_resume(cfg, run_dir: Path, done: dict | None, refuse: bool = True) -> None:
    """Before anything is trained or written: refuse (or with refuse=False, warn) to continue an unfinished
    run with other settings; for a finished run (nothing to train) warn. Either way the run keeps its record."""
    record = trained_record(run_dir)
    if record.get("config") is None:
        return
    finished = bool(done) and done.get("status") in FINISHED
    changed = differences(record["config"], OmegaConf.to_container(cfg, resolve=True))
    if finished or changed:
        restore_hydra_record(run_dir, record, (done or {}).get("overrides"))
    if not changed:
        return
    listed = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
    if finished or not refuse:
        log.warning(f"resume: this command's settings differ from the run's ({listed}): "
                    + ("nothing is trained" if finished else "continuing with the checkpoint's optimizer and "
                       "scheduler state") + f", and {run_dir} keeps its own record")
        return
    raise ResumeRefused(f"resume: {run_dir} was trained with other settings ({listed}): resume it with its own "
                        f"(its checkpoints/last.ckpt holds them), or start a new run in another dir (or delete "
                        f"its checkpoints/ to train it again with these)")
