"""Reading checkpoints safely. Every load is weights_only=True: a checkpoint that needs unpickling code
(an nn.Module, a functools.partial, an OmegaConf node) is refused, never loaded with weights_only=False."""
import logging
from pathlib import Path

import torch

from lab.errors import CheckpointError, first_line
from lab.model import build_model

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


def net_from_checkpoint(ckpt: dict, path="checkpoint") -> tuple[torch.nn.Module, dict]:
    """The trained net (eval mode, CPU) and the checkpoint's plain hyperparameters."""
    hp = ckpt.get("hyper_parameters") or {}
    if "model" not in hp or "num_classes" not in hp:
        raise CheckpointError(f"{path} was not written by lab.train (no model/num_classes in its "
                              f"hyper_parameters)")
    net = build_model(hp["model"], hp["num_classes"], hp["in_channels"])
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval(), hp
