"""conf/trainer/ and conf/logger/: the Lightning Trainer with lab's callbacks, precision and progress bar."""
import logging
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from lab.recorder import AtomicCheckpoint

log = logging.getLogger("lab")
STOPPED_BY = {"signal": None}  # "Ctrl-C" once the user pressed it: lab.train names it in its last line


def quiet_lightning() -> None:
    """Lightning's start-up chatter (accelerator lines, tips, deprecations) hides lab's own lines."""
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    for pattern in (".*LeafSpec.*", ".*smaller than the logging interval.*", ".*litlogger.*",
                    ".*does not have many workers.*", ".*Checkpoint directory .* exists.*",
                    ".*sync_dist=True.*", ".*no `val_dataloader`.*"):  # lab's epoch values are already synced by torchmetrics
        warnings.filterwarnings("ignore", message=pattern)


@cache
def cpu_has_fast_bf16() -> bool:
    # bf16 autocast is ~2x faster on CPUs with AVX-512 BF16 / AMX and slower than fp32 on those without.
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str) -> str:
    if str(precision) != "auto":
        return str(precision)
    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def checkpoint_callbacks(folder: Path) -> list:
    """best.ckpt (highest val_acc) and last.ckpt (every epoch). Two callbacks, because save_last=True in
    Lightning 2.6 rewrites last.ckpt only in epochs that also improved best.ckpt. Both are saved at the end
    of the training epoch, after EpochRecorder wrote the epoch's metrics.csv row, so a run killed between
    the two never resumes past a missing row. Best first: trainer.checkpoint_callback is the first one."""
    common = dict(dirpath=folder, save_top_k=1, save_on_train_epoch_end=True, auto_insert_metric_name=False,
                  enable_version_counter=False)
    return [AtomicCheckpoint(filename="best", monitor="val_acc", mode="max", **common),
            AtomicCheckpoint(filename="last", monitor=None, **common)]


def build_trainer(cfg, run_dir: Path, callbacks: list) -> pl.Trainer:
    quiet_lightning()
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["precision"] = resolve_precision(trainer_cfg["precision"], trainer_cfg["accelerator"])
    callbacks = list(callbacks)
    if trainer_cfg["deterministic"]:
        trainer_cfg["benchmark"] = False  # cuDNN autotuning may pick a different algorithm run to run
    if not trainer_cfg.get("fast_dev_run"):
        callbacks += checkpoint_callbacks(Path(run_dir) / "checkpoints")
    tty = sys.stdout.isatty()
    if tty:
        callbacks.append(pl.callbacks.RichProgressBar())
    logger = hydra.utils.instantiate(cfg.logger) if cfg.get("logger") else False
    return hydra.utils.instantiate(
        trainer_cfg, callbacks=callbacks, logger=logger, enable_progress_bar=tty,
        enable_model_summary=False, use_distributed_sampler=False, default_root_dir=str(run_dir))


@contextmanager
def ctrl_c_stops_after_the_batch():
    """The first Ctrl-C stops the run the way SIGTERM does: after the current batch, with last.ckpt saved
    there and status interrupted, so resume=true continues exactly. It sends this process SIGTERM, which
    Lightning's handler (installed while fit/test run) turns into a stop at the batch's end. Elsewhere, or
    pressed again, Ctrl-C interrupts at once (Lightning then exits 1 mid-batch, with no checkpoint)."""
    def on_ctrl_c(signum, frame):
        lightning_stops = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        if STOPPED_BY["signal"] is None and lightning_stops:
            STOPPED_BY["signal"] = "Ctrl-C"
            log.warning("Ctrl-C: stopping after this batch and saving last.ckpt (press again to stop at once)")
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            STOPPED_BY["signal"] = "Ctrl-C"
            raise KeyboardInterrupt

    STOPPED_BY["signal"] = None  # a new job (the basic launcher runs a sweep's jobs in one process)
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
