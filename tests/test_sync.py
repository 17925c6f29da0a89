"""The training and validation loops never wait for the device.

On a GPU the host queues kernels ahead of the device; anything that needs a device value on the host (.item(),
a boolean-mask index, .tolist(), a Python number copied into a device tensor) stalls that queue until the
device is idle, and Lightning's per-step Python work then adds to every step instead of hiding behind the GPU.
Most of these are visible on the CPU too, at the dispatcher or as Python calls, so the test runs here: the
real loops on tiny data, every op and tensor call recorded. On a GPU, CUDA's own sync check runs as well.
(Precision 16-mixed does sync: its GradScaler reads a found-inf flag every step. lab uses bf16 where it can.)"""
import time
import traceback

import pytest
import pytorch_lightning as pl
import torch
from conftest import compose
from omegaconf import OmegaConf, open_dict
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from lab.module import MeanLoss

# Ops that need a device value on the host, or (lift_fresh) turn host data into a tensor in the hot loop.
HOST_SYNC_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
                 "aten.bincount.default", "aten._unique2.default", "aten.unique_dim.default",
                 "aten.repeat_interleave.Tensor", "aten.lift_fresh.default", "aten.lift_fresh_copy.default"}
BOOL_INDEX_OPS = {"aten.index.Tensor", "aten.index_put_.default", "aten.index_put.default"}
# Calls that copy device data to the host; on the CPU they never reach the dispatcher.
HOST_COPY_CALLS = {torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.item, torch.equal}


def lab_frame() -> str:
    frames = [f for f in traceback.extract_stack() if "/lab/" in f.filename]
    return f"{frames[-1].filename.rsplit('/lab/', 1)[1]}:{frames[-1].lineno}" if frames else "outside lab"


def cpu_only_check() -> bool:
    """torchmetrics' top-5 accuracy calls one_hot(labels, num_classes), which reads labels.min()/max() on the
    CPU only; on CUDA it leaves the range check to a device assert (aten/src/ATen/native/Onehot.cpp)."""
    caller = [f for f in traceback.extract_stack() if "/torch/" not in f.filename and f.filename != __file__][-1]
    return "/torchmetrics/" in caller.filename and "one_hot(" in (caller.line or "")


class SyncOps(TorchDispatchMode):
    def __init__(self, found: list):
        super().__init__()
        self.ops, self.found = 0, found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        name = str(func)
        bool_index = name in BOOL_INDEX_OPS and any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] or ())
        excused = name == "aten._local_scalar_dense.default" and cpu_only_check()
        if (name in HOST_SYNC_OPS or bool_index) and not excused:
            self.found.append(f"{name} at {lab_frame()}")
        return func(*args, **(kwargs or {}))


class HostCopies(TorchFunctionMode):
    def __init__(self, found: list):
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_COPY_CALLS:
            self.found.append(f"{func.__name__} at {lab_frame()}")
        return func(*args, **(kwargs or {}))


class Window:
    """Both recorders, plus CUDA's sync check on a GPU, between enter() and exit()."""

    def __init__(self):
        self.found = []
        self.ops, self.copies = SyncOps(self.found), HostCopies(self.found)
        self.active = False

    def enter(self):
        self.ops.__enter__(), self.copies.__enter__()
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("error")  # raises on any sync the CPU recorders cannot see
        self.active = True

    def exit(self):
        if self.active:
            if torch.cuda.is_available():
                torch.cuda.set_sync_debug_mode("default")
            self.copies.__exit__(None, None, None), self.ops.__exit__(None, None, None)
            self.active = False


class RecordSecondEpoch(pl.Callback):
    """Records from the second epoch's first batch (data fetch included) to the end of its validation
    batches, before the epoch-end reads that are meant to sync once per epoch."""

    def __init__(self):
        self.train, self.val = Window(), Window()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 0:
            self.train.enter()

    def on_validation_epoch_start(self, trainer, module):
        if trainer.current_epoch == 1 and not trainer.sanity_checking:
            self.train.exit()
            self.val.enter()

    def on_validation_epoch_end(self, trainer, module):  # callbacks run before the module's epoch-end hook
        self.val.exit()

    def on_exception(self, trainer, module, exception):  # never leave a mode on for the tests that follow
        self.train.exit(), self.val.exit()


def write_teacher(cfg, path) -> str:
    """A checkpoint as lab.train writes it (untrained weights do for timing): the net's state and the plain
    hyperparameters lab.checkpoint rebuilds it from."""
    from lab.dataset import load_dataset
    from lab.model import build_model

    data = load_dataset(cfg.dataset, cfg.paths.data_dir)
    model = OmegaConf.to_container(cfg.model)
    net = build_model(cfg.model, data.num_classes, data.channels)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": dict(model=model, num_classes=data.num_classes, in_channels=data.channels,
                                         image_size=data.image_size, dataset=data.dataset_name,
                                         class_names=list(data.class_names))}, path)
    return str(path)


# Every augmentation op and the EMA update are in the loops seen: erasing and a mix in each case, cutmix with the
# teacher's forward (distillation sees the mixed images), mixup without.
AUGMENT = ["augment.erase_p=0.5", "augment.mix_p=1.0", "ema.decay=0.9"]


@pytest.mark.parametrize("accelerator,distill,mix", [("cpu", "none", "mixup"), ("cpu", "both", "cutmix"), pytest.param(
    "gpu", "both", "cutmix", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))])
def test_training_and_validation_loops_never_wait_for_the_device(tmp_path, accelerator, distill, mix):
    from lab.context import RunContext
    from lab.ema import EMA
    from lab.train import build_run

    cfg = compose(["dataset=fake", "dataset.train_size=320", "dataset.test_size=64", "dataset.batch_size=32",
                   "model.base_width=8", f"trainer.accelerator={accelerator}", "trainer.max_epochs=2", "~logger",
                   f"distill={distill}", f"augment.mix={mix}", *AUGMENT])
    with open_dict(cfg):
        del cfg["hydra"]  # lab.train's main gets the config without Hydra's own node
        if distill != "none":
            cfg.distill.teacher_ckpt = write_teacher(cfg, tmp_path / "teacher.ckpt")
    module, datamodule, trainer, _, _ = build_run(cfg, RunContext(run_dir=tmp_path), time.time())
    recorder = RecordSecondEpoch()
    trainer.callbacks.append(recorder)
    trainer.fit(module, datamodule=datamodule)
    assert cfg.augment.flip and cfg.augment.crop_padding  # the augmented path is the one seen
    assert (module.distiller is not None) == (distill != "none")
    ema = next(c for c in trainer.callbacks if isinstance(c, EMA))
    assert int(ema._average_model.n_averaged) == trainer.global_step  # it really updated every step
    assert recorder.train.ops.ops > 1000 and recorder.val.ops.ops > 100  # the windows really covered the loops
    assert recorder.train.found == [], "training loop waits for the device"
    assert recorder.val.found == [], "validation loop waits for the device"


def test_mean_loss_weights_by_images_and_keeps_nan():
    mean = MeanLoss()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(5.0), 1)  # a short last batch counts for its one image, not for a full batch
    assert mean.compute().item() == 2.0
    mean.update(torch.tensor(float("nan")), 2)
    assert mean.compute().isnan()
