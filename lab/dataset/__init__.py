"""conf/dataset/: every dataset becomes uint8 tensors [N, C, H, W] + int64 labels, loaded once.

`load_training_data` is what a run calls: `load_dataset` (an ImageData) and `split_validation` (part of train
held out); loader.py's DataModule serves the splits in batches. Every image is held as uint8 on the training
device, so an image folder is checked against a MemoryBudget (memory.py) before it is decoded. Every dataset key
is read in this package."""
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from lab.errors import DataError

log = logging.getLogger("lab")


@dataclass
class ImageData:
    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list
    mean: tuple  # per channel, images scaled to [0, 1]
    std: tuple
    dataset_name: str = ""
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    # Optional int64 [N]: images of one group (GTSRB: ~30 frames of one physical sign) are near-duplicates,
    # so the validation split holds out whole groups.
    train_groups: torch.Tensor | None = None
    split: tuple | None = None  # (seed, val_split) that drew the validation split; None before split_validation

    @property
    def val_is_test(self) -> bool:
        """val_split=0: validation runs on the test set, as the lab did."""
        return self.val_images is self.test_images

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]


def fixed_split(n: int, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:], order[:n_test]


def group_split(groups: torch.Tensor, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Like fixed_split, but whole groups: groups in a seeded random order go to the held-out side until it
    has at least n_test images (one group too many rather than one too few). With under 10 groups whole
    groups cannot come close to n_test: fixed_split then."""
    ids, group_of_image = groups.unique(return_inverse=True)
    if len(ids) < 10:
        return fixed_split(len(groups), n_test, seed)
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    sizes = torch.bincount(group_of_image, minlength=len(ids))[order]
    count = min(int(torch.searchsorted(sizes.cumsum(0), n_test)) + 1, len(ids) - 1)  # train keeps a group
    taken = order[:count]
    held_out = torch.isin(group_of_image, taken)
    return (~held_out).nonzero().flatten(), held_out.nonzero().flatten()


def load_digits() -> dict:
    """scikit-learn's bundled 8x8 digits: real images, no network. Test set = a fixed 20% (seed 0), so
    runs with different seeds are scored on the same images."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images * (255 / 16)).round().to(torch.uint8)[:, None]  # [N, 1, 8, 8]
    labels = torch.from_numpy(bunch.target).long()
    train, test = fixed_split(len(labels), len(labels) // 5, seed=0)
    return dict(train_images=images[train], train_labels=labels[train], test_images=images[test],
                test_labels=labels[test], class_names=[str(d) for d in range(10)])


def load_fake(cfg) -> dict:
    """Random CIFAR-shaped images for smoke tests and benchmarks (content does not change speed)."""
    gen = torch.Generator().manual_seed(0)
    shape = (cfg.channels, cfg.image_size, cfg.image_size)

    def draw(n):
        return (torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen),
                torch.randint(0, cfg.num_classes, (n,), generator=gen))

    (train_images, train_labels), (test_images, test_labels) = draw(cfg.train_size), draw(cfg.test_size)
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, class_names=[f"class_{i}" for i in range(cfg.num_classes)])


def channel_stats(images_uint8: torch.Tensor, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and std in [0, 1] units, in chunks so no float copy of the dataset is made."""
    total = torch.zeros(images_uint8.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(images_uint8), chunk):
        x = images_uint8[start : start + chunk].double().div_(255)
        total += x.sum((0, 2, 3))
        total_sq += x.pow(2).sum((0, 2, 3))
    count = images_uint8.numel() / images_uint8.shape[1]
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(1e-12).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def load_training_data(cfg, data_dir: str | Path, seed: int, on_cuda: bool = False) -> ImageData:
    """What a run trains on: the dataset with dataset.val_split of train held out (drawn by seed)."""
    data = split_validation(load_dataset(cfg, data_dir, on_cuda=on_cuda), cfg.val_split, seed)
    if cfg.val_split == 0:
        log.warning("dataset.val_split=0: validating on the test set, as the lab did; the best checkpoint "
                    "is then chosen on test data, so results.json reports the last epoch's test accuracy")
    return data


def load_dataset(cfg, data_dir: str | Path, budget=None, on_cuda: bool = False) -> ImageData:
    """cfg is the dataset group; data_dir is where downloads and decoded caches live; an image folder must fit
    in budget (a memory.MemoryBudget; default: the GPU's free memory on_cuda, else half the host's available
    RAM)."""
    name = cfg.name
    if name in ("cifar100", "cifar10"):
        from lab.dataset.cifar import load_cifar
        parts = load_cifar(name, Path(data_dir))
    elif name == "digits":
        parts = load_digits()
    elif name == "fake":
        parts = load_fake(cfg)
    elif name == "imagefolder":
        from lab.dataset.imagefolder import load_imagefolder
        parts = load_imagefolder(cfg, Path(data_dir), budget or device_budget(on_cuda))
    elif name == "gtsrb":
        from lab.dataset.gtsrb import load_gtsrb
        parts = load_gtsrb(cfg, Path(data_dir), budget or device_budget(on_cuda))
    elif name == "fashion_mnist":
        from lab.dataset.fashion_mnist import load_fashion_mnist
        parts = load_fashion_mnist(cfg, Path(data_dir))
    else:
        raise DataError(f"dataset.name={name!r} has no loader in lab/dataset")
    if cfg.get("train_subset"):
        parts = take_train_subset(parts, cfg.train_subset, name)
    if cfg.get("mean") is not None and cfg.get("std") is not None:
        mean, std = tuple(cfg.mean), tuple(cfg.std)
    else:
        mean, std = channel_stats(parts["train_images"])
    return ImageData(**parts, mean=mean, std=std, dataset_name=name)


def device_budget(on_cuda: bool):
    from lab.dataset.memory import memory_budget

    return memory_budget(on_cuda)


def take_train_subset(parts: dict, size: int, name: str) -> dict:
    """A class-balanced subset of `size` training images, the same for every run and seed (fixed draw), so that
    CPU-scale runs of different settings train on the same images. The test set is kept whole."""
    labels = parts["train_labels"]
    if size > len(labels):
        raise DataError(f"dataset.train_subset={size} but {name} has {len(labels)} training images: pass at most "
                        f"{len(labels)}, or null for all of them")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    place_in_class = torch.empty_like(order)  # each image's place among its class's images, in drawn order
    for label in labels.unique().tolist():
        members = order[labels[order] == label]
        place_in_class[members] = torch.arange(len(members))
    # Round-robin over the classes: first places first, ties in drawn order.
    keep = order[torch.argsort(place_in_class[order], stable=True)][:size].sort().values
    parts = dict(parts, train_images=parts["train_images"][keep], train_labels=labels[keep])
    if parts.get("train_groups") is not None:
        parts["train_groups"] = parts["train_groups"][keep]
    return parts


def split_validation(data: ImageData, val_split: float, seed: int) -> ImageData:
    """Hold out `val_split` of train (fixed by seed). val_split=0 validates on the test set, as the lab did."""
    data.split = (seed, val_split)
    if val_split == 0:
        data.val_images, data.val_labels = data.test_images, data.test_labels
        return data
    n = len(data.train_labels)
    if data.train_groups is not None:
        train, val = group_split(data.train_groups, max(1, round(n * val_split)), seed)
    else:
        train, val = fixed_split(n, max(1, round(n * val_split)), seed)
    data.val_images, data.val_labels = data.train_images[val], data.train_labels[val]
    data.train_images, data.train_labels = data.train_images[train], data.train_labels[train]
    if data.train_groups is not None:
        data.train_groups = data.train_groups[train]
    return data
