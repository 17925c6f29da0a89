"""The data path: uint8 tensors on the training device, batches sliced from a permutation, augmentation as
batched tensor ops (lab/augment.py), and the DataModule that serves an ImageData's splits this way to Lightning. No
per-sample __getitem__ and no collate: a PIL pipeline costs ~300 us of core time per 32x32 image (BENCHMARKS.md), which
starves a GPU; indexing a resident tensor costs almost nothing."""
import logging
import math

import pytorch_lightning as pl
import torch

from lab.augment import Augment, build_augment

log = logging.getLogger("lab")
# Below this many optimizer steps an epoch, batch-norm statistics and the lr schedule get few updates:
# a 600-image folder at batch 256 (2 steps) reached 0.87 test accuracy after 15 epochs, 0.985 at batch 32.
MIN_STEPS_PER_EPOCH = 10


def epoch_seed(seed: int, epoch: int) -> int:
    # Data order and augmentation are a pure function of (seed, epoch): a resumed run replays them exactly.
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


class DeviceLoader:
    """Iterable of (normalised float images, targets) batches: int64 labels, or soft targets [N, classes] where
`augment` mixed the batch; len() is batches per epoch.

    `epoch_fn` tells which epoch is starting: the permutation depends only on (seed, epoch) and each batch's
    augmentation only on (seed, epoch, batch). So a run resumed mid-epoch (state_dict/load_state_dict, which
    Lightning stores in the checkpoint) replays exactly the batches it had left. `progress_fn` gives the
    batches already trained this epoch. With world_size > 1 each rank takes every world_size-th index of the
    same permutation.
    """

    def __init__(self, images, labels, batch_size: int, mean, std, *, shuffle: bool, drop_last: bool,
                 augment: Augment | None = None, seed: int = 0, epoch_fn=lambda: 0,
                 rank: int = 0, world_size: int = 1, channels_last: bool = True, progress_fn=lambda: 0):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment = augment or Augment()
        self.seed, self.epoch_fn, self.progress_fn = seed, epoch_fn, progress_fn
        self.resume_point = None  # (epoch, batches already trained) from a mid-epoch checkpoint
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        # Normalise uint8 directly: (x - 255*mean) / (255*std) = x*scale + bias, one fused addcmul per batch.
        shape = (1, -1, 1, 1)
        self.scale = 1 / (torch.tensor(std, device=images.device).view(shape) * 255)
        self.bias = -torch.tensor(mean, device=images.device).view(shape) * 255 * self.scale

    def samples_per_rank(self) -> int:
        n = len(self.labels)
        return n // self.world_size if self.shuffle else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        n = self.samples_per_rank()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        if self.channels_last:  # reorder the 1-byte pixels, not the 4-byte floats; float ops keep the layout
            images_uint8 = images_uint8.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(self.bias, images_uint8.float(), self.scale)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch_fn(), "batch": self.progress_fn()}

    def load_state_dict(self, state: dict) -> None:
        self.resume_point = (state["epoch"], state["batch"])

    def __iter__(self):
        dev, n, epoch = self.images.device, len(self.labels), self.epoch_fn()
        gen = torch.Generator(device=dev)
        gen.manual_seed(epoch_seed(self.seed, epoch))
        if self.shuffle:
            order = torch.randperm(n, device=dev, generator=gen)
            order = order[: n - n % self.world_size]  # equal shares, so DDP ranks step in lockstep
        else:
            order = torch.arange(n, device=dev)
        order = order[self.rank :: self.world_size]
        first = self.resume_point[1] if self.resume_point and self.resume_point[0] == epoch else 0
        self.resume_point = None
        for batch in range(first, len(self)):
            idx = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            if not self.augment.draws:
                yield self.normalize(self.images[idx]), self.labels[idx]
                continue
            # Each DDP rank draws its own augmentation; one process (rank 0 of 1) gets batch + 1.
            batch_seed = epoch_seed(self.seed, epoch) + (batch + 1) * self.world_size + self.rank
            gen.manual_seed(batch_seed)
            yield self.augment(self.images[idx], self.labels[idx], self.normalize, gen, batch_seed)


