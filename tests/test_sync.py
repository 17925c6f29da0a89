"""The training and validation loops never wait for the device.

On a GPU the host queues kernels ahead of the device; anything that needs a device value on the host (.item(),
a boolean-mask index, a Python number copied into a device tensor) stalls that queue until the device is idle,
and Lightning's per-step Python work then adds to every step instead of hiding behind the GPU. These ops are
visible on the CPU too, at the dispatcher, so the test runs here: the real loops on tiny data, every op recorded."""
import time
import traceback

import pytorch_lightning as pl
import torch
from omegaconf import open_dict
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import compose
from lab.module import MeanLoss

# Ops that need a device value on the host, or (lift_fresh) turn host data into a tensor in the hot loop.
HOST_SYNC_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
                 "aten.bincount.default", "aten._unique2.default", "aten.unique_dim.default",
                 "aten.repeat_interleave.Tensor", "aten.lift_fresh.default", "aten.lift_fresh_copy.default"}
BOOL_INDEX_OPS = {"aten.index.Tensor", "aten.index_put_.default", "aten.index_put.default"}


def lab_frame() -> str:
    frames = [f for f in traceback.extract_stack() if "/lab/" in f.filename]
    return f"{frames[-1].filename.rsplit('/lab/', 1)[1]}:{frames[-1].lineno}" if frames else "outside lab"


def cpu_only_check() -> bool:
    """one_hot(labels, num_classes) reads labels.min()/max() on the CPU only; on CUDA it leaves the range check
    to a device assert (aten/src/ATen/native/Onehot.cpp). torchmetrics' top-5 accuracy calls it."""
    caller = [f for f in traceback.extract_stack() if "/torch/" not in f.filename and f.filename != __file__][-1]
    return "one_hot(" in (caller.line or "")


class SyncRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops, self.syncs = 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        name = str(func)
        bool_index = name in BOOL_INDEX_OPS and any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] or ())
        excused = name == "aten._local_scalar_dense.default" and cpu_only_check()
        if (name in HOST_SYNC_OPS or bool_index) and not excused:
            self.syncs.append(f"{name} at {lab_frame()}")
        return func(*args, **(kwargs or {}))


class RecordSecondEpoch(pl.Callback):
    """Records from the second epoch's first batch (data fetch included) to the end of its validation
    batches, before the epoch-end reads that are meant to sync once per epoch."""

    def __init__(self):
        self.train, self.val = SyncRecorder(), SyncRecorder()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 0:
            self.train.__enter__()

    def on_validation_epoch_start(self, trainer, module):
        if trainer.current_epoch == 1 and not trainer.sanity_checking:
            self.train.__exit__(None, None, None)
            self.val.__enter__()

    def on_validation_epoch_end(self, trainer, module):  # callbacks run before the module's epoch-end hook
        if trainer.current_epoch == 1 and not trainer.sanity_checking:
            self.val.__exit__(None, None, None)


def test_training_and_validation_loops_never_wait_for_the_device(tmp_path):
    from lab.train import build_run

    cfg = compose(["dataset=fake", "dataset.train_size=320", "dataset.test_size=64", "dataset.batch_size=32",
                   "model.base_width=8", "trainer.accelerator=cpu", "trainer.max_epochs=2", "~logger"])
    with open_dict(cfg):
        del cfg["hydra"]  # lab.train's main gets the config without Hydra's own node
    module, datamodule, trainer, _ = build_run(cfg, tmp_path, time.time())
    recorder = RecordSecondEpoch()
    trainer.callbacks.append(recorder)
    trainer.fit(module, datamodule=datamodule)
    assert cfg.dataset.augment.flip and cfg.dataset.augment.crop_padding  # the augmented path is the one seen
    assert recorder.train.ops > 1000 and recorder.val.ops > 100  # the windows really covered the loops
    assert recorder.train.syncs == [], "training loop waits for the device"
    assert recorder.val.syncs == [], "validation loop waits for the device"


def test_mean_loss_weights_by_images_and_keeps_nan():
    mean = MeanLoss()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(5.0), 1)  # a short last batch counts for its one image, not for a full batch
    assert mean.compute().item() == 2.0
    mean.update(torch.tensor(float("nan")), 2)
    assert mean.compute().isnan()
