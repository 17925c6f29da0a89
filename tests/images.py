"""Small ImageFolders drawn on disk for the tests: classes a CNN can tell apart, in mixed formats and modes."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

COLOURS = {"blue": (30, 40, 220), "green": (30, 200, 40), "red": (220, 30, 40)}
SUFFIXES = [".png", ".jpg", ".ppm", ".bmp"]
# Mode conversions of the first images of the first class: each must come out as a 3-channel image.
SPECIAL_MODES = ["L", "RGBA", "P", "CMYK"]


def noisy_fill(colour, size: int, rng) -> Image.Image:
    pixels = np.clip(np.array(colour) + rng.integers(-20, 21, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def left_arrow(size: int, rng) -> Image.Image:
    """A bright arrow pointing left on a dark background, shifted by up to size/8 pixels."""
    image = noisy_fill(rng.integers(0, 60, 3), size, rng)
    draw = ImageDraw.Draw(image)
    s, (dx, dy) = size / 16, rng.integers(-size // 8, size // 8 + 1, 2)
    colour = tuple(int(c) for c in rng.integers(180, 256, 3))
    draw.polygon([(2 * s + dx, 8 * s + dy), (8 * s + dx, 2 * s + dy), (8 * s + dx, 14 * s + dy)], fill=colour)
    draw.rectangle([8 * s + dx, 6 * s + dy, 14 * s + dx, 10 * s + dy], fill=colour)
    return image


ARROWS = {  # "right" is the exact mirror image of "left": only an orientation-aware net separates them
    "left": lambda image: image,
    "right": ImageOps.mirror,
    "up": lambda image: image.rotate(-90),
    "down": lambda image: image.rotate(90),
}


def save(image: Image.Image, path: Path, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode:
        image = image.convert(mode)
    image.save(path, format="JPEG" if mode == "CMYK" else None)
    return path


def colour_folder(root: Path, counts: dict, size: int = 16, classes=COLOURS, seed: int = 0) -> list[Path]:
    """root/<split>/<class>/<i>.<suffix> with counts = {split: images per class}; mixed formats, and the first
    class's first training images in the SPECIAL_MODES."""
    rng, written = np.random.default_rng(seed), []
    for split, n in counts.items():
        for c, (name, colour) in enumerate(classes.items()):
            for i in range(n):
                special = SPECIAL_MODES[i] if c == 0 and split == next(iter(counts)) and i < 4 else None
                suffix = ".jpg" if special == "CMYK" else ".png" if special else SUFFIXES[i % len(SUFFIXES)]
                written.append(save(noisy_fill(colour, size, rng), root / split / name / f"{i}{suffix}", special))
    return written


def arrow_folder(root: Path, counts: dict, size: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for name, turn in ARROWS.items():
            for i in range(n):
                save(turn(left_arrow(size, rng)), root / split / name / f"{i}.png")


def corrupt(path: Path) -> Path:
    """A PNG cut off after its first 40 bytes: Pillow opens the header, then fails to decode."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 100:
        buffer = Path(path).with_suffix(".tmp.png")
        noisy_fill((128, 128, 128), 32, np.random.default_rng(1)).save(buffer)
        data = buffer.read_bytes()
        buffer.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:40])
    return path
