"""python -m lab.predict ckpt_path=PATH images=[a.png,b.jpg] (or images=FOLDER): the top-k classes of each
image with their probabilities, printed and written to predictions.json in the output dir.

Each image gets the checkpoint's preprocessing: decoded like dataset=imagefolder (any format and mode),
converted to RGB or grayscale to match the net's input channels, resized to its image size, normalised
with its mean/std."""
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from lab.context import run_context
from lab.errors import ConfigError, DataError
from lab.eval import checkpoint_path
from lab.outcome import run_or_exit
from lab.run_files import write_json

log = logging.getLogger("lab")


def image_paths(images) -> list[Path]:
    """images=[a.png,b.jpg], images=a.png or images=FOLDER (its files, sorted) -> the files to classify."""
    if not images:
        raise ConfigError("images is not set: python -m lab.predict ckpt_path=PATH images=[a.png,b.jpg] "
                          "(or images=FOLDER)")
    items = list(images) if OmegaConf.is_list(images) or isinstance(images, (list, tuple)) else [images]
    paths, missing = [], []
    for item in (Path(str(i)).expanduser() for i in items):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.is_file() and not p.name.startswith("."))
        elif item.is_file():
            paths.append(item)
        else:
            missing.append(str(item))
    if missing:
        raise DataError(f"{len(missing)} image path(s) do not exist: {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (relative paths start at {Path.cwd()}): check "
                        f"the images=... list")
    if not paths:
        raise DataError(f"no image files in {', '.join(map(str, items))}: pass image files or a folder of them")
    return paths


def load_images(paths: list[Path], hp: dict):
    """uint8 [N, C, H, W] preprocessed as the checkpoint's training images were."""
    import numpy as np
    import torch

    from lab.dataset.imagefolder import decode_image

    mode = "L" if hp["in_channels"] == 1 else "RGB"
    arrays, bad = [], []
    for path in paths:
        try:
            arrays.append(decode_image(path, hp["image_size"], mode))
        except Exception as err:  # corrupt, truncated, not an image: reported together below
            bad.append(f"{path} ({type(err).__name__})")
    if bad:
        raise DataError(f"{len(bad)} file(s) cannot be read as images: {', '.join(bad[:5])}"
                        f"{' ...' if len(bad) > 5 else ''}; pass files Pillow can open (png, jpg, ppm, bmp, ...)")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def top_k_table(probs, paths: list[Path], class_names: list, k: int) -> list[dict]:
    values, indices = probs.topk(k, dim=1)
    return [dict(image=str(path), top_k=[{"class": class_names[i], "index": i, "prob": round(p, 6)}
                                         for p, i in zip(row_values.tolist(), row_indices.tolist())])
            for path, row_values, row_indices in zip(paths, values, indices)]


def print_predictions(predictions: list[dict]) -> None:
    width = max(len("image"), *(len(p["image"]) for p in predictions))
    print(f"{'image':<{width}}  top classes (probability)")
    for p in predictions:
        ranked = "  ".join(f"{n}. {c['class']} {c['prob']:.3f}" for n, c in enumerate(p["top_k"], 1))
        print(f"{p['image']:<{width}}  {ranked}")


def predict(cfg: DictConfig, ctx) -> list[dict]:
    import torch

    from lab.checkpoint import load_checkpoint, net_from_checkpoint
    from lab.dataset.loader import DeviceLoader

    if not (isinstance(cfg.top_k, int) and cfg.top_k >= 1):
        raise ConfigError(f"top_k={cfg.top_k!r} is not allowed: must be an integer >= 1, e.g. 5")
    out_dir = ctx.run_dir
    ckpt_path = checkpoint_path(cfg, "lab.predict")
    paths = image_paths(cfg.images)
    net, hp = net_from_checkpoint(load_checkpoint(ckpt_path), ckpt_path)
    images = load_images(paths, hp)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # DeviceLoader serves (images, labels) pairs; these images have no labels, so zeros stand in.
    loader = DeviceLoader(images.to(device), torch.zeros(len(images), dtype=torch.long, device=device),
                          cfg.batch_size, hp["mean"], hp["std"], shuffle=False, drop_last=False,
                          channels_last=False)
    with torch.inference_mode():
        net = net.to(device)
        probs = torch.cat([net(batch).float().softmax(1).cpu() for batch, _ in loader])
    k = min(cfg.top_k, hp["num_classes"])
    predictions = top_k_table(probs, paths, list(hp["class_names"]), k)
    print_predictions(predictions)
    write_json(out_dir / "predictions.json", dict(ckpt_path=str(ckpt_path), top_k=k, predictions=predictions))
    log.info(f"wrote predictions.json to {out_dir}")
    return predictions


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_or_exit(predict, cfg, run_context(), records_run=False)


if __name__ == "__main__":
    main()
