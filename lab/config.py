"""Config checks that run before any data is touched, and the resolvers conf/ uses.

Each rule names the key, the allowed range and an example, so a typo costs one line, not a traceback."""
import math
from pathlib import Path

from omegaconf import OmegaConf

from lab.augment import MIXES
from lab.errors import ConfigError
from lab.keys import key_paths
from lab.targets import check_keys, importable, parameters, tracker_module

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


TTA_MODES = ("none", "flip")
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
    ("model.channels_last", lambda v: v is None or isinstance(v, bool), "true or false"),
    ("model.compile", lambda v: v is None or isinstance(v, bool), "true or false"),
    ("optimizer.lr", lambda v: is_number(v) and v > 0, "a number > 0, e.g. 0.03"),
    ("optimizer.weight_decay", lambda v: v is None or (is_number(v) and v >= 0), "a number >= 0"),
    ("optimizer.momentum", lambda v: v is None or (is_number(v) and 0 <= v < 1), "a number in [0, 1)"),
    ("optimizer.nesterov", lambda v: v is None or isinstance(v, bool), "true or false"),
    ("dataset.batch_size", lambda v: is_int(v) and v >= 1, "an integer >= 1, e.g. 256"),
    ("dataset.val_split", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1), e.g. 0.1"),
    ("dataset.crop_padding", lambda v: is_int(v) and v >= 0, "an integer >= 0 (0 = no crop)"),
    ("dataset.flip", lambda v: isinstance(v, bool), "true or false"),
    ("augment.crop_padding", lambda v: is_int(v) and v >= 0, "an integer >= 0 (0 = no crop)"),
    ("augment.flip", lambda v: isinstance(v, bool), "true or false"),
    ("augment.erase_p", lambda v: is_number(v) and 0 <= v <= 1, "a chance in [0, 1] per image, e.g. 0.5 (0 = off)"),
    ("augment.mix", lambda v: v in MIXES, "one of " + ", ".join(MIXES)),
    ("augment.mix_alpha", lambda v: is_number(v) and v > 0, "a number > 0 (Beta(alpha, alpha)), e.g. 1.0"),
    ("augment.mix_p", lambda v: is_number(v) and 0 <= v <= 1, "a probability in [0, 1] per batch, e.g. 0.5"),
    ("ema.decay", lambda v: v is None or (is_number(v) and 0 < v < 1), "a number in (0, 1), e.g. 0.999, or null (off)"),
    ("ema.warmup", lambda v: v is None or isinstance(v, bool), "true or false"),
    ("test_tta", lambda v: v in TTA_MODES, "one of " + ", ".join(TTA_MODES)),
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
LAB_READ_GROUPS = ("dataset", "augment", "ema", "distill", "paths")


def check_unknown_keys(cfg) -> None:
    """Every key lab reads must be one that some option of its group defines (top level: train.yaml's)."""
    top = OmegaConf.to_container(OmegaConf.load(CONF / "train.yaml"))
    known = {"": set(top) | {"hydra"} | {next(iter(d)) if isinstance(d, dict) else d for d in top["defaults"]}}
    for group in LAB_READ_GROUPS:  # a config group's options, or a node of train.yaml (ema)
        nodes = [OmegaConf.to_container(OmegaConf.load(path)) for path in (CONF / group).glob("*.yaml")]
        known[group] = set().union(*map(key_paths, nodes or [top.get(group) or {}]))
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
# from inside fit. The model group has its own check: lab.model.check_model builds the net on the meta device.
CALLED_GROUPS = {"optimizer": {"params"}, "scheduler": {"interval", "optimizer", "warmup_epochs"}, "trainer": set(),
                 "logger": set()}


def check_call_arguments(cfg) -> None:
    for group, lab_keys in CALLED_GROUPS.items():
        node = cfg.get(group)
        if node and node.get("_target_"):
            check_keys(group, node._target_, node.keys(), parameters(importable(group, node._target_)), lab_keys)


def check_model(cfg) -> None:
    from lab.model import check_model as build_on_meta

    image_size = OmegaConf.select(cfg, "dataset.image_size", default=None) or 32
    build_on_meta(cfg.model, image_size=image_size)


def check_test_tta(cfg) -> None:
    if cfg.get("test_tta") == "flip" and OmegaConf.select(cfg, "augment.flip", default=None) is False:
        raise ConfigError("test_tta=flip is refused: augment.flip is false, so the net never saw a mirrored "
                          "image (or the dataset's classes change under a mirror, as traffic signs do): set "
                          "test_tta=none, or train with augment.flip=true")


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
        raise ConfigError(f"trainer.devices={cfg.trainer.devices} (DDP) cannot run under -m (each DDP process would "
                          "relaunch the sweep): run one job per GPU with hydra/launcher=joblib gpu_pool=[0,1,...] or "
                          "hydra/launcher=slurm, or drop -m for a single DDP run")


def check_job(cfg) -> None:
    """A sweep's check of each job before the first job starts (lab.sweeps, lab.study): unknown keys, call
    arguments, values outside their range, and a dataset.root that is not a folder (a single run finds that out
    when it loads the data, in one line too, before decoding anything)."""
    check_keys_and_values(cfg)
    check_tracker(cfg)
    root = OmegaConf.select(cfg, "dataset.root", default=None)
    if root and not Path(str(root)).expanduser().is_dir():
        raise ConfigError(f"dataset.root={root}: {Path(str(root)).expanduser().absolute()} is not a folder: check "
                          f"the path (a relative one starts at the current folder)")


def check_tracker(cfg) -> None:
    """lab's trackers (lab/tracking/) check their own settings: a URI that cannot work, a server that is not up."""
    module = tracker_module(cfg.get("logger"))
    if module:
        importable("logger", f"{module}.check_settings")(cfg.logger)


def check_keys_and_values(cfg) -> None:
    check_unknown_keys(cfg)
    check_call_arguments(cfg)
    check_rules(cfg)
    check_test_tta(cfg)
    check_model(cfg)


def validate(cfg, ctx=None) -> None:
    """Raise ConfigError for an unknown key, a value outside its allowed range, a GPU run without a GPU, or
    DDP under -m (ctx: the run's lab.context.RunContext; None: a single run): all before any data is touched."""
    check_keys_and_values(cfg)
    if ctx is None or not ctx.in_sweep:  # a sweep checked its tracker before its first job: a server down since
        check_tracker(cfg)               # then costs the tracker, not the job
    check_accelerator(cfg)
    check_ddp_outside_sweeps(cfg, ctx)
