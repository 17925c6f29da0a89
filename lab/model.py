"""CIFAR-form ResNets (conf/model/): 3x3 stride-1 stem, no max-pool, global average pool, linear head.

An ImageNet stem (7x7 stride 2 + max-pool) throws away 3/4 of a 32x32 image before the first block and
costs ~15 points on CIFAR-100, so every depth here uses the CIFAR stem (He et al. 2016, section 4.2 style).

Bottleneck nets (resnet50) start with bn3 of every block at zero (model.zero_init_residual, Goyal et al. 2017)
and average-pool in their projection shortcuts (model.shortcut=avgpool, ResNet-D of He et al. 2019). Measured
(BENCHMARKS.md, "ResNet50 stability"; the teacher's SGD lr 0.05 + cosine): with the default init and strided
1x1 shortcuts ResNet50 blows up in epoch 0 (digits at batch 32: train loss 11.9, test 0.28 after 15 epochs; a
learnable 32x32 100-class folder at batch 64: val 0.045 after 3 epochs, ResNet18 0.82). Warm-up alone (0.43)
or the lr scaled to the batch alone (0.86) do not fix it. Zero-init does (0.94), but the net then stalls for
epochs under crop augmentation: a stride-2 1x1 shortcut keeps one pixel in four, and a 1-pixel shift changes
which. With both: 0.986, every epoch's train loss under ln 10; 0.845 on the folder. Basic blocks keep the plain
form: they train without it, and zero-init slowed ResNet18 (0.82 -> 0.07 on the folder)."""
import torch
from torch import nn


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


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
