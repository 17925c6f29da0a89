"""conf/augment/: training-time augmentation as batched tensor ops on the training device, one `Augment` object
that the loader applies to each training batch.

Every random draw comes from the batch's generator, seeded by (seed, epoch, batch) in lab/dataset/loader.py, so a run
resumed mid-epoch replays exactly the batches it had left. Nothing here waits for the device: no .item(), no
boolean-mask indexing; the mixing weight and the CutMix box are drawn on the host from the same seed (numpy), so
they reach the kernels as Python numbers. tests/test_sync.py runs every op under its recorders."""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MIXES = ("none", "mixup", "cutmix")
# Random erasing's box (Zhong et al. 2020): an area of 2-40% of the image, aspect ratio 0.3-3.3 (log-uniform).
ERASE_AREA = (0.02, 0.4)
ERASE_LOG_RATIO = (float(np.log(0.3)), float(np.log(1 / 0.3)))


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` and take a random HxW window per image (torchvision RandomCrop(padding=p)).

    unfold gives a view of every window, [N, C, 2p+1, 2p+1, H, W], so picking one per image is a single
    gather: 2.7x faster on CPU than building per-pixel int64 index tensors."""
    n, c, h, w = images.shape
    windows = F.pad(images, (padding, padding, padding, padding)).unfold(2, h, 1).unfold(3, w, 1)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    return windows[torch.arange(n, device=images.device), :, dy, dx]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch. One torch.where over a per-image mask: indexing with the boolean
    mask (images[flip]) needs its count of True values on the host, a CPU-GPU sync on every batch."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


def random_erase(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020) on normalised images: each image with probability p gets one box of
    ERASE_AREA of its area and a log-uniform aspect ratio filled with N(0, 1) noise (random pixel values in
    normalised units). The box is drawn once and clipped to the image, where the paper redraws until one fits."""
    n, c, h, w = images.shape
    dev = images.device
    u = torch.rand(n, 5, device=dev, generator=generator)
    area = (ERASE_AREA[0] + u[:, 0] * (ERASE_AREA[1] - ERASE_AREA[0])) * h * w
    ratio = torch.exp(ERASE_LOG_RATIO[0] + u[:, 1] * (ERASE_LOG_RATIO[1] - ERASE_LOG_RATIO[0]))
    box_h, box_w = (area * ratio).sqrt().clamp(max=h), (area / ratio).sqrt().clamp(max=w)
    top, left = u[:, 2] * (h - box_h), u[:, 3] * (w - box_w)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + box_h).view(-1, 1, 1))
              & (cols >= left.view(-1, 1, 1)) & (cols < (left + box_w).view(-1, 1, 1)))
    erased = inside & (u[:, 4] < p).view(-1, 1, 1)
    noise = torch.randn(images.shape, device=dev, generator=generator, dtype=images.dtype)
    return torch.where(erased.unsqueeze(1), noise, images)


def flip_averaged(net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """test_tta=flip: the mean logits of each image and its mirror (in test and lab.eval)."""
    return (net(images) + net(images.flip(3))) / 2


def one_hot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    # F.one_hot checks labels.max() on the host (a sync on every call); scatter_ trusts our own labels.
    return torch.zeros(len(labels), num_classes, device=labels.device, dtype=dtype).scatter_(1, labels[:, None], 1.0)


def mix(images: torch.Tensor, labels: torch.Tensor, num_classes: int, kind: str, alpha: float,
        rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) of each image with its partner in the reversed batch
    (the batch order is already random), with one weight lam ~ Beta(alpha, alpha) a batch. -> (images, soft targets
    [N, num_classes]: lam of the image's own class, 1 - lam of its partner's)."""
    lam = float(rng.beta(alpha, alpha))
    partner = images.flip(0)
    if kind == "mixup":
        images = images * lam + partner * (1 - lam)
    else:  # cutmix: a box of area 1 - lam from the partner, clipped to the image; lam follows the box kept
        h, w = images.shape[-2:]
        cut = np.sqrt(1 - lam)
        cy, cx = rng.integers(h), rng.integers(w)
        top, bottom = int(np.clip(cy - h * cut / 2, 0, h)), int(np.clip(cy + h * cut / 2, 0, h))
        left, right = int(np.clip(cx - w * cut / 2, 0, w)), int(np.clip(cx + w * cut / 2, 0, w))
        images = images.clone()
        images[:, :, top:bottom, left:right] = partner[:, :, top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (h * w)
    targets = one_hot(labels, num_classes)
    return images, targets * lam + targets.flip(0) * (1 - lam)


@dataclass(frozen=True)
class Augment:
    """conf/augment's keys: crop_padding and flip act on the uint8 images, erase_p and mix on the normalised ones."""
    crop_padding: int = 0
    flip: bool = False
    erase_p: float = 0.0
    mix: str = "none"
    mix_alpha: float = 1.0
    mix_p: float = 1.0
    num_classes: int = 0  # the soft targets' width (mix only)

    @property
    def draws(self) -> bool:
        return bool(self.crop_padding or self.flip or self.erase_p or self.mix != "none")

    def __call__(self, images_uint8: torch.Tensor, labels: torch.Tensor, normalize, generator: torch.Generator,
                 batch_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (normalised images, targets): int64 labels, or soft targets [N, num_classes] when the batch was mixed."""
        x = images_uint8
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = random_flip(x, generator)
        x = normalize(x)
        if self.erase_p:
            x = random_erase(x, self.erase_p, generator)
        if self.mix != "none":
            rng = np.random.default_rng(batch_seed)
            if rng.random() < self.mix_p:
                return mix(x, labels, self.num_classes, self.mix, self.mix_alpha, rng)
        return x, labels


def build_augment(cfg, num_classes: int) -> Augment:
    """The Augment of a conf/augment node."""
    return Augment(crop_padding=int(cfg.get("crop_padding") or 0), flip=bool(cfg.get("flip")),
                   erase_p=float(cfg.get("erase_p") or 0.0), mix=cfg.get("mix") or "none",
                   mix_alpha=float(cfg.get("mix_alpha") or 1.0), mix_p=float(cfg.get("mix_p", 1.0)),
                   num_classes=num_classes)
