"""ema.decay: an exponential moving average of the weights, with Lightning's own EMAWeightAveraging.

Lightning swaps the average in for validation (so val_acc and best.ckpt rank the average) and copies it over the
weights when fit ends (so the last weights tested are the average); every checkpoint's state_dict holds the average
(lab.eval, lab.predict and a distillation teacher read it) and `current_model_state` the trained weights, which a
resumed run continues from. Three things lab changes, each a few lines:
- the average lives on the training device: Lightning builds it in setup(), before the module is moved there, so on
  a GPU every update would copy the weights across;
- the update: AveragedModel.update_parameters reads its step counter on the host twice a step (`n_averaged == 0`,
  `> 0`), and moves it to the device, each a wait for every queued kernel on a GPU. lab's update is one foreach lerp
  that knows the step from the trainer's count (tests/test_sync.py holds it to that). With ema.warmup the decay
  ramps up as min(decay, (1 + step) / (10 + step)), as TensorFlow's ExponentialMovingAverage(num_updates) and
  timm's ModelEmaV3(warmup) do: at 0.999 a run of 840 steps would otherwise keep 43% (0.999^840) of its first,
  untrained weights in the average;
- a checkpoint loaded outside fit (testing best.ckpt) keeps its averaged state_dict: Lightning would restore the
  trained weights from `current_model_state`, and best.ckpt would be tested without its average."""
from itertools import chain

import torch
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    def __init__(self, decay: float, warmup: bool = True):
        super().__init__(decay=decay)
        self.decay, self.warmup = decay, warmup

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)
        if self._average_model is not None:  # the checkpoint's copy of the counter: only ever added to
            self._average_model.n_averaged = self._average_model.n_averaged.cpu()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self._latest_update_step:  # an optimizer step was taken (gradient accumulation)
            self.update_average(pl_module, first=self._latest_update_step == 0, step=trainer.global_step)
            self._latest_update_step = trainer.global_step

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update_average(self, pl_module, first: bool, step: int) -> None:
        """average = decay * average + (1 - decay) * weights, batch-norm statistics included (use_buffers); the
        first update copies. Integer buffers (batch norm's step count) are counts, copied."""
        average = self._average_model
        pairs = list(zip(chain(average.module.parameters(), average.module.buffers()),
                         chain(pl_module.parameters(), pl_module.buffers())))
        floats = [(a, w) for a, w in pairs if a.is_floating_point()]
        if first:
            torch._foreach_copy_([a for a, _ in pairs], [w for _, w in pairs])
        elif floats:
            torch._foreach_lerp_([a for a, _ in floats], [w for _, w in floats], 1 - self.decay_at(step))
            for a, w in pairs:
                if not a.is_floating_point():
                    a.copy_(w)
        average.n_averaged += 1

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


def build_ema(cfg) -> EMA | None:
    """The callback of the ema node (ema.decay, ema.warmup), or None when it is off."""
    decay = cfg.get("decay") if cfg is not None else None
    return EMA(float(decay), bool(cfg.get("warmup", True))) if decay is not None else None

