"""Distillation: the two losses against hand-computed values, gradients, teacher checks, end to end."""
import functools
import math

import pytest
import torch

from lab.checkpoint import load_checkpoint
from lab.config import validate
from lab.dataset import ImageData
from lab.distill import Distiller, build_distiller, logits_loss, soft_target_loss
from lab.errors import CheckpointError, ConfigError
from lab.module import Classifier
from tests.conftest import TINY, compose, results, run_train

STUDENT = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]])
TEACHER = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])


def kl_by_hand(s, t, T):
    total = 0.0
    for s_row, t_row in zip(s.tolist(), t.tolist()):
        zs, zt = sum(math.exp(v / T) for v in s_row), sum(math.exp(v / T) for v in t_row)
        for a, b in zip(s_row, t_row):
            p, q = math.exp(b / T) / zt, math.exp(a / T) / zs
            total += p * math.log(p / q)
    return total / len(s)


@pytest.mark.parametrize("T", [1.0, 3.0, 4.0])
def test_soft_target_loss_is_batch_mean_kl_times_t_squared(T):
    assert soft_target_loss(STUDENT, TEACHER, T).item() == pytest.approx(kl_by_hand(STUDENT, TEACHER, T) * T * T,
                                                                         rel=1e-5)


def test_losses_vanish_when_student_equals_teacher():
    assert soft_target_loss(TEACHER, TEACHER, 4.0).item() == pytest.approx(0.0, abs=1e-6)  # float32 rounding x T^2
    assert logits_loss(TEACHER, TEACHER).item() == 0.0


def test_logits_loss_is_mean_squared_error():
    expected = ((STUDENT - TEACHER) ** 2).sum().item() / STUDENT.numel()
    assert logits_loss(STUDENT, TEACHER).item() == pytest.approx(expected)


def test_gradients_reach_the_student_and_never_the_teacher():
    torch.manual_seed(0)
    teacher, student = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    distiller = Distiller(teacher, "both", 0.1, 0.9, 4.0)
    module = Classifier(student, {"num_classes": 3}, distiller=distiller)
    module.train()
    assert not distiller.teacher.training  # frozen: eval mode while the student trains
    assert not any(key.startswith("distiller") for key in module.state_dict())  # not in the student's checkpoint
    images = torch.randn(5, 4)
    distiller.loss(images, student(images)).backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def tiny_data(dataset_name, num_classes, split=None):
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.long)
    return ImageData(images, labels, images, labels, [str(i) for i in range(num_classes)], (0.5,), (0.5,),
                     dataset_name=dataset_name, split=split)


def test_missing_teacher_names_the_teacher_command():
    with pytest.raises(ConfigError, match=r"distill\.teacher_ckpt=None .*\+experiment=teacher"):
        validate(compose(["distill=soft_target"]))
    validate(compose(["distill=none"]))  # the baseline needs no teacher


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"f": functools.partial(print, "hi")}}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(path)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    # A 16-wide ResNet10 teacher keeps the test short; +experiment=teacher's ResNet50 is the same code path,
    # and the student (8 wide) rebuilds the teacher from its checkpoint alone.
    proc = run_train("+experiment=teacher", "model=resnet10", "model.base_width=16", "dataset=digits",
                     "trainer.max_epochs=3", "trainer.accelerator=cpu", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir / "checkpoints" / "best.ckpt"


def test_teacher_for_another_dataset_is_refused_with_both_named(teacher_ckpt):
    cfg = compose(["distill=soft_target", f"distill.teacher_ckpt={teacher_ckpt}"])
    with pytest.raises(CheckpointError, match=r"digits with 10 classes.*fake with 100"):
        build_distiller(cfg.distill, tiny_data("fake", 100))


def test_teacher_from_another_validation_split_is_warned_about(teacher_ckpt, caplog):
    cfg = compose(["distill=soft_target", f"distill.teacher_ckpt={teacher_ckpt}"])
    assert build_distiller(cfg.distill, tiny_data("digits", 10, split=(42, 0.1))) is not None
    assert "validation split" not in caplog.text  # the teacher's own seed and val_split
    build_distiller(cfg.distill, tiny_data("digits", 10, split=(7, 0.1)))
    assert "seed=42" in caplog.text and "seed=7" in caplog.text and "validation" in caplog.text


@pytest.mark.slow  # a 3-job sweep (14 s); the slow study test also runs teacher -> students end to end
def test_teacher_to_student_sweep_end_to_end(teacher_ckpt, tmp_path):
    sweep_dir = tmp_path / "kd"
    proc = run_train("-m", "+experiment=distill_soft", "model=resnet10", "dataset=digits", "trainer.max_epochs=1",
                     *TINY, "distill=none,soft_target,logits",
                     f"distill.teacher_ckpt={teacher_ckpt.parent.parent}", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"distill.teacher_ckpt={teacher_ckpt.parent.parent} is a run dir: using {teacher_ckpt}" in proc.stderr
    assert proc.stderr.count("teacher validation accuracy") == 2  # not for distill=none
    for kind in ("none", "soft_target", "logits"):
        res = results(sweep_dir / f"distill={kind}")
        assert res["status"] == "ok"
        assert (res["teacher_val_acc"] is None) == (kind == "none")
    header = (sweep_dir / "distill=soft_target" / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith("train_ce,train_distill")
    assert (sweep_dir / "summary.csv").exists()


def test_teacher_accuracy_counts_stay_on_the_loaders_device():
    # The meta device stands in for a GPU: a count made on the CPU and mixed into the device's counts fails.
    class Loader:
        images = torch.empty(0, device="meta")

        def __iter__(self):
            for n in (3, 2):
                yield torch.empty(n, 4, device="meta"), torch.zeros(n, dtype=torch.long, device="meta")

    seen = []
    teacher = torch.nn.Linear(4, 3).to("meta")
    acc = Distiller(teacher, "logits", 0.5, 0.5, 4.0).measure(Loader(), lambda t: seen.append(t.device.type)
                                                              or torch.tensor([4.0, 5.0]))
    assert seen == ["meta"] and acc == 0.8
