"""dataset=gtsrb: the German Traffic Sign Recognition Benchmark through torchvision.datasets.GTSRB
(downloaded into paths.data_dir), decoded once into uint8 tensors and cached like imagefolder.

Class index = official ClassId (0..42). torchvision's train split is 26,640 images (GTSRB-Training_fixed);
test is the official 12,630 with ClassIds from GT-final_test.csv."""
import logging
from pathlib import Path

import torch

from lab.dataset.cache import cache_file, read_cache, write_cache
from lab.dataset.imagefolder import check_readable, decode_labeled
from lab.dataset.memory import MemoryBudget, check_fits
from lab.errors import DataError, first_line

log = logging.getLogger("lab")

# The official ClassId order (the benchmark's signnames), index = ClassId.
CLASS_NAMES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)", "Speed limit (60km/h)",
    "Speed limit (70km/h)", "Speed limit (80km/h)", "End of speed limit (80km/h)", "Speed limit (100km/h)",
    "Speed limit (120km/h)", "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution", "Dangerous curve to the left",
    "Dangerous curve to the right", "Double curve", "Bumpy road", "Slippery road",
    "Road narrows on the right", "Road work", "Traffic signals", "Pedestrians", "Children crossing",
    "Bicycles crossing", "Beware of ice/snow", "Wild animals crossing", "End of all speed and passing limits",
    "Turn right ahead", "Turn left ahead", "Ahead only", "Go straight or right", "Go straight or left",
    "Keep right", "Keep left", "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
]


def gtsrb_samples(split: str, data_dir: Path) -> list[tuple[Path, int]]:
    """(file, ClassId) pairs of one split, downloading it first if it is not in data_dir/gtsrb."""
    from torchvision.datasets import GTSRB

    try:
        dataset = GTSRB(str(data_dir), split=split, download=True)
    except Exception as err:  # no network, proxy, bad md5, disk full: all end the same way for the user
        reason = first_line(err)[:160]
        raise DataError(f"GTSRB {split} split not found in {data_dir / 'gtsrb'} and downloading it failed "
                        f"({type(err).__name__}: {reason}); put torchvision's GTSRB files there (paths.data_dir "
                        f"or LAB_DATA), use your own copy with dataset=imagefolder dataset.root=PATH, or run "
                        f"offline with dataset=digits") from None
    # torchvision keeps the pairs in _samples: train labels from the ClassId folders, test labels from the
    # official CSV. Reading them here lets lab decode in parallel threads instead of one PIL image per item.
    samples = [(Path(path), int(label)) for path, label in dataset._samples]
    unknown = sorted({label for _, label in samples if not 0 <= label < len(CLASS_NAMES)})
    if unknown:
        raise DataError(f"GTSRB {split} split in {data_dir / 'gtsrb'} has ClassIds {unknown} outside 0..42: "
                        f"delete {data_dir / 'gtsrb'} and let it download again")
    return samples


def track_groups(samples: list[tuple[Path, int]], bad_files: list[str]) -> torch.Tensor | None:
    """One group id per readable training image: its class and track. GTSRB's training files are named
    TRACK_FRAME.ppm, ~30 frames of one physical sign: a random validation split would put near-copies of its
    images in training. None when the files are not named that way."""
    bad, groups = set(bad_files), []
    for path, label in samples:
        track = path.stem.split("_")[0]
        if not track.isdigit():
            return None
        if str(path) not in bad:
            groups.append(label * 1_000_000 + int(track))
    return torch.tensor(groups, dtype=torch.long)


def load_gtsrb(cfg, data_dir: Path, budget: MemoryBudget | None) -> dict:
    train, test = gtsrb_samples("train", data_dir), gtsrb_samples("test", data_dir)
    files = [path for path, _ in train + test]
    check_fits(len(files), 3, cfg.image_size, budget, data_dir / "gtsrb")
    path = cache_file(data_dir, "gtsrb", files, dict(image_size=cfg.image_size))
    parts = read_cache(path)
    if parts is None:
        log.info(f"decoding {len(files)} GTSRB images (cached in {path} for the next runs)")
        train_images, train_labels, bad = decode_labeled(*zip(*train), cfg.image_size, cfg.num_workers)
        test_images, test_labels, bad_test = decode_labeled(*zip(*test), cfg.image_size, cfg.num_workers)
        parts = dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                     test_labels=test_labels, class_names=list(CLASS_NAMES), bad_files=bad + bad_test)
        write_cache(path, parts)
    check_readable(parts, data_dir / "gtsrb", cfg.skip_bad_files)
    parts["train_groups"] = track_groups(train, parts.pop("bad_files"))
    return parts
