"""The LightningModule: a net, a loss (cross-entropy, plus distillation when a teacher is given), metrics.

Batches arrive normalised and augmented on the device (lab/dataset/loader.py), so the steps are only
forward, loss and metric updates. Nothing in a step waits for the device: no .item(), no Python number turned
into a device tensor (a blocking host-to-device copy); metrics accumulate on the device and are read once per
epoch. tests/test_sync.py holds the training and validation loops to that."""
import logging

import hydra
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lab.augment import flip_averaged
from lab.scheduler import build_scheduler

log = logging.getLogger("lab")


def accuracy_metrics(num_classes: int, top5: bool = True, per_class: bool = False) -> MetricCollection:
    # validate_args=False: the argument checks look at tensor values, a CPU-GPU sync on every step
    # (labels come from our own loader, so there is nothing to check).
    kwargs = dict(num_classes=num_classes, validate_args=False)
    metrics = {"acc": MulticlassAccuracy(average="micro", **kwargs)}
    if top5:
        metrics["acc_top5"] = MulticlassAccuracy(top_k=min(5, num_classes), average="micro", **kwargs)
    if per_class:
        metrics["per_class_acc"] = MulticlassAccuracy(average=None, **kwargs)
    # compute_groups=False: with shared state groups (torchmetrics 1.9) per_class_acc keeps its first value
    # after reset(), so the best checkpoint's test pass would report the last weights' per-class numbers.
    return MetricCollection(metrics, compute_groups=False)


