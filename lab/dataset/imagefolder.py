"""dataset=imagefolder: your own images as root/train_dataset/<class>/* (and root/test_dataset/<class>/*),
decoded once into uint8 tensors and cached in <paths.data_dir>/cache.

Messy data stops the load with the offending paths in the message, never a silent label shift: a missing
root, an empty class folder, train and test with different classes, or a file Pillow cannot read
(dataset.skip_bad_files=true skips unreadable files with a warning instead). gtsrb.py reuses the decoding
and the cache; lab.predict reuses decode_image, so a single image gets the same preprocessing."""
import logging
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from lab.dataset.cache import cache_file, read_cache, write_cache
from lab.dataset.memory import MemoryBudget, check_fits
from lab.errors import DataError

log = logging.getLogger("lab")
SHOWN_PATHS = 5  # paths named in one error line; the rest are counted
SPLIT_SEED = 0  # the held-out test split is the same for every run and every training seed
PROBE_FILES = 64  # decoded and timed in the calling thread before deciding on threads (decode_files)
THREADS_FROM_S = 0.5e-3  # median decode time per image above which threads help


def describe(paths: list, root: Path) -> str:
    """'a/x.png, a/y.png and 3 more', relative to root so the line stays readable."""
    names = [str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else str(p) for p in paths]
    more = f" and {len(names) - SHOWN_PATHS} more" if len(names) > SHOWN_PATHS else ""
    return ", ".join(names[:SHOWN_PATHS]) + more


def sort_class_names(names: list[str]) -> list[str]:
    # Folders 0..42 (GTSRB's ClassIds) sorted as strings give 0, 1, 10, 11, ...: the class index would not
    # be the folder's number. When every name is an integer, sort by value instead.
    if names and all(re.fullmatch(r"\d+", name) for name in names):
        return sorted(names, key=int)
    return sorted(names)


def hidden(path: Path, below: Path) -> bool:
    # .DS_Store, ._x.png (macOS), .ipynb_checkpoints/: tool droppings, not data
    return any(part.startswith(".") for part in path.relative_to(below).parts)


