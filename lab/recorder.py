"""EpochRecorder: the per-epoch half of the run dir contract (metrics.csv rows, steps.csv, timing, divergence)."""
import csv
import io
import logging
import math
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lab.run_files import METRIC_COLUMNS, write_atomic

log = logging.getLogger("lab")


def save_checkpoint_atomic(trainer, path: Path) -> None:
    """Write to a temp file and rename: a kill during the save leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp)  # a collective under DDP: every rank calls it, rank 0 writes
    if trainer.is_global_zero:
        os.replace(tmp, path)


def process_start_time() -> float:
    """Unix time at which this process started (Linux /proc; falls back to now elsewhere)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


class AtomicCheckpoint(pl.callbacks.ModelCheckpoint):
    """ModelCheckpoint whose every file (best.ckpt, last.ckpt) is written atomically."""

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        save_checkpoint_atomic(trainer, Path(filepath))
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath


class EpochRecorder(pl.Callback):
    """Times each epoch, appends its row to metrics.csv, keeps the training loss of every `step_loss_every`-th
    optimizer step for steps.csv, and stops a run whose loss is NaN/inf. `summary()` is what it learned.

    Rows already in metrics.csv from before a resume are kept; rows of epochs that are replayed are
    replaced, so an interrupted-and-resumed run ends with the same rows as an uninterrupted one."""

    def __init__(self, run_dir: Path, extra_columns=(), started_at: float | None = None,
                 segment_started_at: float | None = None, progress_every_s: float | None = None,
                 step_loss_every: int | None = None):
        self.path = Path(run_dir) / "metrics.csv"
        self.columns = METRIC_COLUMNS + list(extra_columns)
        self.step_loss_every = step_loss_every
        self.step_losses = []  # (step, loss on the device, or a float from a checkpoint) not yet in steps.csv
        self.diverged_epoch = None
        self.phase_start = None
        self.time_to_first_step_s = None  # imports (first job of a process), data loading, model build
        self.started_at = started_at or process_start_time()
        self.train_images = 0
        self.train_time_s = 0.0
        # Wall time of the run before this process resumed it (up to its last checkpoint), so a resumed run's
        # total time is the whole run's: time lost after that checkpoint is work the run did not keep.
        self.segment_started_at = segment_started_at or time.time()
        self.earlier_segments_s = 0.0
        self.processes = 1  # this one and those it resumed: train_time_s and train_images cover them all
        self.epoch_start = None
        self.resumed_epoch_elapsed_s = 0.0  # a run stopped mid-epoch had trained this long in that epoch
        self.progress_every_s, self.last_progress, self.epoch_images = progress_every_s, None, 0

    def sync_time(self, trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # honest timing: wait for queued kernels
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module):
        # A run resumed mid-epoch skips on_train_epoch_start: its epoch time counts the part trained before.
        self.phase_start = self.last_progress = self.sync_time(trainer)
        self.epoch_start = self.phase_start - self.resumed_epoch_elapsed_s

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_start = self.phase_start = self.last_progress = self.sync_time(trainer)
        self.epoch_images = 0

    def state_dict(self) -> dict:
        """Saved in every checkpoint, also one taken mid-epoch (SIGTERM): the training phase under way counts."""
        now = time.perf_counter()
        running_s = now - self.phase_start if self.phase_start is not None else 0.0
        # A checkpoint taken mid-epoch (SIGTERM) keeps the step losses not yet in steps.csv.
        self.step_losses = self.take_step_losses()
        return {"train_time_s": self.train_time_s + running_s, "train_images": self.train_images,
                "elapsed_s": self.earlier_segments_s + time.time() - self.segment_started_at,
                "epoch_elapsed_s": now - self.epoch_start if self.epoch_start is not None else 0.0,
                "processes": self.processes, "pending_step_losses": list(self.step_losses)}

    def load_state_dict(self, state: dict) -> None:
        self.train_time_s, self.train_images = state["train_time_s"], state["train_images"]
        self.earlier_segments_s = state.get("elapsed_s", 0.0)
        self.resumed_epoch_elapsed_s = state.get("epoch_elapsed_s", 0.0)
        self.processes = state.get("processes", 1) + 1
        self.step_losses = [tuple(pair) for pair in state.get("pending_step_losses", [])]

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Where an earlier lab kept them: beside the module's state.
        if "pending_step_losses" in checkpoint and not self.step_losses:
            self.step_losses = [tuple(pair) for pair in checkpoint["pending_step_losses"]]

    def summary(self) -> dict:
        """What the run's record takes from here: its training time and images over every process that trained it,
        the wall time of the processes before this one, and the epoch its loss became NaN/inf (None: never)."""
        return dict(diverged_epoch=self.diverged_epoch, train_time_s=self.train_time_s,
                    train_images=self.train_images, earlier_processes_s=self.earlier_segments_s,
                    time_to_first_step_s=self.time_to_first_step_s, processes=self.processes)

    def take_step_losses(self) -> list[tuple[int, float]]:
        """The kept (step, training loss) pairs, emptied. The losses still on the device (tensors; floats come
        from a checkpoint) are stacked there and copied to the host once."""
        on_device = [loss for _, loss in self.step_losses if torch.is_tensor(loss)]
        copied = iter(torch.stack(on_device).float().cpu().tolist() if on_device else [])
        pairs = [(step, next(copied) if torch.is_tensor(loss) else loss) for step, loss in self.step_losses]
        self.step_losses = []
        return pairs

    def on_exception(self, trainer, pl_module, exception):
        # SIGTERM (preemption, scancel, Ctrl-C via lab/trainer.py) stops after the batch: save it there.
        # Not while testing (the module may hold best.ckpt's weights), nor mid-validation (Lightning would
        # resume past the rest of it): the epoch's last.ckpt stays and the resume repeats the epoch.
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        path = self.path.parent / "checkpoints" / "last.ckpt"
        if trainer.sanity_checking or trainer.validating:
            log.warning(f"stopping during validation: resume=true repeats epoch {trainer.current_epoch} from {path}")
            return
        save_checkpoint_atomic(trainer, path)
        log.warning(f"stopping: saved {path} after {trainer.global_step} training steps")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.time_to_first_step_s is None:
            self.time_to_first_step_s = round(time.time() - self.started_at, 3)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train_images += len(batch[1])
        # The step this batch's optimizer step was (global_step counts it already); gradient accumulation steps
        # once every accumulate_grad_batches batches.
        step = trainer.global_step - 1
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if self.step_loss_every and stepped and step % self.step_loss_every == 0 and outputs is not None:
            loss = outputs["loss"].detach()  # on the device until the epoch ends
            if trainer.accumulate_grad_batches > 1:  # Lightning hands over the loss divided for accumulation
                loss = loss * trainer.accumulate_grad_batches
            self.step_losses.append((step, loss))
        self.epoch_images += len(batch[1])
        if self.progress_every_s and time.perf_counter() - self.last_progress >= self.progress_every_s:
            self.log_progress(trainer, batch_idx + 1)

    def log_progress(self, trainer, batches_done: int) -> None:
        """A line inside a long epoch when no progress bar shows one (no terminal: a log file, a sweep)."""
        now = time.perf_counter()  # no device sync: the queue of kernels ahead of the host is short
        self.last_progress = now
        total, rate = trainer.num_training_batches, self.epoch_images / max(now - self.phase_start, 1e-9)
        if not trainer.is_global_zero or not math.isfinite(total):
            return
        eta_s = (total - batches_done) * (now - self.epoch_start) / max(batches_done, 1)
        log.info(f"epoch {trainer.current_epoch}: batch {batches_done}/{total}, {rate:.0f} images/s, "
                 f"epoch ETA {eta_s:.0f} s")

    def end_train_phase(self, trainer) -> None:
        if self.phase_start is not None:
            self.train_time_s += self.sync_time(trainer) - self.phase_start
            self.phase_start = None

    def on_validation_epoch_start(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.end_train_phase(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self.end_train_phase(trainer)
        # 7 significant digits: float32 noise (lr 0.029999999) would otherwise fill the table.
        metrics = {k: float(f"{float(v):.7g}") for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row = {"epoch": trainer.current_epoch, "epoch_time_s": round(self.sync_time(trainer) - self.epoch_start, 4)}
        self.epoch_start, self.resumed_epoch_elapsed_s = None, 0.0
        row.update({k: metrics.get(k, "") for k in self.columns if k not in row})
        # Every rank decides (the values are synced), so DDP ranks stop together instead of hanging.
        if not all(math.isfinite(metrics.get(k, 0.0)) for k in ("train_loss", "val_loss")):
            self.diverged_epoch = trainer.current_epoch
            trainer.should_stop = True
        steps = self.take_step_losses()
        if not trainer.is_global_zero:
            return
        self.append(row)
        if steps:
            self.append_steps(trainer.current_epoch, steps)
        log.info("epoch %d  " % row["epoch"] + "  ".join(
            f"{k} {row[k]:.4g}" for k in self.columns[1:] if isinstance(row.get(k), float)))

    def append_steps(self, epoch: int, steps: list[tuple[int, float]]) -> None:
        """steps.csv: (step, epoch, train_loss) of every step_loss_every-th step; rows of steps a resumed run
        trains again are replaced."""
        path = self.path.with_name("steps.csv")
        rows = []
        if path.exists():
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) < steps[0][0]]
        rows += [{"step": step, "epoch": epoch, "train_loss": f"{loss:.7g}"} for step, loss in steps]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["step", "epoch", "train_loss"])
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(path, buf.getvalue())

    def append(self, row: dict) -> None:
        rows = []
        if self.path.exists():
            with open(self.path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows + [row])
        write_atomic(self.path, buf.getvalue())
