"""CIFAR-10/100 read straight from the official python pickles into uint8 tensors.

torchvision's CIFAR classes verify the official md5 of every file on construction, even with
download=False, so lab reads the pickles itself and uses torchvision only to fetch the archive."""
import pickle
from pathlib import Path

import numpy as np
import torch

from lab.errors import DataError

ARCHIVES = {
    "cifar100": dict(url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                     md5="eb9058c3a382ffc7106e4002c42a8d85", folder="cifar-100-python",
                     train=["train"], test=["test"], meta="meta", label_key=b"fine_labels",
                     names_key=b"fine_label_names"),
    "cifar10": dict(url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    md5="c58f30108f718f92721af3b95e74349a", folder="cifar-10-batches-py",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta", label_key=b"labels", names_key=b"label_names"),
}


def read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def read_split(folder: Path, files: list[str], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        batch = read_pickle(folder / name)
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))  # stored CHW
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def download(spec: dict, data_dir: Path, expected: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(spec["url"], str(data_dir), md5=spec["md5"])
    except Exception as err:  # no network, proxy, bad md5: all end the same way for the user
        raise DataError(f"{expected} not found and downloading {spec['url']} into {data_dir} failed "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); put the "
                        f"unpacked archive there (paths.data_dir or LAB_DATA), or run offline with "
                        f"dataset=digits") from None


def load_cifar(name: str, data_dir: Path) -> dict:
    spec = ARCHIVES[name]
    folder = Path(data_dir) / spec["folder"]
    expected = folder / spec["train"][0]
    if not expected.exists():
        download(spec, Path(data_dir), expected)
    train_images, train_labels = read_split(folder, spec["train"], spec["label_key"])
    test_images, test_labels = read_split(folder, spec["test"], spec["label_key"])
    names = [n.decode() for n in read_pickle(folder / spec["meta"])[spec["names_key"]]]
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, class_names=names)
