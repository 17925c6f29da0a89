"""Decoded images cached in <paths.data_dir>/cache, keyed by the exact files (path, size, mtime) and the
decoding settings: any changed, added or removed file gives another cache. Writes are atomic, so a killed
run or a parallel sweep job never sees half a cache file."""
import hashlib
import json
import logging
from pathlib import Path

import torch

from lab.run_files import atomic_path

log = logging.getLogger("lab")
CACHE_VERSION = 2  # part of every cache key: bump it when decoding changes, so old caches are not reused


def cache_file(data_dir: Path, name: str, files: list[Path], settings: dict) -> Path:
    """The cache path for these exact files: any changed, added or removed file gives another name."""
    listing = []
    for path in files:
        stat = path.stat()
        listing.append([str(path), stat.st_size, stat.st_mtime_ns])
    blob = json.dumps([CACHE_VERSION, settings, listing]).encode()
    return Path(data_dir) / "cache" / f"{name}-{hashlib.sha256(blob).hexdigest()[:16]}.pt"


def read_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        log.warning(f"cache {path} is unreadable ({type(err).__name__}); decoding the images again")
        return None


def write_cache(path: Path, parts: dict) -> None:
    """Atomic: a killed run or a parallel sweep job never sees half a cache file."""
    try:
        with atomic_path(path) as tmp:
            torch.save(parts, tmp)
    except OSError as err:  # e.g. a read-only data dir: still usable, only slower next time
        log.warning(f"could not write the decoded-image cache {path} ({err}); the next run decodes again")