def few_steps_warning(train_images: int, batch_size: int, world_size: int = 1,
                      accumulate: int = 1) -> str | None:
    """The warning for an epoch of fewer than MIN_STEPS_PER_EPOCH optimizer steps, or None."""
    per_rank = train_images // world_size
    batches = per_rank // batch_size if per_rank >= batch_size else 1  # drop_last only when a batch fills
    steps = math.ceil(batches / accumulate)
    if steps >= MIN_STEPS_PER_EPOCH:
        return None
    # The largest power of two that gives MIN_STEPS_PER_EPOCH steps, and 2 at least (batch norm needs 2+ images).
    fitting = 2 ** max(1, int(math.log2(max(1, per_rank // (MIN_STEPS_PER_EPOCH * accumulate)))))
    per_device = f" per device, {world_size} devices" if world_size > 1 else ""
    return (f"an epoch is only {steps} optimizer step(s) ({train_images} training images, dataset.batch_size="
            f"{batch_size}{per_device}): batch norm and the lr schedule get few updates and the run may end far "
            f"below what the data allows; try dataset.batch_size={fitting} ({MIN_STEPS_PER_EPOCH}+ steps an epoch)")


class DataModule(pl.LightningDataModule):
    """Lightning's view of an ImageData (lab.dataset): three DeviceLoaders on the device Lightning chose, with
    dataset.batch_size from the conf/dataset node `cfg` and the training batches augmented as the conf/augment node
    `augment_cfg` says."""

    def __init__(self, data, cfg, seed: int, channels_last: bool, augment_cfg=None):
        super().__init__()
        self.data, self.batch_size = data, cfg.batch_size
        self.augment = build_augment(augment_cfg, data.num_classes) if augment_cfg is not None else Augment()
        self.seed, self.channels_last = seed, channels_last
        self.device = None

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.is_global_zero:
            trainer = self.trainer
            message = few_steps_warning(len(self.data.train_labels), self.batch_size, trainer.world_size,
                                        trainer.accumulate_grad_batches)
            if message:
                log.warning(message)

    def to_device(self) -> None:
        # One copy of the data, moved once: on CUDA the uint8 set (~184 MB for CIFAR-100) lives on the GPU.
        device = self.trainer.strategy.root_device
        if self.device == device:
            return
        d = self.data
        val_is_test = d.val_images is d.test_images  # val_split=0: one copy serves both
        for name in ("train_images", "train_labels", "test_images", "test_labels", "val_images", "val_labels"):
            if val_is_test and name.startswith("val_"):
                setattr(d, name, getattr(d, name.replace("val_", "test_")))
            else:
                setattr(d, name, getattr(d, name).to(device))
        self.device = device

    def loader(self, images, labels, train: bool) -> DeviceLoader:
        self.to_device()
        trainer = self.trainer
        # Evaluation has no backward pass, so on a GPU larger batches are free speed; on a CPU they only
        # raise peak memory.
        eval_batch = max(self.batch_size, 512) if self.device.type == "cuda" else self.batch_size
        return DeviceLoader(
            images, labels, self.batch_size if train else eval_batch, self.data.mean,
            self.data.std, shuffle=train,
            drop_last=train and len(labels) // trainer.world_size >= self.batch_size,  # per-rank share
            augment=self.augment if train else None, seed=self.seed,
            epoch_fn=lambda: trainer.current_epoch, rank=trainer.global_rank,
            world_size=trainer.world_size, channels_last=self.channels_last,
            progress_fn=lambda: trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    def train_dataloader(self):
        return self.loader(self.data.train_images, self.data.train_labels, train=True)

    def val_dataloader(self):
        return self.loader(self.data.val_images, self.data.val_labels, train=False)

    def test_dataloader(self):
        return self.loader(self.data.test_images, self.data.test_labels, train=False)
