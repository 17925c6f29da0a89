"""Wide ResNets in CIFAR form (Zagoruyko & Komodakis 2016; conf/model/wrn*.yaml): WRN-depth-k has three stages of
(depth - 4) / 6 pre-activation blocks (BN-ReLU-conv3x3, BN-ReLU-dropout-conv3x3) at 16k, 32k and 64k channels after
a 16-channel 3x3 stem, then BN-ReLU, global average pool and a linear head. These are the nets the CIFAR and
Fashion-MNIST tables are written in: WRN-28-10 (36.5M parameters at 10 classes), WRN-40-4 (8.9M), WRN-16-4 (2.7M)."""
import torch
from torch import nn

from lab.errors import ConfigError


class WideBlock(nn.Module):
    """Pre-activation basic block; where the shape changes the shortcut is a 1x1 conv of the activated input, as in
    the paper's code (the activation is shared by both branches)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, out_channels, 3, stride, 1,
                                                                      bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(out_channels), nn.Conv2d(out_channels, out_channels, 3, 1, 1,
                                                                       bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        same_shape = stride == 1 and in_channels == out_channels
        self.shortcut = None if same_shape else nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        blocks_per_stage = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        stages, channels = [], 16
        for i, width in enumerate(widths):
            for j in range(blocks_per_stage):
                stages.append(WideBlock(channels, width, 2 if (i > 0 and j == 0) else 1, dropout))
                channels = width
        self.stages = nn.Sequential(*stages)
        self.bn, self.head = nn.BatchNorm2d(channels), nn.Linear(channels, num_classes)
        for m in self.modules():  # the paper's code: He init (fan_out) for convs, zero biases
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stages(self.stem(x))))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def wide_resnet(num_classes: int, in_channels: int, depth: int = 28, widen_factor: int = 10,
                dropout: float = 0.0) -> WideResNet:
    """conf/model/wrn*.yaml's builder: model.depth (6n + 4), model.widen_factor (k) and model.dropout (the
    paper's 0.3 between the two convs of a block; 0 = off), checked here."""
    if not (is_int(depth) and depth >= 10 and (depth - 4) % 6 == 0):
        raise ConfigError(f"model.depth={depth!r} is not allowed: a Wide ResNet's depth is 6n + 4 with n >= 1 blocks "
                          f"a stage (10, 16, 22, 28, 40, ...); set it with model.depth=...")
    if not (is_int(widen_factor) and widen_factor >= 1):
        raise ConfigError(f"model.widen_factor={widen_factor!r} is not allowed: must be an integer >= 1, e.g. 4 "
                          f"(set it with model.widen_factor=...)")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout={dropout!r} is not allowed: must be a number in [0, 1), e.g. 0.3 "
                          f"(set it with model.dropout=...)")
    return WideResNet(depth, widen_factor, num_classes, in_channels, float(dropout))


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
