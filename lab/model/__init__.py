"""conf/model/: a net is its yaml's `_target_`, a builder called with the data's class count and input channels and
the yaml's own keys: `builder(num_classes, in_channels, **keys)` (and `image_size=` when it takes one). lab's
families: resnet.py (CIFAR-form ResNets), wrn.py (Wide ResNets), timm_net.py (any timm model). Each builder checks
its own keys; docs/extending.md shows how to add one from your own config dir.

lab reads three keys of every model node itself: `_target_`, `channels_last` and `compile` (how the net trains, not
what it is); the builder gets the rest."""
import logging
from contextlib import contextmanager

import torch
from torch import nn

from lab.errors import ConfigError, first_line
from lab.saved_config import todays_model
from lab.targets import check_keys, importable, parameters, takes_any_keyword

log = logging.getLogger("lab")
RUN_KEYS = ("_target_", "channels_last", "compile")
# A placeholder class count for checking a model before the data says how many classes there are.
CHECK_CLASSES = 10


def model_keys(model_cfg) -> dict:
    """The model node as a plain dict; one saved before models had a `_target_` (a lab ResNet with name, block,
    layers, ...) reads as today's."""
    from omegaconf import OmegaConf

    keys = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else dict(model_cfg)
    return todays_model(keys)


def builder_of(keys: dict):
    """The builder a model node names, and its arguments as lab would call it; ConfigError for a node whose
    `_target_` is missing, does not import, or does not take the data's arguments or the node's keys."""
    target = keys.get("_target_")
    if not target:
        raise ConfigError("model._target_ is not set: a model yaml names its builder, e.g. _target_: "
                          "lab.model.resnet.resnet (docs/extending.md)")
    builder = importable("model", target)
    params = parameters(builder)
    if params and not takes_any_keyword(params) and not {"num_classes", "in_channels"} <= set(params):
        raise ConfigError(f"model._target_={target} does not take num_classes and in_channels: a model builder is "
                          f"def build(num_classes, in_channels, **its keys) -> nn.Module (docs/extending.md)")
    check_keys("model", target, [k for k in keys if k not in RUN_KEYS], params, {"num_classes", "in_channels"})
    return builder, params


def build_model(model_cfg, num_classes: int, in_channels: int, image_size: int | None = None) -> nn.Module:
    """The net of a conf/model node (or a checkpoint's saved one)."""
    keys = model_keys(model_cfg)
    builder, params = builder_of(keys)
    kwargs = {k: v for k, v in keys.items() if k not in RUN_KEYS}
    if image_size is not None and ("image_size" in params) and "image_size" not in kwargs:
        kwargs["image_size"] = image_size
    try:
        net = builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"model._target_={keys['_target_']} failed to build a net with these keys "
                          f"({type(err).__name__}: {first_line(err)}): check the model.* values") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"model._target_={keys['_target_']} returned a {type(net).__name__}, not a torch nn.Module")
    return net


def check_model(model_cfg, in_channels: int = 3, image_size: int = 32) -> None:
    """Build the net on the meta device (no memory, no weights, no log lines): every check its builder makes runs
    before any data is loaded."""
    with torch.device("meta"), quiet("lab"):
        build_model(model_cfg, CHECK_CLASSES, in_channels, image_size)


@contextmanager
def quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def narrowest_conv(net: nn.Module) -> int | None:
    widths = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]
    return min(widths) if widths else None


def ready_to_train(net: nn.Module, model_cfg, on_cuda: bool) -> tuple[nn.Module, bool]:
    """The net in the memory layout it trains in, compiled when model.compile asks; -> (net, channels_last).
    channels_last is skipped where it hangs: on the CPU, oneDNN (torch 2.14) segfaults or spins forever in the
    backward pass of channels_last convolutions this narrow (seen with 2, 3, 4 and 6 channels)."""
    channels_last = model_cfg.get("channels_last", True)
    narrowest = narrowest_conv(net)
    if channels_last and narrowest is not None and narrowest < 8 and not on_cuda:
        log.warning(f"model.channels_last ignored: the net has convolutions {narrowest} channels wide, under 8, where "
                    "channels_last convolutions hang or crash on the CPU (oneDNN); training in the default layout")
        channels_last = False
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if model_cfg.get("compile", False):
        net.compile()  # in place: the state_dict keeps its keys (torch.compile(net) would prefix _orig_mod.)
    return net, channels_last


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
