"""Config checks that run before any data is touched, and the resolvers conf/ uses.

Each rule names the key, the allowed range and an example, so a typo costs one line, not a traceback."""
import difflib
import math
from pathlib import Path

from omegaconf import OmegaConf

from lab.errors import ConfigError
from lab.keys import key_paths

CONF = Path(__file__).resolve().parents[1] / "conf"  # the one place lab finds its config dir


def project_root() -> str:
    return str(CONF.parent)


def sweep_callback(mode) -> str:
    """hydra.callbacks' target: Hydra instantiates its callbacks for single runs too, so a single run gets
    Hydra's do-nothing Callback and never loads the sweep code."""
    multirun = getattr(mode, "name", str(mode)) == "MULTIRUN"  # a RunMode, or its name
    return "lab.sweeps.callback.SweepCallback" if multirun else "hydra.experimental.callback.Callback"


def register_resolvers() -> None:
    """conf/'s own resolvers. hydra.sweep.subdir's lab_job_dir is the sweep feature's: lab.sweeps.jobs registers
    it when a sweep's callback loads it, in every process that runs a job."""
    if not OmegaConf.has_resolver("lab_root"):
        OmegaConf.register_new_resolver("lab_root", project_root)
        OmegaConf.register_new_resolver("lab_sweep_callback", sweep_callback)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


PRECISIONS = {"auto", "32", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "64", "64-true"}
DISTILL_KINDS = ("none", "soft_target", "logits", "both")


def distilling(cfg) -> bool:
    return OmegaConf.select(cfg, "distill.kind", default="none") != "none"


def reads_a_folder(cfg) -> bool:
    return OmegaConf.select(cfg, "dataset.name", default=None) == "imagefolder"


# (key, test, allowed range as the user should read it[, the fix when it is not "set it with key=...",
# the configs the rule applies to])
RULES = [
    ("seed", lambda v: is_int(v) and 0 <= v < 2**32, "an integer in [0, 2^32) (numpy's seed range), e.g. 42"),
    ("resume", lambda v: isinstance(v, bool), "true or false"),
    ("cpu_threads", lambda v: v in (None, "auto") or (is_int(v) and v >= 1), "auto, null or an integer >= 1"),
    ("progress_every_s", lambda v: v is None or (is_number(v) and v > 0), "a number of seconds > 0, or null (off)"),
    ("step_loss_every", lambda v: v is None or (is_int(v) and v >= 1), "an integer >= 1 (steps), or null (off)"),
    ("model.channels_last", lambda v: isinstance(v, bool), "true or false"),
    ("model.compile", lambda v: isinstance(v, bool), "true or false"),
    ("model.base_width", lambda v: is_int(v) and v >= 1, "an integer >= 1, e.g. 64"),
    ("model.layers", lambda v: isinstance(v, list) and len(v) > 0 and all(is_int(n) and n >= 1 for n in v),
     "a list of block counts >= 1, e.g. [2, 2, 2, 2]"),
    ("model.block", lambda v: v in ("basic", "bottleneck"), "basic or bottleneck"),
    ("model.zero_init_residual", lambda v: v is None or isinstance(v, bool), "true or false"),
    ("model.shortcut", lambda v: v is None or v in ("conv", "avgpool"), "conv or avgpool"),
    ("optimizer.lr", lambda v: is_number(v) and v > 0, "a number > 0, e.g. 0.03"),
    ("optimizer.weight_decay", lambda v: v is None or (is_number(v) and v >= 0), "a number >= 0"),
    ("optimizer.momentum", lambda v: v is None or (is_number(v) and 0 <= v < 1), "a number in [0, 1)"),
    ("optimizer.nesterov", lambda v: v is None or isinstance(v, bool), "true or false"),
    ("dataset.batch_size", lambda v: is_int(v) and v >= 1, "an integer >= 1, e.g. 256"),
    ("dataset.val_split", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1), e.g. 0.1"),
    ("dataset.augment.crop_padding", lambda v: is_int(v) and v >= 0, "an integer >= 0 (0 = no crop)"),
    ("dataset.augment.flip", lambda v: isinstance(v, bool), "true or false"),
    ("dataset.image_size", lambda v: v is None or (is_int(v) and v >= 1), "an integer >= 1, e.g. 32"),
    ("dataset.test_split", lambda v: v is None or (is_number(v) and 0 < v < 1), "a number in (0, 1), e.g. 0.2"),
    ("dataset.train_subset", lambda v: v is None or (is_int(v) and v >= 1), "null (all) or an integer >= 1, e.g. 6000"),
    ("dataset.skip_bad_files", lambda v: v is None or isinstance(v, bool), "true or false"),
    ("dataset.root", lambda v: bool(v), "a folder holding train_dataset/<class name>/<images> (and optionally "
     "test_dataset/)", "pass dataset.root=PATH", reads_a_folder),
    ("trainer.max_epochs", lambda v: is_int(v) and v >= 1, "an integer >= 1, e.g. 50"),
    ("trainer.limit_val_batches", lambda v: v is None or (is_number(v) and v > 0),
     "null or > 0: every epoch validates, to pick best.ckpt and to catch divergence"),
    # lab writes an epoch's metrics.csv row when its validation ends; other schedules give stale val columns
    # (every n epochs) or cut the training metrics short (several validations an epoch).
    ("trainer.check_val_every_n_epoch", lambda v: v is None or v == 1, "1: every epoch validates once",
     "drop the +trainer.check_val_every_n_epoch override"),
    ("trainer.val_check_interval", lambda v: v is None or v == 1, "1.0: every epoch validates once, at its end",
     "drop the +trainer.val_check_interval override"),
    ("trainer.precision", lambda v: str(v) in PRECISIONS, "one of " + ", ".join(sorted(PRECISIONS))),
    ("scheduler.milestones", lambda v: v is None or (isinstance(v, list) and all(is_int(m) and m > 0 for m in v)
                                                     and all(a < b for a, b in zip(v, v[1:]))),
     "strictly increasing positive epochs, e.g. [30, 40]"),
    ("scheduler.gamma", lambda v: v is None or (is_number(v) and v > 0), "a number > 0, e.g. 0.1"),
    ("scheduler.warmup_epochs", lambda v: v is None or (is_number(v) and v >= 0), "a number of epochs >= 0, e.g. 1"),
    ("loss.label_smoothing", lambda v: v is None or (is_number(v) and 0 <= v < 1), "a number in [0, 1), e.g. 0.1"),
    ("distill.kind", lambda v: v is None or v in DISTILL_KINDS, "one of " + ", ".join(DISTILL_KINDS)),
    ("distill.teacher_ckpt", lambda v: bool(v), "a teacher's run dir or its checkpoints/best.ckpt",
     "train one with python -m lab.train +experiment=teacher and pass distill.teacher_ckpt=<its run dir>",
     distilling),
    ("distill.temperature", lambda v: v is None or (is_number(v) and v > 0), "a number > 0, e.g. 4"),
    ("distill.alpha", lambda v: v is None or (is_number(v) and v >= 0), "a number >= 0"),
    ("distill.beta", lambda v: v is None or (is_number(v) and v >= 0), "a number >= 0"),
]


