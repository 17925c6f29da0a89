"""conf/trainer/ and conf/logger/: the device (precision, CPU threads) and the Lightning Trainer with
lab's callbacks and logger."""
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from lab.machine import cpu_has_fast_bf16
from lab.recorder import AtomicCheckpoint

log = logging.getLogger("lab")


def quiet_lightning() -> None:
    """Lightning's start-up chatter (accelerator lines, tips, deprecations) hides lab's own lines."""
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    for pattern in (".*LeafSpec.*", ".*smaller than the logging interval.*", ".*litlogger.*",
                    ".*does not have many workers.*", ".*Checkpoint directory .* exists.*",
                    ".*sync_dist=True.*", ".*no `val_dataloader`.*",  # epoch values are synced by torchmetrics
                    # On a Slurm host outside a job: hydra/launcher=slurm wraps each job in srun itself.
                    ".*`srun` command is available.*"):
        warnings.filterwarnings("ignore", message=pattern)


def uses_cuda(trainer_cfg) -> bool:
    """Whether trainer.accelerator puts the run on a CUDA GPU (auto: when there is one)."""
    accelerator = trainer_cfg["accelerator"]
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str) -> str:
    if str(precision) != "auto":
        return str(precision)
    if uses_cuda({"accelerator": accelerator}):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def set_cpu_threads(setting, omp_threads_set: bool = False) -> int:
    """torch's CPU threads: a number, null (torch's default: every core) or auto: the cores that are idle now,
    since OpenMP threads that wait for a busy core stall each other (BENCHMARKS.md, "CPU threads"). auto leaves
    an OMP_NUM_THREADS that is set alone (the user's choice, or joblib's cores / n_jobs)."""
    if setting == "auto" and not omp_threads_set:
        setting = idle_cores()
        if setting < torch.get_num_threads():
            log.info(f"cpu_threads=auto: {setting} of {torch.get_num_threads()} cores are idle, training with "
                     f"{setting} thread(s) (cpu_threads=N sets it)")
    if isinstance(setting, int):
        torch.set_num_threads(setting)
    return torch.get_num_threads()


def idle_cores(sample_s: float = 0.25) -> int:
    """Idle cores over a short sample of /proc/stat (the load average lags by a minute), at least 1."""
    def cpu_times():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all but guest time
    try:
        (idle0, total0), _ = cpu_times(), time.sleep(sample_s)
        idle1, total1 = cpu_times()
    except (OSError, ValueError, IndexError):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, round((idle1 - idle0) / max(total1 - total0, 1) * (os.cpu_count() or cores))))


def checkpoint_callbacks(folder: Path) -> list:
    """best.ckpt (highest val_acc) and last.ckpt (every epoch). Two callbacks, because save_last=True in
    Lightning 2.6 rewrites last.ckpt only in epochs that also improved best.ckpt. Both are saved at the end
    of the training epoch, after EpochRecorder wrote the epoch's metrics.csv row, so a run killed between
    the two never resumes past a missing row. Best first: trainer.checkpoint_callback is the first one."""
    common = dict(dirpath=folder, save_top_k=1, save_on_train_epoch_end=True, auto_insert_metric_name=False,
                  enable_version_counter=False)
    return [AtomicCheckpoint(filename="best", monitor="val_acc", mode="max", **common),
            AtomicCheckpoint(filename="last", monitor=None, **common)]


def shows_progress_bar() -> bool:
    """A live bar on a terminal; elsewhere (log files, sweeps, CI) EpochRecorder logs progress lines."""
    return sys.stdout.isatty()


def build_logger(cfg, job: dict | None):
    """conf/logger/: Lightning's loggers as they are; lab's trackers (lab/tracking/) also get the run's facts (job,
    which lab.train builds for them only)."""
    if not cfg.get("logger"):
        return False
    return hydra.utils.instantiate(cfg.logger, **({"job": job} if job is not None else {}))


class TrackerOutcome(pl.Callback):
    """A fit that ends in an exception: lab's status on the tracker's run, interrupted for Ctrl-C and SIGTERM (lab
    saves last.ckpt and a resume continues the run), else failed. Lightning's own finalize("failed") says failed for
    both."""

    def on_exception(self, trainer, pl_module, exception) -> None:
        stopped = isinstance(exception, KeyboardInterrupt) or type(exception).__name__ == "SIGTERMException"
        trainer.logger.record_outcome({"status": "interrupted" if stopped else "failed"})


def build_trainer(cfg, run_dir: Path, callbacks: list, job: dict | None = None) -> pl.Trainer:
    quiet_lightning()
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["precision"] = resolve_precision(trainer_cfg["precision"], trainer_cfg["accelerator"])
    callbacks = list(callbacks)
    if trainer_cfg["deterministic"]:
        trainer_cfg["benchmark"] = False  # cuDNN autotuning may pick a different algorithm run to run
    if not trainer_cfg.get("fast_dev_run"):
        callbacks += checkpoint_callbacks(Path(run_dir) / "checkpoints")
    tty = shows_progress_bar()
    if tty:
        callbacks.append(pl.callbacks.RichProgressBar())
    logger = build_logger(cfg, job)
    if hasattr(logger, "record_outcome"):
        callbacks.append(TrackerOutcome())
    return hydra.utils.instantiate(
        trainer_cfg, callbacks=callbacks, logger=logger, enable_progress_bar=tty,
        enable_model_summary=False, use_distributed_sampler=False, default_root_dir=str(run_dir))