def list_split(split_dir: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files (any depth below the class folder), sorted."""
    classes, loose = {}, []
    for entry in sorted(split_dir.iterdir()):
        if hidden(entry, split_dir):
            continue
        if entry.is_dir():
            classes[entry.name] = sorted(p for p in entry.rglob("*") if p.is_file() and not hidden(p, entry))
        else:
            loose.append(entry)
    if loose:
        log.warning(f"{len(loose)} file(s) directly in {split_dir} are ignored (images belong in a class "
                    f"folder): {describe(loose, split_dir)}")
    return classes


def check_classes(train: dict, test: dict | None, train_dir: Path, test_dir: Path, root: Path) -> None:
    if not train:
        raise DataError(f"{train_dir} has no class folders: expected {train_dir}/<class name>/<images> "
                        f"(set dataset.train_dir=. if the class folders are directly in {root})")
    if len(train) == 1:
        raise DataError(f"{train_dir} has one class folder ({next(iter(train))}): a classifier needs at least two "
                        f"classes; add a folder per class under {train_dir}")
    splits = [(train_dir, train)] + ([(test_dir, test)] if test is not None else [])
    empty = [split_dir / name for split_dir, classes in splits for name, files in classes.items() if not files]
    if empty:
        raise DataError(f"{len(empty)} empty class folder(s) under {root}: {describe(empty, root)}; a class "
                        f"without images cannot be learned or scored: add images or remove the folder")
    if test is not None and set(train) != set(test):
        only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
        raise DataError(f"{train_dir} and {test_dir} have different class folders (only in train: "
                        f"{only_train or 'none'}; only in test: {only_test or 'none'}): give both the same "
                        f"class folders, or remove {test_dir} to split train with dataset.test_split")


def decode_image(path, image_size: int, mode: str = "RGB") -> np.ndarray:
    """One file of any format and mode -> uint8 [image_size, image_size, channels]; raises what Pillow raises."""
    with Image.open(path) as image:
        # JPEGs decode at 1/2..1/8 scale when that still covers image_size: 2.6x faster on 384 px photos.
        image.draft(mode, (image_size, image_size))
        image = ImageOps.exif_transpose(image)  # phone photos store their rotation as a tag
        if image.has_transparency_data:
            # Transparent pixels keep whatever colour they were saved with; a black background makes them equal.
            image = Image.alpha_composite(Image.new("RGBA", image.size, "black"), image.convert("RGBA"))
        # Squashed to a square, as torchvision's Resize((s, s)); Pillow's bilinear resize is antialiased.
        image = image.convert(mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = np.array(image, dtype=np.uint8)  # a copy torch may write to (asarray views Pillow's read-only bytes)
    return array[:, :, None] if array.ndim == 2 else array


def try_decode(path: Path, image_size: int) -> np.ndarray | None:
    try:
        return decode_image(path, image_size)
    except Exception:  # corrupt, truncated, not an image, decompression bomb: all mean "cannot be read"
        return None


def decoded_arrays(paths: list[Path], image_size: int, num_workers: int):
    """Each file's uint8 [H, W, 3] array (None if unreadable), in order.

    Threads pay only for large images: they speed up big JPEGs and slow small PPMs down, whose decoding is mostly
    Python fighting over the GIL (BENCHMARKS.md, "Decoding an image folder"). So the first files are decoded
    here, timed, and the rest go to num_workers threads only when an image takes longer than THREADS_FROM_S."""
    seconds = []
    for path in paths[:PROBE_FILES]:
        start = time.perf_counter()
        array = try_decode(path, image_size)
        seconds.append(time.perf_counter() - start)
        yield array
    rest = paths[PROBE_FILES:]
    if num_workers > 1 and rest and statistics.median(seconds) > THREADS_FROM_S:
        with ThreadPoolExecutor(num_workers) as pool:
            yield from pool.map(lambda p: try_decode(p, image_size), rest)
    else:
        yield from (try_decode(p, image_size) for p in rest)


def decode_files(paths: list[Path], image_size: int, num_workers: int) -> tuple[torch.Tensor, list[int]]:
    """uint8 [N_readable, 3, H, W] and the indices of the files that could not be read. Each image goes
    straight into one preallocated tensor: a list of arrays stacked at the end would hold the images twice."""
    images = torch.empty((len(paths), 3, image_size, image_size), dtype=torch.uint8)
    bad, kept = [], 0
    for i, array in enumerate(decoded_arrays(paths, image_size, num_workers)):
        if array is None:
            bad.append(i)
            continue
        images[kept] = torch.from_numpy(array).permute(2, 0, 1)
        kept += 1
    # A slice would keep (and torch.save would write) the whole storage, unread files' rows included.
    return (images if kept == len(paths) else images[:kept].clone()), bad


def decode_labeled(files: list[Path], labels: list[int], image_size: int, num_workers: int):
    """(images, int64 labels, unreadable paths) for files with known labels."""
    images, bad = decode_files(files, image_size, num_workers)
    keep = torch.ones(len(files), dtype=torch.bool)
    keep[bad] = False
    return images, torch.tensor(labels, dtype=torch.long)[keep], [str(files[i]) for i in bad]


def check_readable(parts: dict, root: Path, skip_bad_files: bool) -> None:
    """Unreadable files stop the load unless skip_bad_files; a class left without images always does."""
    bad = parts["bad_files"]
    if bad and not skip_bad_files:
        raise DataError(f"{len(bad)} file(s) under {root} cannot be read as images (corrupt, truncated or "
                        f"not an image): {describe(bad, root)}; remove them or set dataset.skip_bad_files=true")
    if bad:
        log.warning(f"skipped {len(bad)} unreadable file(s) under {root} (dataset.skip_bad_files=true): "
                    f"{describe(bad, root)}")
    counts = torch.bincount(parts["train_labels"], minlength=len(parts["class_names"]))
    lost = [name for name, n in zip(parts["class_names"], counts.tolist()) if n == 0]
    if lost:
        raise DataError(f"class(es) {lost} under {root} have no readable training image left: add images "
                        f"Pillow can open")


def stratified_split(labels: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices holding out `fraction` of every class, at least one image of a class with two."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    test = []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n_test = min(max(round(len(members) * fraction), 1), len(members) - 1)
        test.append(members[:n_test])
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[torch.cat(test)] = True
    return (~is_test).nonzero().flatten(), is_test.nonzero().flatten()


def check_root(cfg) -> Path:
    """The root folder as an absolute path (a relative dataset.root is relative to the current folder; lab.config
    checks the options before any data is read)."""
    root = Path(str(cfg.root)).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"dataset.root={cfg.root}: {root} does not exist or is not a folder: pass the folder "
                        f"that holds {cfg.train_dir}/<class name>/<images>")
    if not (root / cfg.train_dir).is_dir():
        raise DataError(f"{root / cfg.train_dir} does not exist: put the training images in "
                        f"{root / cfg.train_dir}/<class name>/ or set dataset.train_dir")
    return root


def decode_imagefolder(cfg, train: dict, test: dict | None, class_names: list[str]) -> dict:
    def files_and_labels(classes):
        return ([f for name in class_names for f in classes[name]],
                [i for i, name in enumerate(class_names) for _ in classes[name]])

    size, workers = cfg.image_size, cfg.num_workers
    train_images, train_labels, bad = decode_labeled(*files_and_labels(train), size, workers)
    if test is not None:
        test_images, test_labels, bad_test = decode_labeled(*files_and_labels(test), size, workers)
        bad += bad_test
    else:
        train_idx, test_idx = stratified_split(train_labels, cfg.test_split)
        test_images, test_labels = train_images[test_idx], train_labels[test_idx]
        train_images, train_labels = train_images[train_idx], train_labels[train_idx]
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, class_names=class_names, bad_files=bad)


def load_imagefolder(cfg, data_dir: Path, budget: MemoryBudget | None) -> dict:
    root = check_root(cfg)
    train_dir, test_dir = root / cfg.train_dir, root / cfg.test_dir
    train = list_split(train_dir)
    test = list_split(test_dir) if test_dir.is_dir() and test_dir != train_dir else None
    check_classes(train, test, train_dir, test_dir, root)
    class_names = sort_class_names(list(train))
    files = [f for classes in (train, test or {}) for name in sorted(classes) for f in classes[name]]
    check_fits(len(files), 3, cfg.image_size, budget, root)
    settings = dict(image_size=cfg.image_size, test_split=None if test is not None else cfg.test_split)
    path = cache_file(data_dir, "imagefolder", files, settings)
    parts = read_cache(path)
    if parts is None:
        log.info(f"decoding {len(files)} images under {root} (cached in {path} for the next runs)")
        parts = decode_imagefolder(cfg, train, test, class_names)
        write_cache(path, parts)
    check_readable(parts, root, cfg.skip_bad_files)
    parts.pop("bad_files")
    return parts
