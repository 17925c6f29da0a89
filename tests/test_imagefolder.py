"""dataset=imagefolder (and gtsrb's download failure): tensors, class order, cache, and messy-data errors."""
import logging
import os

import pytest
import torch
from omegaconf import OmegaConf

import lab.dataset.imagefolder as imagefolder
from lab.config import validate
from lab.dataset import load_dataset
from lab.errors import ConfigError, DataError
from tests.conftest import CONF, compose
from tests.images import COLOURS, colour_folder, corrupt


def folder_cfg(root, **overrides):
    cfg = OmegaConf.load(CONF / "dataset" / "imagefolder.yaml")
    cfg.root, cfg.num_workers = str(root), 0
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.fixture
def colours(tmp_path):
    """3 colour classes, 6 train / 2 test images each, mixed formats and modes (L, RGBA, P, CMYK)."""
    colour_folder(tmp_path / "images", {"train_dataset": 6, "test_dataset": 2})
    return tmp_path / "images"


def load(root, data_dir, **overrides):
    return load_dataset(folder_cfg(root, **overrides), data_dir)


def test_loads_uint8_tensors_with_sorted_classes(colours, tmp_path):
    data = load(colours, tmp_path / "data", image_size=16)
    assert data.class_names == sorted(COLOURS)
    assert data.train_images.shape == (18, 3, 16, 16) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (6, 3, 16, 16) and data.test_labels.dtype == torch.int64
    assert data.train_labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    # Every image's strongest channel is its class's colour; the grayscale one (first of class 0) is grey.
    for images, labels in ((data.train_images[1:], data.train_labels[1:]), (data.test_images, data.test_labels)):
        colour = torch.tensor([COLOURS[data.class_names[i]] for i in labels.tolist()])
        assert (images.float().mean((2, 3)).argmax(1) == colour.argmax(1)).all()
    grey = data.train_images[0].float().mean((1, 2))
    assert (grey - grey.mean()).abs().max() < 1
    assert data.mean != (0.5071, 0.4865, 0.4409) and len(data.mean) == 3  # from these images, not CIFAR's


def test_no_test_folder_splits_every_class_the_same_way(tmp_path):
    colour_folder(tmp_path / "images", {"train_dataset": 10})
    data = load(tmp_path / "images", tmp_path / "data", test_split=0.3)
    assert torch.bincount(data.test_labels).tolist() == [3, 3, 3]
    assert torch.bincount(data.train_labels).tolist() == [7, 7, 7]
    again = load(tmp_path / "images", tmp_path / "other_data", test_split=0.3)  # decoded afresh
    assert torch.equal(again.test_images, data.test_images)


def test_numeric_class_folders_sort_by_value(tmp_path):
    names = {str(i): (20 * i, 10, 10) for i in (0, 1, 2, 10, 11)}
    colour_folder(tmp_path / "images", {"train_dataset": 2}, classes=names)
    data = load(tmp_path / "images", tmp_path / "data", image_size=8)
    assert data.class_names == ["0", "1", "2", "10", "11"]  # not 0, 1, 10, 11, 2
    red = data.train_images[:, 0].float().mean((1, 2))
    assert (red[data.train_labels == 3].mean() - 200).abs() < 10  # folder "10" holds label 3's images


def test_threaded_decoding_gives_the_same_tensors(colours, monkeypatch):
    files = sorted(colours.rglob("*.*"))
    serial, bad = imagefolder.decode_files(files, 8, num_workers=0)
    monkeypatch.setattr(imagefolder, "PROBE_FILES", 2)
    monkeypatch.setattr(imagefolder, "THREADS_FROM_S", 0.0)  # every image counts as large: threads
    threaded, bad_threaded = imagefolder.decode_files(files, 8, num_workers=3)
    assert torch.equal(serial, threaded) and bad == bad_threaded == []


