import torch

from lab.augment import Augment
from lab.dataset.loader import DeviceLoader


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


def test_ranks_draw_their_own_augmentation():
    # Every image the same, so batches differ only by augmentation: equal batches on two ranks would mean
    # image i of every rank's batch gets the same crop and flip.
    images = torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6).repeat(64, 3, 1, 1)
    kwargs = dict(shuffle=True, drop_last=True, seed=0, channels_last=False,
                  augment=Augment(crop_padding=2, flip=True, erase_p=0.5))
    batches = [next(iter(DeviceLoader(images, torch.zeros(64, dtype=torch.long), 16, (0.0,) * 3, (1.0,) * 3,
                                      rank=r, world_size=2, **kwargs)))[0] for r in (0, 1)]
    assert not torch.equal(batches[0], batches[1])


def test_eval_loader_keeps_order_and_last_batch():
    loader = make_loader(shuffle=False, drop_last=False)
    assert torch.equal(torch.cat([y for _, y in loader]), torch.arange(103))
