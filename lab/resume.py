"""resume=true: continue a run from its last.ckpt, or report a finished one, always with the settings the run
was trained with.

results.json is the run's record: it holds the resolved config the run was trained with. Lightning restores the
optimizer and scheduler from the checkpoint whatever the config says, so a resume with another lr, optimizer or
schedule would silently mix two experiments in one run: it is refused before anything is trained or written,
and the run keeps its record."""
import logging
import math
from pathlib import Path

from omegaconf import OmegaConf

from lab.checkpoint import readable_checkpoint
from lab.config import validate
from lab.context import RunContext
from lab.errors import CheckpointError, ConfigError, ResumeRefused
from lab.keys import flatten
from lab.run_files import print_results, write_json
from lab.saved_config import todays_config

log = logging.getLogger("lab")
# What a resumed run may change: where files are, how long it runs, where it runs, how it logs. (A longer
# trainer.max_epochs also changes a cosine schedule's T_max, which is then reported as a difference.)
MAY_DIFFER = ("resume", "trainer.max_epochs", "trainer.max_steps", "trainer.accelerator", "paths", "gpu_pool",
              "logger", "dataset.num_workers", "model.compile", "cpu_threads", "progress_every_s", "step_loss_every")


def report_finished(cfg, ctx: RunContext, done: dict) -> float:
    """resume=true on a run that already finished: nothing to train (so nothing may fail it now); say so, and
    what it reported. Other settings only warn, and the run keeps its record."""
    changed = changed_settings(cfg, done)
    if changed:
        log.warning(f"resume: this command's settings differ from the run's ({changed}): nothing is trained, and "
                    f"{ctx.run_dir} keeps its own record")
    log.info(f"resume: {ctx.run_dir} already finished ({done['status']}), nothing to do")
    by_epochs = cfg.trainer.get("max_steps") in (None, -1)  # a max_steps run stops mid-way on purpose
    if done["status"] == "ok" and by_epochs and done.get("epochs") not in (None, cfg.trainer.max_epochs):
        log.warning(f"resume: the run finished after {done['epochs']} epochs and resume=true does not extend "
                    f"a finished run (trainer.max_epochs={cfg.trainer.max_epochs} ignored): start a new run")
    if ctx.rank_zero:
        print_results(done)
    return done["test_acc"] if done.get("test_acc") is not None else math.nan


def check_resume(cfg, ctx: RunContext, record: dict | None) -> None:
    """Before anything is trained or written: refuse to continue an unfinished run with other settings (a job
    Slurm requeued runs its own command again, so a difference there comes from changed code or conf: it only
    warns), then lab.config's checks. A refusal or a failed check keeps the run's record (ResumeRefused)."""
    saved = record
    record = run_record(ctx.run_dir, record)
    has_record = bool(record) and record.get("config") is not None
    if has_record and record is not saved and ctx.rank_zero:  # results.json gone: put the run's record back
        write_json(ctx.run_dir / "results.json", dict(record, status="interrupted", test_acc=None))
    try:
        changed = changed_settings(cfg, record) if has_record else ""
        if changed and not ctx.requeued:
            raise ResumeRefused(f"resume: {ctx.run_dir} was trained with other settings ({changed}): resume it with "
                                f"its own (its results.json holds them), or start a new run in another dir (or "
                                f"delete its checkpoints/ to train it again with these)")
        if changed:
            log.warning(f"resume: this command's settings differ from the run's ({changed}): continuing with the "
                        f"checkpoint's optimizer and scheduler state; results.json records this command's settings")
        validate(cfg, ctx)
    except ConfigError as err:
        if has_record and not isinstance(err, ResumeRefused):
            raise ResumeRefused(str(err)) from None
        raise


def run_record(run_dir: Path, record: dict | None) -> dict | None:
    """The run's record: its results.json, or for a run whose results.json is gone (deleted, a disk error) what
    its newest readable checkpoint saved of it: the config and group choices it was trained with."""
    if record and record.get("config") is not None:
        return record
    for name in ("last.ckpt", "best.ckpt"):
        path = run_dir / "checkpoints" / name
        saved = ((readable_checkpoint(path) if path.is_file() else None) or {}).get("hyper_parameters") or {}
        if saved.get("config") is not None:
            return dict(record or {}, config=todays_config(saved["config"]), choices=saved.get("choices") or {},
                        seed=saved["config"].get("seed"))
    return record


def changed_settings(cfg, record: dict) -> str:
    """The settings outside MAY_DIFFER that differ from the run's record, at most three listed; '' when none."""
    changed = differences(record.get("config") or {}, OmegaConf.to_container(cfg, resolve=True)) \
        if record.get("config") is not None else []
    return "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest readable checkpoint to continue from: last.ckpt, else best.ckpt (an earlier epoch: the
    epochs after it are trained again). None when the run has none yet."""
    folder = run_dir / "checkpoints"
    found = [folder / name for name in ("last.ckpt", "best.ckpt") if (folder / name).is_file()]
    if not found:
        return None
    for path in found:
        if readable_checkpoint(path) is not None:
            if path.name != "last.ckpt":
                log.warning(f"resume: {folder / 'last.ckpt'} is missing or damaged: continuing from {path}, "
                            "so the epochs after it are trained again")
            return path
    raise CheckpointError(f"resume: every checkpoint in {folder} is damaged ({', '.join(p.name for p in found)} "
                          f"cannot be read), so the run cannot continue: delete {folder} to train it again from "
                          f"the start, or start a new run in another dir")


def differences(trained: dict, now: dict) -> list[str]:
    """'key: trained value -> this command's value' for every setting outside MAY_DIFFER that changed."""
    old, new = flatten(trained), flatten(now)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k, "unset") != new.get(k, "unset")
               and not any(k == p or k.startswith(p + ".") for p in MAY_DIFFER)]
    return [f"{k}: {old.get(k, 'unset')} -> {new.get(k, 'unset')}" for k in changed]