def check_rules(cfg, groups: tuple[str, ...] | None = None) -> None:
    """The first value outside its allowed range raises; `groups` limits the rules to those groups' keys."""
    for key, ok, allowed, *extra in RULES:
        fix, applies = (extra + [None, None])[:2]
        if (groups and key.split(".")[0] not in groups) or (applies and not applies(cfg)):
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
            value = list(value)
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: must be {allowed} ({fix or f'set it with {key}=...'})")


# Groups whose keys only lab reads: a key added with + or ++ (a typo, +model.widht=16) would be silently
# ignored. The other groups go to constructors (Trainer, optimizer, scheduler, logger) that refuse unknown
# keyword arguments themselves.
LAB_READ_GROUPS = ("model", "dataset", "distill", "paths")


def check_unknown_keys(cfg) -> None:
    """Every key lab reads must be one that some option of its group defines (top level: train.yaml's)."""
    top = OmegaConf.to_container(OmegaConf.load(CONF / "train.yaml"))
    known = {"": set(top) | {"hydra"} | {next(iter(d)) if isinstance(d, dict) else d for d in top["defaults"]}}
    for group in LAB_READ_GROUPS:
        known[group] = set().union(*(key_paths(OmegaConf.to_container(OmegaConf.load(path)))
                                     for path in (CONF / group).glob("*.yaml")))
    given = {"": set(cfg.keys())}
    given.update({g: key_paths(OmegaConf.to_container(cfg[g])) for g in LAB_READ_GROUPS if cfg.get(g)})
    for group, keys in given.items():
        unknown = sorted(keys - known[group])
        if unknown:
            where = f"{group}." if group else ""
            hidden = {"defaults", "hydra", "_self_"}
            choices = ", ".join(sorted(k for k in known[group] if "." not in k and k not in hidden))
            raise ConfigError(f"{where}{unknown[0]} is not a lab setting (known: {choices}): check its spelling; "
                              f"a key added with + or ++ that lab does not read would be silently ignored")


