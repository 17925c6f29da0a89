"""resume=true: continue a run from its last.ckpt, or report a finished one, always with the settings the run
was trained with.

Hydra rewrites the run's .hydra/config.yaml and overrides.yaml with the new command's before lab starts, and
Lightning restores the optimizer and scheduler from the checkpoint whatever the config says: a resume with
another lr, optimizer or schedule would silently mix two experiments in one run. The checkpoint's copy of the
config is the reference."""
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lab.errors import ResumeRefused
from lab.keys import flatten
from lab.run_files import FINISHED, write_atomic

log = logging.getLogger("lab")
# What a resumed run may change: where files are, how long it runs, where it runs, how it logs. (A longer
# trainer.max_epochs also changes a cosine schedule's T_max, which is then reported as a difference.)
MAY_DIFFER = ("resume", "trainer.max_epochs", "trainer.max_steps", "trainer.accelerator", "paths", "gpu_pool",
              "logger", "dataset.num_workers", "model.compile")


def trained_record(last_ckpt: Path) -> dict:
    """The checkpoint's hyperparameters: the resolved `config` and the group `choices` it was trained with
    (mmap: the weights are not read). Empty when there is no readable checkpoint."""
    if not last_ckpt.is_file():
        return {}
    try:
        ckpt = torch.load(last_ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # damaged: Lightning's own load reports it when training resumes
        return {}
    return ckpt.get("hyper_parameters") or {}


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
    record = trained_record(run_dir / "checkpoints" / "last.ckpt")
    if record.get("config") is None:
        return False
    restore_hydra_record(run_dir, record, (done or {}).get("overrides"))
    return True


def check_resume(cfg, run_dir: Path, done: dict | None, refuse: bool = True) -> None:
    """Before anything is trained or written: refuse (or with refuse=False, warn) to continue an unfinished
    run with other settings; for a finished run (nothing to train) warn. Either way the run keeps its record."""
    record = trained_record(run_dir / "checkpoints" / "last.ckpt")
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
