"""CIFAR-form ResNets (conf/model/): 3x3 stride-1 stem, no max-pool, global average pool, linear head.

An ImageNet stem (7x7 stride 2 + max-pool) throws away 3/4 of a 32x32 image before the first block and costs ~15
points on CIFAR-100, so every depth here uses the CIFAR stem. Bottleneck nets (resnet50) start each residual
branch at zero (model.zero_init_residual, Goyal et al. 2017) and average-pool in their projection shortcuts
(model.shortcut=avgpool, ResNet-D of He et al. 2019): without both the ResNet50 blows up in its first epoch
(BENCHMARKS.md, "ResNet50 stability"). Every model key is read here."""
import logging

import torch
from torch import nn

log = logging.getLogger("lab")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def shortcut(in_channels: int, out_channels: int, stride: int, kind: str = "conv") -> nn.Module:
    # Projection only where the shape changes (option B of the ResNet paper).
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "avgpool" and stride > 1:
        # ResNet-D (He et al. 2019): average each stride x stride window, then project. A strided 1x1 conv keeps
        # 1 pixel in 4, and which one moves with every 1-pixel crop shift.
        return nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                             nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, shortcut_kind: str = "conv"):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, width, stride), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width), nn.BatchNorm2d(width)
        self.shortcut = shortcut(in_channels, width, stride, shortcut_kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, shortcut_kind: str = "conv"):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        self.shortcut = shortcut(in_channels, out_channels, stride, shortcut_kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def last_branch_bn(block: nn.Module) -> nn.BatchNorm2d:
    return block.bn3 if isinstance(block, Bottleneck) else block.bn2


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
SHORTCUTS = ("conv", "avgpool")


class ResNet(nn.Module):
    def __init__(self, block: str, layers: list[int], num_classes: int, in_channels: int = 3,
                 base_width: int = 64, zero_init_residual: bool = False, shortcut_kind: str = "conv"):
        super().__init__()
        block_cls = BLOCKS[block]
        self.stem = nn.Sequential(conv3x3(in_channels, base_width), nn.BatchNorm2d(base_width), nn.ReLU())
        stages, channels = [], base_width
        for i, num_blocks in enumerate(layers):
            width = base_width * 2**i
            for j in range(num_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(block_cls(channels, width, stride, shortcut_kind))
                channels = width * block_cls.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)
        if zero_init_residual:
            for block in self.stages:
                nn.init.zeros_(last_branch_bn(block).weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build_model(model_cfg, num_classes: int, in_channels: int) -> ResNet:
    """The net of a conf/model option; the arguments are all plain, so a checkpoint can rebuild it."""
    if model_cfg["block"] not in BLOCKS:
        raise ValueError(f"model.block={model_cfg['block']!r} is not one of {sorted(BLOCKS)}")
    kind = model_cfg.get("shortcut", "conv")  # checkpoints from before the key: conv
    if kind not in SHORTCUTS:
        raise ValueError(f"model.shortcut={kind!r} is not one of {list(SHORTCUTS)}")
    return ResNet(model_cfg["block"], list(model_cfg["layers"]), num_classes, in_channels,
                  model_cfg.get("base_width", 64), bool(model_cfg.get("zero_init_residual", False)), kind)


def ready_to_train(net: ResNet, model_cfg, on_cuda: bool) -> tuple[nn.Module, bool]:
    """The net in the memory layout it trains in, compiled when model.compile asks; -> (net, channels_last).
    channels_last is skipped where it hangs: on the CPU, oneDNN (torch 2.14) segfaults or spins forever in the
    backward pass of channels_last convolutions this narrow (seen with base_width 2, 3, 4 and 6)."""
    channels_last = model_cfg.channels_last
    if channels_last and model_cfg.base_width < 8 and not on_cuda:
        log.warning(f"model.channels_last ignored: model.base_width={model_cfg.base_width} is under 8, where "
                    "channels_last convolutions hang or crash on the CPU (oneDNN); training in the default layout")
        channels_last = False
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if model_cfg.compile:
        net.compile()  # in place: the state_dict keeps its keys (torch.compile(net) would prefix _orig_mod.)
    return net, channels_last


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
