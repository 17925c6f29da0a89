"""CIFAR-form ResNets (conf/model/): 3x3 stride-1 stem, no max-pool, global average pool, linear head.

An ImageNet stem (7x7 stride 2 + max-pool) throws away 3/4 of a 32x32 image before the first block and
costs ~15 points on CIFAR-100, so every depth here uses the CIFAR stem (He et al. 2016, section 4.2 style).
"""
import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # Projection only where the shape changes (option B of the ResNet paper).
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, width, stride), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width), nn.BatchNorm2d(width)
        self.shortcut = shortcut(in_channels, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        self.shortcut = shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def last_branch_bn(block: nn.Module) -> nn.BatchNorm2d:
    return block.bn3 if isinstance(block, Bottleneck) else block.bn2


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    def __init__(self, block: str, layers: list[int], num_classes: int, in_channels: int = 3,
                 base_width: int = 64, zero_init_residual: bool = False):
        super().__init__()
        block_cls = BLOCKS[block]
        self.stem = nn.Sequential(conv3x3(in_channels, base_width), nn.BatchNorm2d(base_width), nn.ReLU())
        stages, channels = [], base_width
        for i, num_blocks in enumerate(layers):
            width = base_width * 2**i
            for j in range(num_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(block_cls(channels, width, stride))
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
    return ResNet(model_cfg["block"], list(model_cfg["layers"]), num_classes, in_channels,
                  model_cfg.get("base_width", 64), bool(model_cfg.get("zero_init_residual", False)))


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
