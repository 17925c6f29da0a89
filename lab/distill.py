"""conf/distill/: knowledge distillation from a frozen teacher that lab trained on the student's data.

Total loss = alpha * CE(student, labels) + beta * distill_loss(student, teacher). The lab's report
distilled from an ImageNet ResNet50 with an untrained 100-way head, i.e. from noise; here the teacher is a
lab checkpoint (+experiment=teacher) whose dataset and class count must match the student's."""
import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("lab")


def soft_target_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015: KL(softmax(t/T) || softmax(s/T)), batch mean, times T^2 so its gradients keep
    the same scale as CE's when T changes."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


def logits_loss(student_logits, teacher_logits) -> torch.Tensor:
    """Ba & Caruana 2014: regress the raw logits (mean squared error over batch and classes)."""
    return F.mse_loss(student_logits, teacher_logits)


class Distiller:
    """The frozen teacher and the loss weights. A plain object, not an nn.Module: the student's LightningModule
    holds it without registering the teacher, so the teacher's weights stay out of the student's checkpoint and
    Lightning's train()/eval() calls never reach it (it stays in eval mode: frozen batch-norm statistics)."""

    def __init__(self, teacher: nn.Module, kind: str, alpha: float, beta: float, temperature: float):
        self.teacher = teacher.eval().requires_grad_(False)
        self.kind, self.alpha, self.beta, self.temperature = kind, alpha, beta, temperature
        self.val_acc = None

    def to(self, device) -> "Distiller":
        self.teacher.to(device)
        return self

    def loss(self, images: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(images).float()
        student_logits = student_logits.float()
        loss = student_logits.new_zeros(())
        if self.kind in ("soft_target", "both"):
            loss = loss + soft_target_loss(student_logits, teacher_logits, self.temperature)
        if self.kind in ("logits", "both"):
            loss = loss + logits_loss(student_logits, teacher_logits)
        return loss

    @torch.no_grad()
    def measure(self, loader, reduce=lambda t: t) -> float:
        """Teacher accuracy on `loader`; `reduce` sums the counts over DDP ranks (each sees a shard)."""
        counts = torch.zeros(2, device=loader.images.device)  # correct, seen
        for images, labels in loader:
            counts[0] += (self.teacher(images).argmax(1) == labels).sum()
            counts[1] += len(labels)  # a Python number: torch.tensor(n) would live on the CPU
        correct, total = reduce(counts).tolist()
        self.val_acc = round(correct / max(total, 1), 4)
        return self.val_acc


def warn_if_split_differs(teacher_config: dict, data, ckpt_path) -> None:
    """The validation split is drawn from (seed, val_split): a teacher trained with others has learned some of
    the student's validation images, so its validation accuracy reads high (the test set is never touched)."""
    dataset = teacher_config.get("dataset", {})
    teacher_split, student_split = (teacher_config.get("seed"), dataset.get("val_split")), data.split
    if student_split[1] > 0 and None not in teacher_split and tuple(teacher_split) != tuple(student_split):
        log.warning(f"teacher {ckpt_path} was trained with seed={teacher_split[0]}, "
                    f"dataset.val_split={teacher_split[1]}, this student with seed={student_split[0]}, "
                    f"dataset.val_split={student_split[1]}: the teacher has seen part of the student's validation "
                    "split, so its validation accuracy reads high; same seed and val_split give a clean split")


def build_distiller(cfg, data, channels_last: bool = True) -> Distiller | None:
    """The teacher of distill.teacher_ckpt, checked against the student's data (an ImageData), or None for
    distill=none."""
    if cfg is None or cfg.kind == "none":
        return None
    from lab.checkpoint import check_matches_data, checkpoint_of, load_checkpoint, net_from_checkpoint

    teacher_path = checkpoint_of(cfg.teacher_ckpt, "distill.teacher_ckpt")
    teacher, hp = net_from_checkpoint(load_checkpoint(teacher_path), teacher_path)
    check_matches_data(hp, data, teacher_path, "train the teacher on the student's dataset (python -m lab.train "
                       "+experiment=teacher with the student's dataset settings)", same_dataset=True)
    if data.split is not None:
        warn_if_split_differs(hp.get("config", {}), data, teacher_path)
    if channels_last:  # the student's memory format, so both convs take the same fast path
        teacher = teacher.to(memory_format=torch.channels_last)
    return Distiller(teacher, cfg.kind, cfg.alpha, cfg.beta, cfg.get("temperature"))
