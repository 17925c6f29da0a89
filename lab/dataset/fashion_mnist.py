"""dataset=fashion_mnist: Fashion-MNIST (Xiao et al. 2017), 60,000 train / 10,000 test 28x28 grayscale images of
ten kinds of clothing, read from its four idx files into uint8 tensors.

The files are looked for in dataset.root when it is set (Debian's dataset-fashion-mnist installs them in
/usr/share/datasets/fashion-mnist), else in torchvision's layout, <paths.data_dir>/FashionMNIST/raw/, where
torchvision's FashionMNIST downloads them when they are missing. Each file may be gzipped or not. A missing or
damaged file stops the load with its path and how to get it again."""
import gzip
from pathlib import Path

import numpy as np
import torch

from lab.errors import DataError, first_line

SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # idx headers: 0x0803 (uint8, 3 dims), 0x0801 (uint8, 1 dim)
SIDE = 28
DEBIAN_FOLDER = "/usr/share/datasets/fashion-mnist"
APT = (f"apt-get install dataset-fashion-mnist puts the four files in {DEBIAN_FOLDER}: pass "
       f"dataset.root={DEBIAN_FOLDER}")
GET_IT = f"{APT}, or leave dataset.root unset to download torchvision's copy into paths.data_dir"
REPLACE_IT = ("reinstall it (apt-get install --reinstall dataset-fashion-mnist) if it is the package's file, or delete "
              "it and run again without dataset.root to download torchvision's copy")


def class_names() -> list[str]:
    from torchvision.datasets import FashionMNIST

    return list(FashionMNIST.classes)  # 'T-shirt/top', 'Trouser', ..., 'Ankle boot': label order


def find_file(folder: Path, stem: str) -> Path:
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            return path
    raise DataError(f"{folder / (stem + '.gz')} is missing (nor is it there unzipped): {GET_IT}")


def read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """The uint8 array of one idx file, its header checked against `magic` and its length against the header."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path} cannot be read ({type(err).__name__}: {err}): the file is damaged; "
                        f"{REPLACE_IT}") from None
    header = 4 * (1 + dims)
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic or len(raw) < header:
        raise DataError(f"{path} is not a Fashion-MNIST idx file (header {found}, expected {magic}): the file is "
                        f"damaged or another file; {REPLACE_IT}")
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{path} holds {len(raw) - header} bytes of data where its header promises "
                        f"{int(np.prod(shape))} ({' x '.join(map(str, shape))}): the file is truncated; {REPLACE_IT}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_split(folder: Path, split: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 1, 28, 28] images and int64 [N] labels of one split."""
    images_stem, labels_stem = SPLITS[split]
    images = read_idx(find_file(folder, images_stem), IMAGES_MAGIC, 3)
    labels_path = find_file(folder, labels_stem)
    labels = read_idx(labels_path, LABELS_MAGIC, 1)
    if images.shape[1:] != (SIDE, SIDE) or len(images) != len(labels):
        raise DataError(f"{folder}: the {split} files hold {len(images)} images of {images.shape[1:]} pixels and "
                        f"{len(labels)} labels, not one label per 28x28 image; {REPLACE_IT}")
    if len(labels) and labels.max() >= num_classes:
        raise DataError(f"{labels_path} has labels up to {labels.max()}, outside 0..{num_classes - 1}; {REPLACE_IT}")
    # np.frombuffer views read-only bytes: copy into tensors torch may write to.
    return torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64))


def download(data_dir: Path) -> Path:
    """torchvision's FashionMNIST files in <data_dir>/FashionMNIST/raw, downloaded there when missing."""
    from torchvision.datasets import FashionMNIST

    folder = data_dir / "FashionMNIST" / "raw"
    if all(any((folder / f"{stem}{ext}").is_file() for ext in ("", ".gz")) for pair in SPLITS.values()
           for stem in pair):
        return folder
    try:
        FashionMNIST(str(data_dir), train=True, download=True)
    except Exception as err:  # no network, proxy, bad md5: all end the same way for the user
        reason = first_line(err)[:160]
        raise DataError(f"Fashion-MNIST is not in {folder} and downloading it there failed ({reason}); "
                        f"{APT}, or put the four files there") from None
    return folder


def load_fashion_mnist(cfg, data_dir: Path) -> dict:
    if cfg.get("root"):
        folder = Path(str(cfg.root)).expanduser().absolute()
        if not folder.is_dir():
            raise DataError(f"dataset.root={cfg.root}: {folder} is not a folder; {GET_IT}")
    else:
        folder = download(Path(data_dir))
    names = class_names()
    train_images, train_labels = read_split(folder, "train", len(names))
    test_images, test_labels = read_split(folder, "test", len(names))
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, class_names=names)
