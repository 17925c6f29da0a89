"""A config node's `_target_`: importing it and checking the keys it is called with, so a typo or a missing
package costs one line before any data is loaded, not a traceback from inside the run. A leaf: it imports nothing
of lab's but the errors."""
import difflib
import inspect
import logging

from lab.errors import ConfigError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
MLFLOW = "lab.tracking.mlflow_runs"
TRACKER_MODULES = (MLFLOW, "lab.tracking.wandb_run")  # conf/logger's trackers with lab's grouping (lab/tracking/)
# a package an option needs -> its extra
EXTRAS = {"mlflow": "mlflow", "tensorboard": "tensorboard", "timm": "timm", "wandb": "wandb"}


def tracker_module(node) -> str | None:
    """The lab tracker module a logger node's _target_ lives in, else None (csv, tensorboard, a user's own). Here,
    not in lab/tracking/: a run with another logger does not load the trackers' code."""
    target = str((node or {}).get("_target_", ""))
    module = target.rsplit(".", 1)[0]
    return module if module in TRACKER_MODULES else None


def install_hint(package: str) -> str:
    return f'pip install -e ".[{EXTRAS[package]}]"' if package in EXTRAS else f"pip install {package}"


def missing_package(err: BaseException | None, target: str) -> str | None:
    """The top-level package whose absence made `target` fail to import (not a misspelt part of target)."""
    while err is not None:
        if isinstance(err, ModuleNotFoundError) and err.name and not target.startswith(err.name):
            return err.name.split(".")[0]
        err = err.__cause__ or err.__context__
    return None


def import_target(target: str):
    """hydra.utils.get_object, without the three ERROR lines it logs before raising."""
    from hydra.utils import get_object

    hydra_log = logging.getLogger("hydra.utils")
    level = hydra_log.level
    hydra_log.setLevel(logging.CRITICAL)
    try:
        return get_object(target)
    finally:
        hydra_log.setLevel(level)


def importable(group: str, target: str):
    """The object `group._target_` names, or a ConfigError that says which package to install or what to fix."""
    try:
        return import_target(target)
    except Exception as err:
        missing = missing_package(err, target)
        if missing:
            raise ConfigError(f"{group}._target_={target} needs the {missing} package, which is not installed "
                              f"here: {install_hint(missing)}") from None
        raise ConfigError(f"{group}._target_={target} cannot be imported: check its spelling (a module of your own "
                          f"must be importable: on PYTHONPATH or installed)") from None


def parameters(target_object) -> dict:
    try:
        return dict(inspect.signature(target_object).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return {}


def takes_any_keyword(params: dict) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in params.values())


def check_keys(group: str, target: str, keys, params: dict, lab_keys=frozenset()) -> None:
    """Every key of the node must be an argument of its target (or lab's own, or Hydra's)."""
    if not params or takes_any_keyword(params):
        return
    unknown = sorted(set(keys) - HYDRA_KEYS - set(lab_keys) - set(params))
    if unknown:
        names = [k for k in params if k not in lab_keys and k != "self"]
        close = difflib.get_close_matches(unknown[0], names, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"its arguments: {', '.join(names)}"
        raise ConfigError(f"{group}.{unknown[0]} is not an argument of {target} ({hint}): check its spelling, or "
                          f"drop the override")
