import torch

from lab.dataset.loader import DeviceLoader, random_crop, random_flip


def make_loader(n=103, batch_size=10, **kwargs):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    labels = torch.arange(n)
    kwargs = dict(shuffle=True, drop_last=True, seed=0, channels_last=False) | kwargs
    return DeviceLoader(images, labels, batch_size, (0.0,) * 3, (1 / 255,) * 3, **kwargs)


def test_epoch_is_a_permutation_and_batches_are_normalised():
    loader = make_loader()
    batches = list(loader)
    assert len(batches) == len(loader) == 10  # 103 // 10, last partial batch dropped
    labels = torch.cat([y for _, y in batches])
    assert len(set(labels.tolist())) == 100
    x, y = batches[0]
    assert x.dtype == torch.float32 and torch.equal(x[:, 0, 0, 0], y.float())  # mean 0, std 1/255 -> raw value


def test_order_depends_only_on_seed_and_epoch():
    epoch = [0]
    a, b = make_loader(epoch_fn=lambda: epoch[0]), make_loader(epoch_fn=lambda: epoch[0])
    first = torch.cat([y for _, y in a])
    assert torch.equal(first, torch.cat([y for _, y in b]))
    epoch[0] = 1
    assert not torch.equal(first, torch.cat([y for _, y in a]))
    assert not torch.equal(first, torch.cat([y for _, y in make_loader(seed=1)]))


def test_ranks_split_one_permutation_without_overlap():
    shards = [torch.cat([y for _, y in make_loader(rank=r, world_size=2, batch_size=5)]) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_ranks_draw_their_own_crops_and_flips():
    # Every image the same, so batches differ only by augmentation: equal batches on two ranks would mean
    # image i of every rank's batch gets the same crop and flip.
    images = torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6).repeat(64, 3, 1, 1)
    kwargs = dict(shuffle=True, drop_last=True, seed=0, channels_last=False, crop_padding=2, flip=True)
    batches = [next(iter(DeviceLoader(images, torch.zeros(64, dtype=torch.long), 16, (0.0,) * 3, (1.0,) * 3,
                                      rank=r, world_size=2, **kwargs)))[0] for r in (0, 1)]
    assert not torch.equal(batches[0], batches[1])


def test_eval_loader_keeps_order_and_last_batch():
    loader = make_loader(shuffle=False, drop_last=False)
    assert torch.equal(torch.cat([y for _, y in loader]), torch.arange(103))


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4).repeat(64, 3, 1, 1)
    crops = random_crop(image, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(image[0, 0], (2, 2, 2, 2))
    windows = {tuple(padded[i:i + 4, j:j + 4].flatten().tolist()) for i in range(5) for j in range(5)}
    seen = {tuple(c[0].flatten().tolist()) for c in crops}
    assert seen <= windows and len(seen) > 5  # valid windows, and not all the same one
    assert all(torch.equal(c[0], c[1]) for c in crops)  # same window for every channel


def test_random_flip_mirrors_about_half():
    image = torch.arange(4, dtype=torch.uint8).view(1, 1, 1, 4).repeat(1000, 1, 1, 1)
    flipped = random_flip(image, torch.Generator().manual_seed(0))
    mirrored = (flipped[:, 0, 0, 0] == 3).float().mean()
    assert 0.4 < mirrored < 0.6
    assert torch.equal(flipped[flipped[:, 0, 0, 0] == 3][0, 0, 0], torch.tensor([3, 2, 1, 0], dtype=torch.uint8))