class MeanLoss(Metric):
    """Per-image mean of a loss over an epoch, NaN and inf kept (a diverged run must read as diverged).

    Not torchmetrics' MeanMetric: its default strategy drops NaN with a warning, and with
    nan_strategy="disable" (1.9) it replaces the weights by ones, so a short last batch counts as a full one.
    The batch size is added as a Python number: a kernel argument, where turning it into a device tensor
    would be a host-to-device copy that waits for every queued kernel."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("loss_sum", torch.tensor(0.0), dist_reduce_fx="sum")  # per-image losses, summed
        self.add_state("images", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, loss: torch.Tensor, images: int) -> None:
        self.loss_sum += loss.detach().float() * images
        self.images += images

    def compute(self) -> torch.Tensor:
        return self.loss_sum / self.images


class Classifier(pl.LightningModule):
    """`hparams` must be plain (dicts, lists, numbers, strings): it is saved in every checkpoint and
    torch.load(weights_only=True) must read it back. It holds what lab.checkpoint needs to rebuild the net.
    `optimizer_cfg` is a conf/optimizer node (a `_partial_` factory), `scheduler_cfg` a conf/scheduler node;
    `distiller` a lab.distill.Distiller or None; `label_smoothing` conf/train.yaml's loss.label_smoothing;
    `test_tta` its test_tta (flip: test on the mean logits of each image and its mirror).

    Training batches carry int64 labels, or soft targets [N, classes] where augment.mix mixed the batch."""

    def __init__(self, net: nn.Module, hparams: dict, optimizer_cfg=None, scheduler_cfg=None, distiller=None,
                 label_smoothing: float = 0.0, test_tta: str = "none"):
        super().__init__()
        self.net = net
        self.save_hyperparameters(hparams)
        self.optimizer_cfg, self.scheduler_cfg = optimizer_cfg, scheduler_cfg
        self.epoch_lr = None
        self.test_outputs, self.predicted_batches = {}, []  # the last test pass's per-class accuracy and predictions
        self.label_smoothing = float(label_smoothing)
        self.test_tta = test_tta
        self.distiller = distiller  # a plain object, not a submodule: the teacher stays out of the checkpoint
        num_classes = hparams["num_classes"]
        # ModuleDict keys cannot be "train" (nn.Module.train), hence the _set suffix.
        # No top-5 on the training set: nothing reads it, and a top-k per step is hot-path work on a GPU.
        self.metrics = nn.ModuleDict({"train_set": accuracy_metrics(num_classes, top5=False),
                                      "val_set": accuracy_metrics(num_classes),
                                      "test_set": accuracy_metrics(num_classes, per_class=num_classes <= 100)})
        loss_names = ["train_loss", "val_loss", "test_loss"]
        if distiller is not None:
            loss_names += ["train_ce", "train_distill"]
        self.losses = nn.ModuleDict({name: MeanLoss() for name in loss_names})
        # Metric states go into checkpoints: a run stopped mid-epoch resumes with this epoch's partial sums.
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.persistent(True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def on_fit_start(self) -> None:
        if self.distiller is not None:
            self.distiller.to(self.device)
            acc = self.distiller.measure(self.trainer.datamodule.val_dataloader(),
                                         lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
            if self.trainer.is_global_zero:
                log.info(f"teacher validation accuracy: {acc:.4f}")

    def on_train_epoch_start(self) -> None:
        # The lr this epoch starts with: epoch-interval schedulers step before validation ends.
        self.epoch_lr = self.trainer.optimizers[0].param_groups[0]["lr"]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["epoch_lr"] = self.epoch_lr  # a mid-epoch resume skips on_train_epoch_start

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.epoch_lr = checkpoint.get("epoch_lr")
        for key in [k for k in checkpoint.get("state_dict", {}) if k.startswith("distiller.")]:
            del checkpoint["state_dict"][key]  # a teacher an older lab saved inside the student's checkpoint

    def training_step(self, batch, batch_idx):
        images, targets = batch  # mixed images come with soft targets, which F.cross_entropy takes as they are
        logits = self(images)
        # Smoothing is a training target only: val_loss and test_loss stay plain cross-entropy.
        ce = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        loss = ce
        if self.distiller is not None:
            distill = self.distiller.loss(images, logits)  # one teacher forward on the same (mixed) images
            loss = self.distiller.alpha * ce + self.distiller.beta * distill
            self.losses["train_ce"].update(ce, len(targets))
            self.losses["train_distill"].update(distill, len(targets))
        self.losses["train_loss"].update(loss, len(targets))
        # A mixed image counts as its larger share's class.
        labels = targets if targets.ndim == 1 else targets.argmax(1)
        self.metrics["train_set"].update(logits.detach(), labels)
        return loss

    def eval_step(self, batch, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = flip_averaged(self.net, images) if stage == "test" and self.test_tta == "flip" else self(images)
        self.losses[f"{stage}_loss"].update(F.cross_entropy(logits, labels), len(labels))
        self.metrics[f"{stage}_set"].update(logits, labels)
        return logits

    def validation_step(self, batch, batch_idx):
        self.eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        logits = self.eval_step(batch, "test")
        self.predicted_batches.append(logits.argmax(1))  # on the device: read once, at the end of the pass

    def compute(self, stage: str) -> dict:
        """Epoch values of one stage (synced across DDP ranks by torchmetrics), then reset."""
        values = {f"{stage}_{k}": v for k, v in self.metrics[f"{stage}_set"].compute().items()}
        for name, loss in self.losses.items():
            if name.startswith(stage):
                values[name] = loss.compute()
                loss.reset()
        self.metrics[f"{stage}_set"].reset()
        return values

    def on_validation_epoch_end(self) -> None:
        # Validation ends each training epoch, so the training metrics are complete here too; logging both
        # now puts one full row in callback_metrics before the epoch-end callbacks read it.
        values = self.compute("val")
        if not self.trainer.sanity_checking:
            values.update(self.compute("train"))
            values["lr"] = torch.tensor(self.epoch_lr, dtype=torch.float64)
        self.log_dict(values)

    def on_test_epoch_start(self) -> None:
        self.predicted_batches = []

    def on_test_epoch_end(self) -> None:
        values = self.compute("test")
        per_class_acc = values.pop("test_per_class_acc", None)
        self.log_dict(values)
        # This rank's share of the test set, in order; taken by take_test_outputs.
        predicted = torch.cat(self.predicted_batches).cpu() if self.predicted_batches else None
        self.test_outputs = dict(per_class_acc=per_class_acc, predicted=predicted)
        self.predicted_batches = []

    def take_test_outputs(self) -> dict:
        """What the last test pass found besides its logged metrics: per_class_acc (a tensor, or None above 100
        classes) and predicted (each test image's class, on the CPU)."""
        outputs, self.test_outputs = self.test_outputs, {}
        return outputs

    def configure_optimizers(self):
        optimizer = hydra.utils.instantiate(self.optimizer_cfg)(self.net.parameters())
        scheduler = build_scheduler(self.scheduler_cfg, optimizer, self.trainer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
