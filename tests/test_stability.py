"""Training stability: warm-up, zero-init of residual branches, label smoothing, the few-steps warning, and (slow)
a ResNet50 that trains where the default-initialised one blew up."""
import logging
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lab.dataset.datamodule import DataModule, few_steps_warning
from lab.model import Bottleneck, build_model
from lab.module import Classifier
from lab.scheduler import LinearWarmup, build_scheduler
from tests.conftest import compose

BATCHES, EPOCHS, LR = 4, 4, 0.1  # batches an epoch


def batch_lrs(option: str, *overrides: str) -> list[float]:
    """The lr of each training batch of an EPOCHS-epoch run, stepped as Lightning steps the scheduler dict."""
    cfg = compose([f"scheduler={option}", f"trainer.max_epochs={EPOCHS}", f"optimizer.lr={LR}", *overrides])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    trainer = SimpleNamespace(estimated_stepping_batches=BATCHES * EPOCHS, num_training_batches=BATCHES,
                              accumulate_grad_batches=1, max_epochs=EPOCHS)
    scheduler = build_scheduler(cfg.scheduler, optimizer, trainer) or {"interval": "none"}
    lrs = []
    for epoch in range(EPOCHS):
        for _ in range(BATCHES):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler["interval"] == "step":
                scheduler["scheduler"].step()
        if scheduler["interval"] == "epoch":
            scheduler["scheduler"].step()
    return lrs


def test_warmup_without_a_scheduler_ramps_then_holds_the_lr():
    assert batch_lrs("none", "scheduler.warmup_epochs=1") == pytest.approx(
        [LR / 4, LR / 2, 3 * LR / 4] + [LR] * (BATCHES * EPOCHS - 3))
    assert batch_lrs("none", "scheduler.warmup_epochs=0.5")[:3] == pytest.approx([LR / 2, LR, LR])


def test_warmup_keeps_multistep_milestones_in_epochs():
    lrs = batch_lrs("multistep", "scheduler.warmup_epochs=1", "scheduler.milestones=[2,3]")
    assert lrs[:BATCHES] == pytest.approx([LR * (i + 1) / BATCHES for i in range(BATCHES)])
    epochs = [lrs[e * BATCHES:(e + 1) * BATCHES] for e in range(1, EPOCHS)]
    assert epochs == [pytest.approx([LR] * BATCHES), pytest.approx([LR / 10] * BATCHES),
                      pytest.approx([LR / 100] * BATCHES)]


def test_warmup_leaves_cosine_as_it_was_after_the_first_epoch():
    plain, warmed = batch_lrs("cosine"), batch_lrs("cosine", "scheduler.warmup_epochs=1")
    assert warmed[:BATCHES] == pytest.approx([LR * (i + 1) / BATCHES for i in range(BATCHES)])
    assert warmed[BATCHES:] == pytest.approx(plain[BATCHES:])
    # T_max = max_epochs: the lr of epoch e is the cosine at e / max_epochs
    assert plain[::BATCHES] == pytest.approx([LR * (1 + math.cos(math.pi * e / EPOCHS)) / 2 for e in range(EPOCHS)])


def test_warmup_multiplies_onecycle_per_batch():
    plain, warmed = batch_lrs("onecycle"), batch_lrs("onecycle", "scheduler.warmup_epochs=1")
    assert warmed == pytest.approx([lr * min(1, (i + 1) / BATCHES) for i, lr in enumerate(plain)])


def test_no_warmup_keeps_the_labs_schedulers_as_they_were():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    trainer = SimpleNamespace(max_epochs=50)
    assert build_scheduler(compose(["scheduler=none"]).scheduler, optimizer, trainer) is None
    multistep = build_scheduler(compose(["scheduler=multistep"]).scheduler, optimizer, trainer)
    assert multistep["interval"] == "epoch" and type(multistep["scheduler"]).__name__ == "MultiStepLR"


