"""Will a dataset fit where lab keeps it? Every image lives as uint8 on the training device, so a folder of
100k images at image_size=224 (15 GB) is refused before decoding, with the image_size that would fit.
A leaf: the loaders import it, it imports nothing of theirs."""
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lab.errors import DataError


@dataclass(frozen=True)
class MemoryBudget:
    """How many bytes of images the training device can hold, and where that number comes from."""
    bytes: int
    where: str


def host_available_bytes() -> int | None:
    """MemAvailable (free RAM plus the page cache the kernel can drop), else free pages; None if unknown."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the line is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget(on_cuda: bool = False) -> MemoryBudget | None:
    """The GPU's free memory, or half the host's available RAM: on the host, the test split of a folder without
    one and split_validation each copy the images once more for a moment. None when the host does not say."""
    if on_cuda:
        free_bytes, _ = torch.cuda.mem_get_info()
        gpu = torch.cuda.current_device()
        return MemoryBudget(free_bytes, f"free memory of GPU {gpu}, {torch.cuda.get_device_name(gpu)}")
    available = host_available_bytes()
    return MemoryBudget(available // 2, "half the host's available RAM") if available else None


def images_bytes(n_images: int, channels: int, image_size: int) -> int:
    return n_images * channels * image_size * image_size  # uint8: one byte a pixel and channel


def readable_size(n_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def check_fits(n_images: int, channels: int, image_size: int, budget: MemoryBudget | None, where: Path) -> None:
    """Refuse, before the first image is decoded, a dataset the device cannot hold (it would crash later)."""
    needed = images_bytes(n_images, channels, image_size)
    if budget is None or needed <= budget.bytes:
        return
    largest = math.isqrt(budget.bytes // max(n_images * channels, 1))
    fix = f"set dataset.image_size={largest} or smaller, or use" if largest >= 1 else "use"
    raise DataError(f"{n_images} images under {where} at dataset.image_size={image_size} need "
                    f"{readable_size(needed)} ({n_images} x {channels} x {image_size}x{image_size} uint8), more than "
                    f"the {readable_size(budget.bytes)} there is room for ({budget.where}): {fix} fewer images")
