"""Reading checkpoints safely. Every load is weights_only=True: a checkpoint that needs unpickling code
(an nn.Module, a functools.partial, an OmegaConf node) is refused, never loaded with weights_only=False."""
import logging
from pathlib import Path

import torch

from lab.errors import CheckpointError, first_line
from lab.model import build_model, model_keys

log = logging.getLogger("lab")


def checkpoint_of(path, key: str) -> Path:
    """`key`=PATH as a checkpoint file: a .ckpt file as given, or for a run dir of lab.train the checkpoint its
    results stand on: checkpoints/best.ckpt, or last.ckpt for a run with dataset.val_split=0 (its best.ckpt
    was picked on the test set)."""
    path = Path(str(path)).expanduser().absolute()
    if not path.is_dir():
        return path
    best, last = path / "checkpoints" / "best.ckpt", path / "checkpoints" / "last.ckpt"
    if not best.is_file():
        raise CheckpointError(f"{key}={path} is a directory, so its checkpoint {best} was looked for: it does not "
                              f"exist; pass a run dir of python -m lab.train (it writes checkpoints/best.ckpt and "
                              f"last.ckpt) or a .ckpt file")
    config = (load_checkpoint(best, mmap=True).get("hyper_parameters") or {}).get("config") or {}
    if (config.get("dataset") or {}).get("val_split") == 0 and last.is_file():
        log.info(f"{key}={path} is a run dir with dataset.val_split=0: using {last} (best.ckpt was picked on "
                 f"the test set)")
        return last
    log.info(f"{key}={path} is a run dir: using {best}")
    return best


def load_checkpoint(path, mmap: bool = False) -> dict:
    """mmap: the tensors stay on disk until used (reading the hyperparameters costs nothing)."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (train one with python -m lab.train; it "
                              f"leaves checkpoints/best.ckpt and last.ckpt in the run dir)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} refused: it cannot be read with weights_only=True "
                              f"(it holds pickled code or is damaged: {first_line(err)[:160]}); lab never unpickles "
                              f"code, so re-save it with tensors and plain Python only") from None


def readable_checkpoint(path: Path) -> dict | None:
    """The checkpoint, memory-mapped (the weights are not read), or None when it is missing or damaged."""
    try:
        return load_checkpoint(path, mmap=True)
    except CheckpointError:
        return None


def net_from_checkpoint(ckpt: dict, path="checkpoint") -> tuple[torch.nn.Module, dict]:
    """The trained net (eval mode, CPU) and the checkpoint's plain hyperparameters. The net is rebuilt from the
    model keys it was trained with (model_keys reads those of a lab before models had a _target_); a builder's
    `pretrained` key is turned off, since the weights come from the checkpoint."""
    hp = ckpt.get("hyper_parameters") or {}
    if "model" not in hp or "num_classes" not in hp:
        raise CheckpointError(f"{path} was not written by lab.train (no model/num_classes in its "
                              f"hyper_parameters)")
    keys = model_keys(hp["model"])
    if keys.get("pretrained"):
        keys["pretrained"] = False
    net = build_model(keys, hp["num_classes"], hp["in_channels"], hp.get("image_size"))
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval(), hp


def check_matches_data(hp: dict, data, ckpt_path: Path, fix: str, same_dataset: bool = False) -> None:
    """A checkpoint's classes (names, in order) and image shape must be the data's: a teacher for its student, a
    net for the test set lab.eval scores it on. same_dataset: the dataset's name too (a teacher's)."""
    expected = list(hp.get("class_names") or [])
    shape = (data.channels, data.image_size, data.image_size)
    want = (hp["in_channels"], hp["image_size"], hp["image_size"])
    if same_dataset and (hp.get("dataset"), expected, want) != (data.dataset_name, list(data.class_names), shape):
        raise CheckpointError(f"{ckpt_path} was trained on {hp.get('dataset')} with {len(expected)} classes "
                              f"({'x'.join(map(str, want))}), this run uses {data.dataset_name} with "
                              f"{len(data.class_names)} ({'x'.join(map(str, shape))}; class names must match too): "
                              f"{fix}")
    if list(data.class_names) != expected:
        differ = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(data.class_names, expected)) if a != b]
        raise CheckpointError(f"the data's classes ({len(data.class_names)}) do not match {ckpt_path}'s "
                              f"({len(expected)}, same order required; first differences, data vs checkpoint: "
                              f"{', '.join(differ[:3]) or 'extra classes at the end'}): {fix}")
    if shape != want:
        raise CheckpointError(f"the data's images are {shape} (channels, height, width) but {ckpt_path} was trained "
                              f"on {want}: {fix}")