def test_warmup_state_is_plain_and_resumes_at_the_same_lr(tmp_path):
    def warmed_multistep():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
        base = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1], gamma=0.1)
        return optimizer, LinearWarmup(optimizer, warmup_steps=3, steps_per_epoch=BATCHES, base=base)

    optimizer, scheduler = warmed_multistep()
    for _ in range(BATCHES + 1):  # into epoch 1: past the milestone and the warm-up
        optimizer.step()
        scheduler.step()
    torch.save(scheduler.state_dict(), tmp_path / "state.pt")
    resumed_optimizer, resumed = warmed_multistep()
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for s, o in ((scheduler, optimizer), (resumed, resumed_optimizer)):
        o.step()
        s.step()
    assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())
    assert scheduler.get_last_lr() == pytest.approx([LR / 10])


@pytest.mark.parametrize("name,block_bn", [("resnet50", "bn3"), ("resnet18", "bn2")])
def test_zero_init_residual_zeroes_the_last_bn_of_every_branch(name, block_bn):
    cfg = compose([f"model={name}", "model.base_width=8", "model.zero_init_residual=true"])
    net = build_model(cfg.model, num_classes=10, in_channels=3)
    blocks = list(net.stages)
    assert all(getattr(b, block_bn).weight.abs().sum() == 0 for b in blocks)
    assert all(b.bn1.weight.abs().sum() > 0 for b in blocks)  # only the branch's last BN
    off = build_model(compose([f"model={name}", "model.base_width=8", "model.zero_init_residual=false"]).model, 10, 3)
    assert all(getattr(b, block_bn).weight.abs().sum() > 0 for b in off.stages)


def test_resnet50_zero_inits_its_bottlenecks_by_default():
    net = build_model(compose(["model=resnet50", "model.base_width=8"]).model, num_classes=10, in_channels=3)
    assert all(isinstance(b, Bottleneck) and b.bn3.weight.abs().sum() == 0 for b in net.stages)


def smoothed_and_plain_losses(smoothing: float) -> tuple[float, float]:
    torch.manual_seed(0)
    net = build_model(compose(["model.base_width=8"]).model, num_classes=10, in_channels=3)
    module = Classifier(net, {"num_classes": 10, "config": {"loss": {"label_smoothing": smoothing}}})
    images, labels = torch.randn(8, 3, 8, 8), torch.arange(8)
    train_loss = float(module.training_step((images, labels), 0))
    module.validation_step((images, labels), 0)
    return train_loss, float(module.losses["val_loss"].compute())


def test_label_smoothing_changes_the_training_loss_only():
    (plain_train, plain_val), (smooth_train, smooth_val) = map(smoothed_and_plain_losses, (0.0, 0.2))
    assert compose().loss.label_smoothing == 0.0
    assert smooth_train != pytest.approx(plain_train, rel=1e-3)
    assert smooth_val == pytest.approx(plain_val)  # val_loss stays plain cross-entropy
    torch.manual_seed(0)
    net = build_model(compose(["model.base_width=8"]).model, num_classes=10, in_channels=3).train()
    logits = net(torch.randn(8, 3, 8, 8))
    assert smooth_train == pytest.approx(float(F.cross_entropy(logits, torch.arange(8), label_smoothing=0.2)),
                                         rel=1e-5)


def test_few_steps_warning_names_the_numbers_and_a_batch_size(caplog):
    message = few_steps_warning(600, 256)
    assert "only 2 optimizer step(s)" in message and "600 training images" in message
    assert "dataset.batch_size=256" in message and "try dataset.batch_size=32" in message
    assert few_steps_warning(1294, 32) is None  # digits: 40 steps
    assert "only 3 optimizer step(s)" in few_steps_warning(1294, 64, world_size=2, accumulate=4)
    data = SimpleNamespace(train_labels=torch.zeros(600))
    module = DataModule(data, 256, None, 0, False)
    module.trainer = SimpleNamespace(is_global_zero=True, world_size=1, accumulate_grad_batches=1)
    with caplog.at_level(logging.WARNING, logger="lab"):
        module.setup("fit")
    assert caplog.messages == [message]


def test_traffic_signs_batch_fits_a_small_folder_and_the_command_line_wins():
    assert compose(["+experiment=traffic_signs", "dataset.root=signs"]).dataset.batch_size == 64
    assert compose(["+experiment=traffic_signs", "dataset.root=signs", "dataset.batch_size=256"]
                   ).dataset.batch_size == 256
