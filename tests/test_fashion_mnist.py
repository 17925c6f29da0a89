"""dataset=fashion_mnist: the four idx files read from dataset.root (Debian's package) or torchvision's layout,
a fixed class-balanced training subset, and one clear line for a missing or damaged file. The tests write small
idx files in the real format; a slow test reads the real data set where Debian's package is installed."""
import gzip
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from lab.dataset import load_dataset
from lab.errors import DataError
from tests.conftest import TINY, results, run_train

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(folder: Path, n_train: int = 200, n_test: int = 50, gz: bool = True) -> Path:
    """Images whose brightness band tells the class (learnable), in idx format like the real files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label: 2 * label + 4] += 200
        for stem, data, magic in ((f"{prefix}-images-idx3-ubyte", images, 2051),
                                  (f"{prefix}-labels-idx1-ubyte", labels, 2049)):
            raw = idx_bytes(data, magic)
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / stem).write_bytes(raw)
    return folder


def config(root, **extra):
    return OmegaConf.create(dict(dict(name="fashion_mnist", root=str(root), train_subset=None, mean=None, std=None),
                                 **extra))


def test_the_idx_files_load_as_28x28_uint8_images_with_the_datasets_class_names(tmp_path):
    data = load_dataset(config(write_fashion_mnist(tmp_path / "fm")), tmp_path)
    assert tuple(data.train_images.shape) == (200, 1, 28, 28) and data.train_images.dtype.is_floating_point is False
    assert tuple(data.test_images.shape) == (50, 1, 28, 28)
    assert data.train_labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert data.class_names[0] == "T-shirt/top" and data.class_names[-1] == "Ankle boot" and data.num_classes == 10
    unzipped = load_dataset(config(write_fashion_mnist(tmp_path / "plain", gz=False)), tmp_path)
    assert (unzipped.train_images == data.train_images).all()


def test_a_training_subset_is_class_balanced_and_the_same_every_time(tmp_path):
    root = write_fashion_mnist(tmp_path / "fm")
    first = load_dataset(config(root, train_subset=55), tmp_path)
    again = load_dataset(config(root, train_subset=55), tmp_path)
    counts = first.train_labels.bincount(minlength=10)
    assert len(first.train_labels) == 55 and counts.max() - counts.min() <= 1
    assert (first.train_images == again.train_images).all() and len(first.test_labels) == 50  # test set whole
    with pytest.raises(DataError, match="train_subset=500 but fashion_mnist has 200"):
        load_dataset(config(root, train_subset=500), tmp_path)


@pytest.mark.parametrize("damage, says", [("missing", "is missing"), ("truncated", "truncated"),
                                          ("garbage", "not a Fashion-MNIST idx file")])
def test_a_missing_or_damaged_file_is_named_with_how_to_get_it(tmp_path, damage, says):
    root = write_fashion_mnist(tmp_path / "fm")
    target = root / "t10k-labels-idx1-ubyte.gz"
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(gzip.compress(gzip.decompress(target.read_bytes())[:-7]))
    else:
        target.write_bytes(gzip.compress(b"not an idx file at all"))
    with pytest.raises(DataError) as caught:
        load_dataset(config(root), tmp_path)
    message = str(caught.value)
    assert "t10k-labels-idx1-ubyte" in message and says in message
    assert "dataset-fashion-mnist" in message  # how to get the file again


def test_lab_train_reads_a_fashion_mnist_folder(tmp_path):
    root = write_fashion_mnist(tmp_path / "fm", n_train=400, n_test=100)
    run_dir = tmp_path / "run"
    proc = run_train("dataset=fashion_mnist", f"dataset.root={root}", "trainer.max_epochs=2", "dataset.batch_size=32",
                     *TINY, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = results(run_dir)
    assert record["status"] == "ok" and record["num_classes"] == 10 and record["test_images"] == 100
    assert list(record["per_class_acc"])[:2] == ["T-shirt/top", "Trouser"]


def test_a_root_that_is_not_a_folder_is_named_with_how_to_get_the_files(tmp_path):
    with pytest.raises(DataError) as caught:
        load_dataset(config(tmp_path / "nowhere"), tmp_path)
    assert str(tmp_path / "nowhere") in str(caught.value) and "dataset-fashion-mnist" in str(caught.value)


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed here "
                                                "(apt-get install dataset-fashion-mnist)")
def test_the_real_fashion_mnist_trains_from_debians_files(tmp_path):
    data = load_dataset(config(DEBIAN), tmp_path)
    assert len(data.train_labels) == 60_000 and len(data.test_labels) == 10_000
    assert data.train_labels.bincount().tolist() == [6000] * 10
    assert data.mean == pytest.approx((0.2860,), abs=1e-3) and data.std == pytest.approx((0.3530,), abs=1e-3)
    run_dir = tmp_path / "run"
    proc = run_train("dataset=fashion_mnist", f"dataset.root={DEBIAN}", "dataset.train_subset=6000",
                     "model.base_width=16", "trainer.max_epochs=3", "dataset.batch_size=64", "trainer.accelerator=cpu",
                     f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert results(run_dir)["test_acc"] > 0.65  # 3 epochs of a 16-wide ResNet10 on 5,400 images: 0.76-0.80
