"""conf/augment's ops (lab/augment.py): what each does to a batch, and that each draw is a function of the batch's
seed alone (a resumed run replays it; tests/test_reliability.py checks that end to end, tests/test_sync.py that no
op waits for the device)."""
import numpy as np
import pytest
import torch

from lab.augment import Augment, mix, random_crop, random_erase, random_flip
from lab.dataset.loader import DeviceLoader
from tests.conftest import compose


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


def test_random_erasing_puts_one_box_of_the_papers_size_in_about_p_of_the_images():
    images = torch.full((2000, 2, 32, 32), 7.0)  # 7: far from any N(0, 1) noise value
    erased = random_erase(images, 0.5, torch.Generator().manual_seed(0)) != 7.0
    hit = erased.flatten(1).any(1)
    assert 0.45 < hit.float().mean() < 0.55
    boxes = erased[hit][:, 0]
    assert torch.equal(erased[hit][:, 1], boxes)  # one box through every channel
    area = boxes.flatten(1).float().mean(1)
    # Zhong et al.'s 2-40% of the image, less where a box is clipped to the image, more by rounding to whole pixels.
    assert area.min() > 0 and area.max() <= 0.45 and 0.12 < area.mean() < 0.25
    rows, cols = boxes.any(2), boxes.any(1)  # a box: its rows x its columns, nothing outside them
    assert torch.equal(boxes, rows[:, :, None] & cols[:, None, :])
    assert torch.equal(random_erase(images, 0.0, torch.Generator().manual_seed(0)), images)


def test_mixup_blends_each_image_with_its_partner_and_the_targets_alike():
    images = torch.rand(6, 1, 4, 4)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    mixed, targets = mix(images, labels, 6, "mixup", 1.0, np.random.default_rng(3))
    lam = float(targets[0, 0])
    assert 0 < lam < 1 and torch.allclose(targets.sum(1), torch.ones(6))
    assert torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0))
    assert targets[0, 5] == pytest.approx(1 - lam)  # image 0's partner is the last one


def test_cutmix_pastes_a_box_of_the_partner_and_weights_targets_by_its_area():
    images = torch.zeros(4, 1, 16, 16)
    images[2:] = 1.0  # the second half is the partner of the first
    labels = torch.tensor([0, 0, 1, 1])
    for seed in range(20):
        mixed, targets = mix(images, labels, 2, "cutmix", 1.0, np.random.default_rng(seed))
        pasted = float(mixed[0].mean())  # the share of image 0 that came from its partner (ones)
        assert targets[0].tolist() == pytest.approx([1 - pasted, pasted])
        assert torch.equal(mixed[3], 1 - mixed[0])  # the same box, the other way round


def test_an_augmented_epoch_is_a_function_of_seed_and_epoch():
    images = torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(96) % 4
    augment = Augment(crop_padding=2, flip=True, erase_p=0.5, mix="cutmix", mix_alpha=1.0, num_classes=4)

    def epoch(seed):
        loader = DeviceLoader(images, labels, 32, (0.5,), (0.25,), shuffle=True, drop_last=True, seed=seed,
                              channels_last=False, augment=augment)
        return list(loader)

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])
    assert first[0][1].shape == (32, 4)  # mixed batches carry soft targets


def test_the_default_augment_follows_the_dataset_and_turns_the_rest_off():
    for dataset, crop, flip in (("cifar100", 4, True), ("digits", 1, False), ("fashion_mnist", 2, True)):
        cfg = compose([f"dataset={dataset}"]).augment
        assert (cfg.crop_padding, cfg.flip, cfg.erase_p, cfg.mix) == (crop, flip, 0.0, "none")
    cfg = compose(["dataset=digits", "augment.crop_padding=3", "augment=none"]).augment
    assert (cfg.crop_padding, cfg.flip) == (3, False)  # a key on the command line wins over the option's