# Groups that become a call of their _target_: each key must be one of its keyword arguments, or lab's own
# (the scheduler's interval). Caught here, a typo costs one line before any data is loaded, not a traceback
# from inside fit.
CALLED_GROUPS = {"optimizer": {"params"}, "scheduler": {"interval", "optimizer", "warmup_epochs"}, "trainer": set(),
                 "logger": set()}
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


EXTRAS = {"mlflow": "mlflow", "tensorboard": "tensorboard"}  # a package an option needs -> its pyproject extra


def missing_package(err: BaseException | None, target: str) -> str | None:
    """The top-level package whose absence made `target` fail to import (not a misspelt part of target)."""
    while err is not None:
        if isinstance(err, ModuleNotFoundError) and err.name and not target.startswith(err.name):
            return err.name.split(".")[0]
        err = err.__cause__ or err.__context__
    return None


def import_target(target: str):
    """hydra.utils.get_object, without the three ERROR lines it logs before raising."""
    import logging

    from hydra.utils import get_object

    hydra_log = logging.getLogger("hydra.utils")
    level = hydra_log.level
    hydra_log.setLevel(logging.CRITICAL)
    try:
        return get_object(target)
    finally:
        hydra_log.setLevel(level)


def check_call_arguments(cfg) -> None:
    import inspect

    for group, lab_keys in CALLED_GROUPS.items():
        node = cfg.get(group)
        if not node or not node.get("_target_"):
            continue
        try:  # a class or a factory function
            parameters = inspect.signature(import_target(node._target_)).parameters
        except Exception as err:
            missing = missing_package(err, node._target_)
            if missing:
                install = f'pip install -e ".[{EXTRAS[missing]}]"' if missing in EXTRAS else f"pip install {missing}"
                raise ConfigError(f"{group}._target_={node._target_} needs the {missing} package, which is not "
                                  f"installed here: {install}") from None
            raise ConfigError(f"{group}._target_={node._target_} cannot be imported: check its spelling") from None
        if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            continue
        unknown = sorted(set(node.keys()) - HYDRA_KEYS - lab_keys - set(parameters))
        if unknown:
            names = [k for k in parameters if k not in lab_keys and k != "self"]
            close = difflib.get_close_matches(unknown[0], names, n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else f"its arguments: {', '.join(names)}"
            raise ConfigError(f"{group}.{unknown[0]} is not an argument of {node._target_} ({hint}): check its "
                              f"spelling, or drop the override")


def check_accelerator(cfg) -> None:
    import torch

    if cfg.trainer.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={cfg.trainer.accelerator} but torch sees no CUDA GPU here "
                          f"(torch {torch.__version__}): use trainer=cpu, or trainer.accelerator=auto")


def check_ddp_outside_sweeps(cfg, ctx=None) -> None:
    """Lightning #11300 / Hydra #2070: each DDP child re-executes sys.argv, -m included, and so launches
    its own copy of the whole sweep."""
    # Several devices means DDP whatever trainer.strategy says (Lightning picks ddp for "auto").
    ddp = cfg.trainer.devices not in (1, "1", [0]) or cfg.trainer.num_nodes > 1
    # Under Slurm, srun starts every rank itself (one task each): no rank re-executes the sweep.
    if ddp and ctx is not None and ctx.in_sweep and ctx.slurm.tasks <= 1:
        raise ConfigError(ddp_under_multirun(cfg.trainer.devices))


def ddp_under_multirun(devices) -> str:
    return (f"trainer.devices={devices} (DDP) cannot run under -m (each DDP process would relaunch the sweep): "
            "run one job per GPU with hydra/launcher=joblib gpu_pool=[0,1,...] or hydra/launcher=slurm, or drop "
            "-m for a single DDP run")


def check_job(cfg) -> None:
    """A sweep's check of each job before the first job starts (lab.sweeps, lab.study): unknown keys, call
    arguments, values outside their range, and a dataset.root that is not a folder (a single run finds that out
    when it loads the data, in one line too, before decoding anything)."""
    check_keys_and_values(cfg)
    root = OmegaConf.select(cfg, "dataset.root", default=None)
    if root and not Path(str(root)).expanduser().is_dir():
        raise ConfigError(f"dataset.root={root}: {Path(str(root)).expanduser().absolute()} is not a folder: check "
                          f"the path (a relative one starts at the current folder)")


def check_keys_and_values(cfg) -> None:
    check_unknown_keys(cfg)
    check_call_arguments(cfg)
    check_rules(cfg)


def validate(cfg, ctx=None) -> None:
    """Raise ConfigError for an unknown key, a value outside its allowed range, a GPU run without a GPU, or
    DDP under -m (ctx: the run's lab.context.RunContext; None: a single run): all before any data is touched."""
    check_keys_and_values(cfg)
    check_accelerator(cfg)
    check_ddp_outside_sweeps(cfg, ctx)
