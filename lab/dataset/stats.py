"""Per-channel image statistics, shared by the dataset loaders (a leaf: the loaders import it, it imports none)."""
import torch


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
