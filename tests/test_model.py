import pytest
import torch

from lab.errors import ConfigError
from lab.model import build_model, count_params
from tests.conftest import compose

# CIFAR-100 parameter counts of the CIFAR-form ResNets: weiaicunzai/pytorch-cifar100's README table gives
# ResNet18 11.2M, ResNet34 21.3M and ResNet50 23.7M for the same nets (3x3 stem, option-B shortcuts).
EXPECTED_PARAMS = {"resnet10": 4_949_412, "resnet18": 11_220_132, "resnet34": 21_328_292,
                   "resnet50": 23_705_252}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_param_counts_match_published_cifar100_tables(name):
    cfg = compose([f"model={name}"])
    assert count_params(build_model(cfg.model, num_classes=100, in_channels=3)) == EXPECTED_PARAMS[name]


def test_cifar_stem_keeps_resolution_and_head_follows_class_count():
    cfg = compose(["model=resnet10"])
    net = build_model(cfg.model, num_classes=7, in_channels=1)
    assert net.stem[0].stride == (1, 1) and net.stem[0].kernel_size == (3, 3)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 7)


def test_unknown_block_is_named():
    with pytest.raises(ConfigError, match="model.block='dense' is not allowed: must be basic or bottleneck"):
        build_model({"block": "dense", "layers": [1]}, 10, 3)
