"""model=timm model.name=NAME: any model of timm, the field's model zoo (pip install -e ".[timm]"), with the data's
class count and input channels.

timm's stems are built for 224-pixel images (every ResNet stem_type strides by 2 and max-pools: a 32x32 image
reaches the first stage at 8x8). For small images (model.cifar_stem=auto: image_size <= 64) the ResNet family's
stem is made CIFAR-form, as lab's own ResNets: a 3x3 stride-1 conv and no max-pool. Other families run as timm
builds them, and lab says once how much their stem downsamples. No weights are fetched unless model.pretrained=true."""
import difflib
import logging
import socket

import torch
from torch import nn

from lab.errors import ConfigError

log = logging.getLogger("lab")
HUB_HOST = "huggingface.co"  # where timm's pretrained weights come from
SMALL_IMAGES = 64  # cifar_stem=auto: images this size or smaller get the CIFAR stem


def timm_model(num_classes: int, in_channels: int, name: str = "resnet18", pretrained: bool = False,
               cifar_stem: bool | str = "auto", image_size: int = 32, timm_kwargs: dict | None = None) -> nn.Module:
    """conf/model/timm.yaml's builder: model.name (any timm.list_models() name), model.pretrained, model.cifar_stem
    (auto, true, false) and model.timm_kwargs (other timm.create_model arguments, e.g. {drop_path_rate: 0.1})."""
    timm = import_timm()
    check_name(timm, name)
    if cifar_stem not in ("auto", True, False):
        raise ConfigError(f"model.cifar_stem={cifar_stem!r} is not allowed: must be auto (for images of "
                          f"{SMALL_IMAGES} px or less), true or false (set it with model.cifar_stem=...)")
    if not isinstance(pretrained, bool):
        raise ConfigError(f"model.pretrained={pretrained!r} is not allowed: must be true or false")
    kwargs = dict(timm_kwargs or {})
    if timm.models.get_pretrained_cfg(name) is not None and timm.models.get_pretrained_cfg(name).fixed_input_size:
        kwargs.setdefault("img_size", image_size)  # a ViT's position embeddings are sized by the image
    checking = torch.get_default_device().type == "meta"  # lab.model.check_model builds on the meta device
    if pretrained:
        check_weights_reachable(timm, name)
    try:
        net = timm.create_model(name, pretrained=pretrained and not checking, num_classes=num_classes,
                                in_chans=in_channels, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model.timm_kwargs={kwargs} is not taken by timm's {name}: {err}") from None
    small = image_size <= SMALL_IMAGES if cifar_stem == "auto" else cifar_stem
    if small and has_resnet_stem(net):
        make_cifar_stem(net, in_channels)
        log.info(f"model=timm {name}: stem made CIFAR-form for {image_size}x{image_size} images (3x3 stride-1 conv, "
                 f"no max-pool{'; its pretrained stem weights are not used' if pretrained else ''})")
    else:
        say_stem_reduction(net, name, image_size)
    return net


def import_timm():
    try:
        import timm
    except ModuleNotFoundError:
        raise ConfigError('model=timm needs the timm package, which is not installed here: pip install -e ".[timm]"') \
            from None
    return timm


def check_name(timm, name) -> None:
    if isinstance(name, str) and timm.is_model(name):
        return
    close = difflib.get_close_matches(str(name), timm.list_models(), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else "timm.list_models() lists them, e.g. resnet18"
    raise ConfigError(f"model.name={name!r} is not a timm model ({hint}): set model.name=...")


def check_weights_reachable(timm, name: str) -> None:
    """model.pretrained=true fetches weights from the Hugging Face hub unless they are in its local cache."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"model.pretrained=true: timm has no pretrained weights for {name}; set model.pretrained="
                          f"false")
    if cfg.hf_hub_id and in_hub_cache(cfg.hf_hub_id):
        return
    try:
        socket.create_connection((HUB_HOST, 443), timeout=3).close()
    except OSError as err:
        raise ConfigError(f"model.pretrained=true needs {name}'s weights from {HUB_HOST}, which cannot be reached "
                          f"from here ({type(err).__name__}); set model.pretrained=false, or fetch them once on a "
                          f"machine with network into the Hugging Face cache (HF_HOME) this one reads") from None


def in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, f), str)
               for f in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"))


def has_resnet_stem(net: nn.Module) -> bool:
    """timm's ResNet family (resnet*, resnet*d, resnext*, seresnet*, wide_resnet*, ...): conv1, bn1, maxpool."""
    return all(hasattr(net, a) for a in ("conv1", "bn1", "maxpool", "layer1"))


def make_cifar_stem(net: nn.Module, in_channels: int) -> None:
    """A 3x3 stride-1 conv into as many channels as the stem had (a deep stem's three convs become one), no max-pool."""
    channels = net.bn1.num_features
    net.conv1 = nn.Conv2d(in_channels, channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()


def say_stem_reduction(net: nn.Module, name: str, image_size: int) -> None:
    info = getattr(net, "feature_info", None) or []
    reduction = info[0].get("reduction") if info and isinstance(info[0], dict) else None
    if reduction and reduction > 1:
        side = max(1, image_size // reduction)
        log.info(f"model=timm {name}: timm's stem downsamples by {reduction}, so a {image_size}x{image_size} image "
                 f"reaches its first stage at {side}x{side} (only the ResNet family's stem is made CIFAR-form)")