def count_opens(monkeypatch) -> list:
    opened, real_open = [], imagefolder.Image.open
    monkeypatch.setattr(imagefolder.Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    return opened


def test_second_load_reads_the_cache_without_decoding(colours, tmp_path, monkeypatch):
    first = load(colours, tmp_path / "data")
    assert len(list((tmp_path / "data" / "cache").glob("imagefolder-*.pt"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("decoded an image on a cache hit")

    monkeypatch.setattr(imagefolder.Image, "open", refuse)
    second = load(colours, tmp_path / "data")
    assert torch.equal(first.train_images, second.train_images) and first.mean == second.mean
    assert second.class_names == first.class_names


@pytest.mark.parametrize("change", ["touch", "modify", "add", "remove"])
def test_changed_files_invalidate_the_cache(colours, tmp_path, monkeypatch, change):
    load(colours, tmp_path / "data")
    target = colours / "train_dataset" / "green" / "0.png"
    if change == "touch":
        os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    elif change == "modify":
        target.write_bytes((colours / "train_dataset" / "red" / "0.png").read_bytes())
    elif change == "add":
        target.with_name("extra.png").write_bytes(target.read_bytes())
    else:
        target.unlink()
    opened = count_opens(monkeypatch)
    data = load(colours, tmp_path / "data")
    assert len(opened) == len(data.train_labels) + len(data.test_labels)
    assert len(data.train_labels) == {"add": 19, "remove": 17}.get(change, 18)


def test_unreadable_files_are_listed_with_the_fix(colours, tmp_path):
    corrupt(colours / "train_dataset" / "red" / "truncated.png")
    (colours / "test_dataset" / "blue" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as err:
        load(colours, tmp_path / "data")
    message = str(err.value)
    assert "2 file(s)" in message and "skip_bad_files=true" in message and "\n" not in message
    assert "train_dataset/red/truncated.png" in message and "test_dataset/blue/notes.txt" in message


def test_skip_bad_files_skips_and_counts(colours, tmp_path, caplog):
    for i in range(7):
        corrupt(colours / "train_dataset" / "red" / f"bad{i}.png")
    with caplog.at_level(logging.WARNING, logger="lab"):
        data = load(colours, tmp_path / "data", skip_bad_files=True)
    assert len(data.train_labels) == 18
    assert "skipped 7 unreadable file(s)" in caplog.text and "and 2 more" in caplog.text
    with pytest.raises(DataError, match="7 file"):  # the cache from the skipping run does not hide them
        load(colours, tmp_path / "data")


def test_empty_class_folder_is_an_error(colours, tmp_path):
    (colours / "train_dataset" / "yellow").mkdir()
    (colours / "test_dataset" / "yellow").mkdir()
    with pytest.raises(DataError, match=r"2 empty class folder.*train_dataset/yellow.*test_dataset/yellow"):
        load(colours, tmp_path / "data")


def test_train_and_test_with_different_classes_is_an_error(colours, tmp_path):
    (colours / "test_dataset" / "red").rename(colours / "test_dataset" / "rouge")
    with pytest.raises(DataError, match=r"only in train: \['red'\]; only in test: \['rouge'\]"):
        load(colours, tmp_path / "data")


def test_a_one_class_folder_is_refused_before_any_image_is_decoded(tmp_path, monkeypatch):
    colour_folder(tmp_path / "one", {"train_dataset": 3}, classes={"red": COLOURS["red"]})
    monkeypatch.setattr(imagefolder, "decode_files", lambda *a: pytest.fail("decoded a one-class folder"))
    with pytest.raises(DataError, match="one class folder") as caught:
        load(tmp_path / "one", tmp_path / "data")
    assert "red" in str(caught.value) and "at least two classes" in str(caught.value)


def test_decoding_a_folder_raises_no_warning(colours, tmp_path):
    """PyTorch warns about read-only NumPy arrays; lab's own decoding gives it none to warn about."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load(colours, tmp_path / "data").train_labels) == 18


def test_missing_root_and_unset_root_are_errors(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nowhere")):
        load(tmp_path / "nowhere", tmp_path / "data")
    with pytest.raises(ConfigError, match=r"dataset\.root=None.*dataset\.root=PATH"):
        validate(compose(["dataset=imagefolder"]))
    validate(compose(["dataset=digits"]))  # only a folder dataset needs a root


def test_config_defaults_keep_mirror_images_apart():
    cfg = compose(["dataset=imagefolder"])
    assert cfg.augment.flip is False and cfg.augment.crop_padding == 0
    assert cfg.dataset.mean is None and cfg.dataset.image_size == 32
    cifar = compose(["dataset=cifar100"]).dataset
    assert set(cifar) - {"name"} <= set(cfg.dataset)
    assert set(compose(["dataset=gtsrb"]).dataset) >= set(cifar)


def test_traffic_signs_experiment_is_the_labs_setting():
    cfg = compose(["+experiment=traffic_signs", "dataset.root=/somewhere"])
    assert (cfg.dataset.name, cfg.dataset.root, cfg.dataset.image_size) == ("imagefolder", "/somewhere", 32)
    # batch 64, not the lab's 256: a few hundred images must make 10+ steps an epoch (tests/test_stability.py)
    assert (cfg.dataset.batch_size, cfg.trainer.max_epochs, cfg.optimizer.lr) == (64, 50, 0.03)
    assert cfg.model.layers == [1, 1, 1, 1] and cfg.optimizer._target_ == "torch.optim.SGD"
    assert not cfg.augment.flip and cfg.augment.crop_padding == 0


def test_gtsrb_download_failure_is_one_line(tmp_path, monkeypatch):
    import torchvision.datasets.gtsrb

    def no_network(url, *args, **kwargs):
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> {url}")

    monkeypatch.setattr(torchvision.datasets.gtsrb, "download_and_extract_archive", no_network)
    cfg = OmegaConf.load(CONF / "dataset" / "gtsrb.yaml")
    with pytest.raises(DataError) as err:
        load_dataset(cfg, tmp_path / "data")
    message = str(err.value)
    assert str(tmp_path / "data") in message and "\n" not in message
    assert "dataset=imagefolder" in message and "dataset=digits" in message


def write_gtsrb(root, tracks=3, frames=4):
    """torchvision's GTSRB layout, every class: Training/CLASS/TRACK_FRAME.ppm in one flat colour per track
    (red = class, green = track), and a two-image test split with its ClassId CSV."""
    from PIL import Image

    base = root / "gtsrb" / "GTSRB"
    for label in range(43):
        for track in range(tracks):
            folder = base / "Training" / f"{label:05d}"
            folder.mkdir(parents=True, exist_ok=True)
            for frame in range(frames):
                Image.new("RGB", (8, 8), (label * 5, track * 50, frame)).save(folder / f"{track:05d}_{frame:05d}.ppm")
    (base / "Final_Test" / "Images").mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (8, 8), (i * 5, 0, 0)).save(base / "Final_Test" / "Images" / f"{i:05d}.ppm")
    (root / "gtsrb" / "GT-final_test.csv").write_text("Filename;ClassId\n00000.ppm;0\n00001.ppm;1\n")


def test_gtsrb_validation_holds_out_whole_tracks(tmp_path):
    from lab.dataset import split_validation

    write_gtsrb(tmp_path / "data")
    cfg = OmegaConf.load(CONF / "dataset" / "gtsrb.yaml")
    cfg.image_size, cfg.num_workers = 8, 0
    data = split_validation(load_dataset(cfg, tmp_path / "data"), 0.1, seed=3)
    assert len(data.train_labels) == 43 * 12 - len(data.val_labels) and len(data.test_labels) == 2

    def tracks(images):  # (class, track) of each image, read back from its colour
        return {(int(r) // 5, int(g) // 50) for r, g in images[:, :2, 0, 0].tolist()}

    held_out = tracks(data.val_images)
    assert len(data.val_labels) == 4 * len(held_out) >= round(0.1 * 43 * 12)  # whole tracks, enough of them
    assert not held_out & tracks(data.train_images)


def test_few_groups_fall_back_to_a_plain_split():
    from lab.dataset import group_split

    train, val = group_split(torch.zeros(20, dtype=torch.long), 4, seed=0)  # one group: it cannot be split
    assert len(val) == 4 and len(train) == 16
