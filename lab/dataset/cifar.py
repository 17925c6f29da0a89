"""CIFAR-10/100 read straight from the official python pickles into uint8 tensors.

torchvision's CIFAR classes verify the official md5 of every file on construction, even with
download=False, so lab reads the pickles itself and uses torchvision only to fetch the archive. The md5 is
checked only on download, so a file damaged later (a killed unpack, a disk error, an edit) is caught here,
by what it holds, with the folder to delete in the message."""
import pickle
from pathlib import Path

import numpy as np
import torch

from lab.errors import DataError, first_line

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
IMAGE_BYTES = 3 * 32 * 32  # one row of b"data": the red, green and blue 32x32 planes


def damaged(path: Path, problem: str) -> DataError:
    return DataError(f"{path} {problem}: the CIFAR files are damaged or incomplete; delete {path.parent} and "
                     f"the next run downloads them again")


def read_pickle(path: Path, keys: list[bytes]) -> dict:
    """The pickled dict in path, which must hold `keys`."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise damaged(path, "is missing") from None
    except Exception as err:  # garbage, a truncated file, a pickle of something else: all "cannot be read"
        reason = first_line(err)[:120]
        raise damaged(path, f"cannot be read as a CIFAR pickle ({type(err).__name__}: {reason})") from None
    missing = [key for key in keys if not isinstance(batch, dict) or key not in batch]
    if missing:
        raise damaged(path, f"has no {' or '.join(map(repr, missing))} entry")
    return batch


def read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 3, 32, 32] images (stored as CHW rows) and int64 [N] labels of one pickle."""
    batch = read_pickle(path, [b"data", label_key])
    try:
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
    except ValueError:  # a ragged list: no array at all
        raise damaged(path, "holds data that is not an array of rows") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES or labels.shape != data.shape[:1]:
        raise damaged(path, f"holds {data.dtype} data of shape {data.shape} with {labels.size} labels, not N "
                            f"uint8 rows of {IMAGE_BYTES} bytes with N labels")
    if labels.dtype.kind not in "iu" or (labels.size and not 0 <= labels.min() <= labels.max() < num_classes):
        raise damaged(path, f"has labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_split(folder: Path, files: list[str], label_key: bytes, num_classes: int):
    batches = [read_batch(folder / name, label_key, num_classes) for name in files]
    return (torch.from_numpy(np.concatenate([images for images, _ in batches])),
            torch.from_numpy(np.concatenate([labels for _, labels in batches])))


def download(spec: dict, data_dir: Path, expected: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(spec["url"], str(data_dir), md5=spec["md5"])
    except Exception as err:  # no network, proxy, bad md5: all end the same way for the user
        raise DataError(f"{expected} not found and downloading {spec['url']} into {data_dir} failed "
                        f"({type(err).__name__}: {first_line(err)}); put the "
                        f"unpacked archive there (paths.data_dir or LAB_DATA), or run offline with "
                        f"dataset=digits") from None


def load_cifar(name: str, data_dir: Path) -> dict:
    spec = ARCHIVES[name]
    folder = Path(data_dir) / spec["folder"]
    expected = folder / spec["train"][0]
    if not expected.exists():
        download(spec, Path(data_dir), expected)
    meta = read_pickle(folder / spec["meta"], [spec["names_key"]])[spec["names_key"]]
    if not isinstance(meta, (list, tuple)) or not meta:
        raise damaged(folder / spec["meta"], "holds no list of class names")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta]
    train_images, train_labels = read_split(folder, spec["train"], spec["label_key"], len(names))
    test_images, test_labels = read_split(folder, spec["test"], spec["label_key"], len(names))
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, class_names=names)
