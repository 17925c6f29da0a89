"""CIFAR-form ResNets (conf/model/resnet*.yaml): 3x3 stride-1 stem, no max-pool, global average pool, linear head.

An ImageNet stem (7x7 stride 2 + max-pool) throws away 3/4 of a 32x32 image before the first block and costs ~15
points on CIFAR-100, so every depth here uses the CIFAR stem. Bottleneck nets (resnet50) start each residual
branch at zero (model.zero_init_residual, Goyal et al. 2017) and average-pool in their projection shortcuts
(model.shortcut=avgpool, ResNet-D of He et al. 2019): without both the ResNet50 blows up in its first epoch
(BENCHMARKS.md, "ResNet50 stability")."""
import torch
from torch import nn

from lab.errors import ConfigError


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


def resnet(num_classes: int, in_channels: int, block: str = "basic", layers=(2, 2, 2, 2), base_width: int = 64,
           zero_init_residual: bool = False, shortcut: str = "conv") -> ResNet:
    """conf/model/resnet*.yaml's builder: model.block, model.layers, model.base_width, model.zero_init_residual and
    model.shortcut are its keys, checked here."""
    layers = list(layers)
    checks = [("block", block, block in BLOCKS, " or ".join(BLOCKS)),
              ("layers", layers, len(layers) > 0 and all(is_count(n) for n in layers),
               "a list of block counts >= 1, e.g. [2, 2, 2, 2]"),
              ("base_width", base_width, is_count(base_width), "an integer >= 1, e.g. 64"),
              ("zero_init_residual", zero_init_residual, isinstance(zero_init_residual, bool), "true or false"),
              ("shortcut", shortcut, shortcut in SHORTCUTS, " or ".join(SHORTCUTS))]
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"model.{key}={value!r} is not allowed: must be {allowed} (set it with model.{key}=...)")
    return ResNet(block, layers, num_classes, in_channels, base_width, zero_init_residual, shortcut)


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
