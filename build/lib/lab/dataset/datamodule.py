"""Lightning's view of an ImageData: three DeviceLoaders on the device Lightning chose."""
import pytorch_lightning as pl

from lab.dataset import ImageData
from lab.dataset.loader import DeviceLoader


class DataModule(pl.LightningDataModule):
    def __init__(self, data: ImageData, batch_size: int, augment, seed: int, channels_last: bool):
        super().__init__()
        self.data, self.batch_size, self.augment = data, batch_size, augment
        self.seed, self.channels_last = seed, channels_last
        self.device = None

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
            crop_padding=self.augment.crop_padding if train else 0,
            flip=bool(self.augment.flip) if train else False, seed=self.seed,
            epoch_fn=lambda: trainer.current_epoch, rank=trainer.global_rank,
            world_size=trainer.world_size, channels_last=self.channels_last,
            progress_fn=lambda: trainer.fit_loop.epoch_loop.batch_progress.current.completed)

    def train_dataloader(self):
        return self.loader(self.data.train_images, self.data.train_labels, train=True)

    def val_dataloader(self):
        return self.loader(self.data.val_images, self.data.val_labels, train=False)

    def test_dataloader(self):
        return self.loader(self.data.test_images, self.data.test_labels, train=False)
