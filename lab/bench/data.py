"""python -m lab.bench's machine facts and its data-path section: lab's on-device loader (crop + flip, and with
random erasing and cutmix on too) against the usual worker-process loader, on CIFAR-shaped uint8 images."""
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lab.augment import Augment
from lab.config import CONF
from lab.dataset.loader import DeviceLoader

CIFAR100 = OmegaConf.load(CONF / "dataset" / "cifar100.yaml")
MEAN, STD = tuple(CIFAR100.mean), tuple(CIFAR100.std)


def cpu_clock() -> tuple[float, float, float]:
    """(wall s, CPU s run by every process on the machine, CPU s run by this process and its waited-for
    children): two readings tell how much of the CPU other processes took in between (Linux /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
        machine = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    except (OSError, ValueError):
        machine = float("nan")
    t = os.times()
    return time.perf_counter(), machine, t.user + t.system + t.children_user + t.children_system


def others_cpu_share(start, end, cores: int) -> float:
    """Share of the machine's CPU time that other processes used between two cpu_clock() readings."""
    wall, machine, own = (b - a for a, b in zip(start, end))
    return max(0.0, (machine - own) / (wall * cores))


def sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def fake_cifar(n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
            torch.randint(0, 100, (n,), generator=gen))


# crop + flip: CIFAR's standard; every op: random erasing and cutmix on top (augment.erase_p=0.5 augment.mix=cutmix).
CROP_FLIP = Augment(crop_padding=4, flip=True)
EVERY_OP = Augment(crop_padding=4, flip=True, erase_p=0.5, mix="cutmix", mix_alpha=1.0, num_classes=100)


def lab_loader(images, labels, batch: int, device, channels_last=True, augment=CROP_FLIP) -> DeviceLoader:
    return DeviceLoader(images.to(device), labels.to(device), batch, MEAN, STD, shuffle=True, drop_last=True,
                        augment=augment, seed=0, channels_last=channels_last)


def seed_style_loader(images, labels, batch: int, workers: int, pin: bool):
    """What the lab's scripts did: torchvision CIFAR-style Dataset, PIL transforms per image, DataLoader."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    class SeedStyleCIFAR(torch.utils.data.Dataset):
        def __init__(self):
            self.data = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())  # HWC, like CIFAR100.data
            self.targets = labels.tolist()
            self.transform = transforms.Compose([
                transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                transforms.Normalize(MEAN, STD)])

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return self.transform(Image.fromarray(self.data[i])), self.targets[i]

    return torch.utils.data.DataLoader(SeedStyleCIFAR(), batch_size=batch, shuffle=True, num_workers=workers,
                                       pin_memory=pin, drop_last=True, persistent_workers=False)


def images_per_s(batches, device, n_batches: int, warmup: int = 2) -> float:
    """Throughput of delivering n_batches to the device, after `warmup` batches (worker start-up)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    t0, count = sync(device), 0
    for _ in range(n_batches):
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        count += len(y)
    return count / (sync(device) - t0)


def data_section(device, batch: int, quick: bool) -> dict:
    n = 20_000 if quick else 50_000
    images, labels = fake_cifar(n)
    workers = os.cpu_count()
    lab_batches = n // batch - 3
    lab = images_per_s(lab_loader(images, labels, batch, device), device, lab_batches)
    every_op = images_per_s(lab_loader(images, labels, batch, device, augment=EVERY_OP), device, lab_batches)
    seed_batches = min(40 if quick else 150, n // batch - 3)
    seed = images_per_s(seed_style_loader(images, labels, batch, workers, device.type == "cuda"), device,
                        seed_batches)
    return dict(lab_images_per_s=round(lab), lab_erase_cutmix_images_per_s=round(every_op),
                seed_style_images_per_s=round(seed), workers=workers, batch_size=batch,
                data_speedup=round(lab / seed, 1))
