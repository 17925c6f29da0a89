import logging

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


# Zagoruyko & Komodakis 2016, Table 1 and their code: WRN-28-10 has 36.5M parameters at CIFAR-10's 10 classes.
WRN_PARAMS = {"wrn16_4": 2_748_890, "wrn28_10": 36_479_194, "wrn40_4": 8_949_210}


@pytest.mark.parametrize("name", sorted(WRN_PARAMS))
def test_wide_resnets_have_the_papers_size_and_keep_a_small_image_to_the_last_stage(name):
    net = build_model(compose([f"model={name}"]).model, num_classes=10, in_channels=3)
    assert count_params(net) == WRN_PARAMS[name]
    assert net.stem.stride == (1, 1) and net.stem.kernel_size == (3, 3)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_wide_resnet_checks_its_own_keys_and_its_dropout_sits_inside_each_block():
    with pytest.raises(ConfigError, match=r"model.depth=20 is not allowed: a Wide ResNet's depth is 6n \+ 4"):
        build_model(compose(["model=wrn16_4", "model.depth=20"]).model, 10, 3)
    net = build_model(compose(["model=wrn16_4", "model.dropout=0.3", "model.widen_factor=1"]).model, 10, 1)
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.3] * 6  # 2 blocks x 3 stages


def test_timm_resnet_gets_the_cifar_stem_and_the_same_size_as_labs(caplog):
    caplog.set_level(logging.INFO, logger="lab")
    timm_net = build_model(compose(["model=timm", "model.name=resnet18"]).model, 10, 1, image_size=28)
    assert timm_net.conv1.stride == (1, 1) and timm_net.conv1.kernel_size == (3, 3)
    assert isinstance(timm_net.maxpool, torch.nn.Identity)
    assert "stem made CIFAR-form for 28x28 images" in caplog.text
    # The same net as lab's resnet18 (3x3 stride-1 stem, no max-pool, option-B shortcuts), weight for weight.
    assert count_params(timm_net) == count_params(build_model(compose(["model=resnet18"]).model, 10, 1))
    large = build_model(compose(["model=timm", "model.name=resnet18"]).model, 10, 3, image_size=224)
    assert large.conv1.stride == (2, 2)  # cifar_stem=auto leaves a large image's stem as timm builds it


def test_other_timm_families_run_as_built_and_say_how_far_their_stem_downsamples(caplog):
    caplog.set_level(logging.INFO, logger="lab")
    net = build_model(compose(["model=timm", "model.name=convnext_atto"]).model, 10, 3, image_size=32)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert "timm's stem downsamples by 4, so a 32x32 image reaches its first stage at 8x8" in caplog.text


@pytest.mark.parametrize("overrides,message", [
    (["model=timm", "model.name=resnet81"], r"model.name='resnet81' is not a timm model \(did you mean resnet18"),
    (["model=timm", "+model.timm_kwargs.drop_pathrate=0.1"], r"model.timm_kwargs=.* is not taken by timm's resnet18"),
    (["model=resnet18", "model._target_=lab.model.resnet.resnett"], r"cannot be imported: check its spelling"),
    (["model=resnet18", "model._target_=torch.nn.Linear"], r"does not take num_classes and in_channels"),
    (["model=resnet18", "+model.widht=16"], r"model.widht is not an argument of lab.model.resnet.resnet"),
])
def test_a_bad_model_is_one_line_before_any_data(overrides, message):
    from lab.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose(overrides))


def test_timm_not_installed_names_the_extra(monkeypatch):
    import sys

    from lab.config import validate

    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ModuleNotFoundError
    with pytest.raises(ConfigError, match=r'model=timm needs the timm package, .*pip install -e "\.\[timm\]"'):
        validate(compose(["model=timm"]))


def test_pretrained_weights_without_a_network_are_refused_before_any_data(monkeypatch):
    from lab.config import validate
    from lab.model import timm_net

    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(timm_net.socket, "create_connection", no_network)
    monkeypatch.setattr(timm_net, "in_hub_cache", lambda repo: False)
    with pytest.raises(ConfigError, match=r"model.pretrained=true needs resnet18's weights from huggingface.co, "
                                          r"which cannot be reached .*set model.pretrained=false"):
        validate(compose(["model=timm", "model.pretrained=true"]))


def test_a_model_yaml_and_builder_of_ones_own_train_without_changing_lab(tmp_path):
    """docs/extending.md's example: a yaml in the user's config dir names a builder in the user's module."""
    from tests.conftest import results, run_train

    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "tiny_cnn.yaml").write_text(
        "_target_: my_nets.tiny_cnn\nwidth: 32\nchannels_last: true\ncompile: false\n")
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n\n"
        "def tiny_cnn(num_classes, in_channels, width=32):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))\n")
    proc = run_train(f"--config-dir={tmp_path / 'conf'}", "model=tiny_cnn", "model.width=16", "dataset=digits",
                     "trainer.max_epochs=1", "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path / 'run'}",
                     env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = results(tmp_path / "run")
    assert record["status"] == "ok" and record["params"] == 1 * 16 * 9 + 16 + 2 * 16 + 16 * 10 + 10
    bad = run_train(f"--config-dir={tmp_path / 'conf'}", "model=tiny_cnn", "+model.widht=16", "dataset=digits",
                    f"hydra.run.dir={tmp_path / 'bad'}", env={"PYTHONPATH": str(tmp_path)})
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "Traceback" not in bad.stderr
    assert "model.widht is not an argument of my_nets.tiny_cnn (did you mean width?)" in bad.stderr


@pytest.mark.parametrize("model,params", [(["model=wrn16_4", "model.widen_factor=1"], 174_778),
                                          (["model=timm", "model.name=resnet18"], 11_172_810)])
def test_a_wide_resnet_and_a_timm_model_train_from_the_command_line(tmp_path, model, params):
    from tests.conftest import results, run_train

    proc = run_train("dataset=digits", *model, "trainer.max_epochs=1", "trainer.accelerator=cpu",
                     f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = results(tmp_path)
    assert record["status"] == "ok" and record["params"] == params and record["test_acc"] > 0.1
