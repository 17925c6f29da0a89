"""The data path: uint8 tensors on the training device, batches sliced from a permutation, augmentation as
batched tensor ops. No per-sample __getitem__ and no collate: a PIL pipeline costs ~300 us of core time per
32x32 image (BENCHMARKS.md), which starves a GPU; indexing a resident tensor costs almost nothing."""
import torch
import torch.nn.functional as F


def epoch_seed(seed: int, epoch: int) -> int:
    # Data order and augmentation are a pure function of (seed, epoch): a resumed run replays them exactly.
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


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


class DeviceLoader:
    """Iterable of (normalised float images, int64 labels) batches; len() is batches per epoch.

    `epoch_fn` tells which epoch is starting: the permutation depends only on (seed, epoch) and each batch's
    augmentation only on (seed, epoch, batch). So a run resumed mid-epoch (state_dict/load_state_dict, which
    Lightning stores in the checkpoint) replays exactly the batches it had left. `progress_fn` gives the
    batches already trained this epoch. With world_size > 1 each rank takes every world_size-th index of the
    same permutation.
    """

    def __init__(self, images, labels, batch_size: int, mean, std, *, shuffle: bool, drop_last: bool,
                 crop_padding: int = 0, flip: bool = False, seed: int = 0, epoch_fn=lambda: 0,
                 rank: int = 0, world_size: int = 1, channels_last: bool = True, progress_fn=lambda: 0):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.crop_padding, self.flip = crop_padding, flip
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
            x = self.images[idx]
            if self.crop_padding or self.flip:
                # Each DDP rank draws its own crops and flips; one process (rank 0 of 1) gets batch + 1.
                gen.manual_seed(epoch_seed(self.seed, epoch) + (batch + 1) * self.world_size + self.rank)
            if self.crop_padding:
                x = random_crop(x, self.crop_padding, gen)
            if self.flip:
                x = random_flip(x, gen)
            yield self.normalize(x), self.labels[idx]
