"""python -m lab.train: compose the config, check it, load the data once, fit, test, write results.json.

The files on the path, in the order they run: lab/cli.py (command-line checks) -> conf/train.yaml and its groups,
composed by Hydra -> lab/context.py (where the run runs, resolved once) -> lab/config.py (checks before any data)
-> lab/dataset/ (uint8 tensors on the device; lab/augment.py augments the training batches) -> lab/model/ (the net
its yaml's _target_ builds) -> lab/distill.py (the teacher) -> lab/module.py (loss, metrics, optimizer;
lab/scheduler.py) -> lab/trainer.py (device, precision, the Lightning Trainer; lab/recorder.py: metrics.csv,
checkpoints; lab/ema.py: the weights' average) -> lab/run_files.py (results.json). lab/resume.py takes over
for resume=true; a run that does not finish ends in lab/outcome.py; lab/errors.py holds the errors a user can
cause. Sweeps, tuning and Slurm plug in from their packages (a sweeper hands its jobs callbacks); a plain run
loads none of them."""
import logging
import math
import sys
import time

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from lab.cli import check_command_line
from lab.config import register_resolvers, validate
from lab.context import RunContext, claim_gpu, run_context
from lab.errors import ConfigError, exit_for_user_error
from lab.outcome import run_or_exit
from lab.run_files import FINISHED, print_results, read_results, save_predictions, save_results, trained_alone

register_resolvers()
log = logging.getLogger("lab")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    ctx = run_context()
    with trained_alone(ctx.run_dir, ctx.rank_zero):  # outside run_or_exit: a stop while waiting records nothing
        return run_or_exit(train, cfg, ctx)


def train(cfg: DictConfig, ctx: RunContext) -> float:
    resume = cfg.resume or ctx.requeued
    record = read_results(ctx.run_dir) if resume else None  # results.json: the run's record
    if record and record.get("status") in FINISHED:
        from lab.resume import report_finished

        return report_finished(cfg, ctx, record)
    claim_gpu(cfg.get("gpu_pool"))  # before any CUDA call: CUDA reads CUDA_VISIBLE_DEVICES only once
    if resume:
        from lab.resume import check_resume

        check_resume(cfg, ctx, record)  # other settings than the run's are refused; then validate()
    else:
        validate(cfg, ctx)
    return fit_and_test(cfg, ctx, resume)


def fit_and_test(cfg: DictConfig, ctx: RunContext, resume: bool) -> float:
    start, started_at = time.perf_counter(), time.time()
    resume_from = find_resume_checkpoint(ctx) if resume else None
    if ctx.rank_zero:  # replaces an old "ok" from an earlier run here: a kill now must not read as finished
        save_results(cfg, ctx, dict(status="running", test_acc=None))
    module, datamodule, trainer, recorder, plugged = build_run(cfg, ctx, started_at, resume)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    # Read before testing: trainer.test(ckpt_path=best) restores callback state (EpochRecorder's totals).
    trained = recorder.summary()
    results = dict(status="ok", test_acc=None, diverged_epoch=trained["diverged_epoch"],
                   **run_facts(trainer, module, datamodule, trained))
    if trained["diverged_epoch"] is not None:
        results["status"] = "diverged"
        log.warning(f"loss became NaN/inf in epoch {trained['diverged_epoch']}: stopped, status diverged")
    else:
        scores, predicted = test_checkpoints(trainer, module, datamodule)
        results.update(scores)
        if trainer.is_global_zero and trainer.world_size == 1:  # DDP ranks each hold a share of the predictions
            save_predictions(ctx.run_dir, predicted, datamodule.data.test_labels, results["scored_checkpoint"])
    for callback in plugged:  # what a sweeper's callback adds (a tuning trial its pruner stopped: pruned)
        results.update(callback.record())
    results.update(total_time_s=round(trained["earlier_processes_s"] + time.perf_counter() - start, 3),
                   started_at=round(started_at, 3), finished_at=round(time.time(), 3))
    if trainer.is_global_zero:
        save_results(cfg, ctx, results)
        if hasattr(trainer.logger, "record_outcome"):  # lab's trackers put the status on the run (lab/tracking/)
            trainer.logger.record_outcome(results)
        print_results(results)
        log.info(f"run dir: {ctx.run_dir}")
    return results["test_acc"] if results["test_acc"] is not None else math.nan


def find_resume_checkpoint(ctx: RunContext) -> str | None:
    from lab.resume import resume_checkpoint

    path = resume_checkpoint(ctx.run_dir)
    if path is not None:
        log.info(f"resume: continuing from {path}")
        return str(path)
    hint = "" if ctx.in_sweep or ctx.run_dir_given else " (to resume a single run, pass its dir as hydra.run.dir)"
    log.info(f"resume: no {ctx.run_dir / 'checkpoints' / 'last.ckpt'} to continue from: training from the start{hint}")
    return None


def build_run(cfg: DictConfig, ctx: RunContext, started_at: float, resume: bool = False):
    """Everything fit() needs: module, datamodule, trainer, the epoch recorder and the sweeper's callbacks."""
    import pytorch_lightning as pl

    from lab.dataset import load_training_data
    from lab.dataset.loader import DataModule
    from lab.distill import build_distiller
    from lab.ema import build_ema
    from lab.model import build_model, ready_to_train
    from lab.module import Classifier
    from lab.recorder import EpochRecorder
    from lab.targets import tracker_module
    from lab.trainer import build_trainer, set_cpu_threads, shows_progress_bar, uses_cuda

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    set_cpu_threads(cfg.cpu_threads, ctx.omp_threads_set)
    on_cuda = uses_cuda(cfg.trainer)
    data = load_training_data(cfg.dataset, cfg.paths.data_dir, cfg.seed, on_cuda)  # every image kept on the device
    # Before the teacher: same seed, same init.
    net = build_model(cfg.model, data.num_classes, data.channels, data.image_size)
    net, channels_last = ready_to_train(net, cfg.model, on_cuda)
    distiller = build_distiller(cfg.distill, data, channels_last)
    hparams = dict(model=OmegaConf.to_container(cfg.model, resolve=True), num_classes=data.num_classes,
                   in_channels=data.channels,
                   image_size=data.image_size, class_names=list(data.class_names), mean=list(data.mean),
                   std=list(data.std), dataset=data.dataset_name, config=OmegaConf.to_container(cfg, resolve=True),
                   choices=ctx.choices)
    module = Classifier(net, hparams, cfg.optimizer, cfg.scheduler, distiller, cfg.loss.label_smoothing,
                        cfg.test_tta)
    datamodule = DataModule(data, cfg.dataset, cfg.seed, channels_last, cfg.augment)
    recorder = EpochRecorder(ctx.run_dir, ["train_ce", "train_distill"] if distiller else [], ctx.job_started_at,
                             segment_started_at=started_at,
                             progress_every_s=None if shows_progress_bar() else cfg.progress_every_s,
                             step_loss_every=cfg.step_loss_every)
    plugged = [c for c in (hydra.utils.get_method(path)(cfg, ctx) for path in ctx.job_callbacks) if c is not None]
    ema = build_ema(cfg.get("ema"))
    job = None  # what a tracker of lab's is told of the run (lab/tracking/)
    if tracker_module(cfg.get("logger")):
        from lab.tracking import job_facts

        job = job_facts(cfg, ctx, resume)
    trainer = build_trainer(cfg, ctx.run_dir, [recorder, *plugged, *([ema] if ema else [])], job)
    return module, datamodule, trainer, recorder, plugged


def test_checkpoints(trainer, module, datamodule) -> tuple[dict, torch.Tensor | None]:
    """Test the last weights and, when validation is a held-out split, the best-validation checkpoint; -> (scores,
    each test image's predicted class from the scored checkpoint). With val_split=0 the "best" checkpoint was picked
    on the test set: neither its accuracy nor that validation (test) peak is reported."""
    last, predicted = score_test_set(trainer, module, datamodule)
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint else ""
    held_out = not datamodule.data.val_is_test  # else its best epoch is picked on test data
    scores = dict(last, test_acc_last=last["test_acc"], test_acc_best=None, scored_checkpoint="last",
                  best_val_acc=float(checkpoint.best_model_score) if best_path and held_out else None)
    if best_path and held_out:
        best, predicted = score_test_set(trainer, module, datamodule, ckpt_path=best_path)
        scores.update(best, test_acc_best=best["test_acc"], scored_checkpoint="best")
    return scores, predicted


def score_test_set(trainer, module, datamodule, ckpt_path=None) -> tuple[dict, torch.Tensor | None]:
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True)
    metrics = trainer.callback_metrics  # empty with trainer.limit_test_batches=0
    scores = {k: float(metrics[k]) if k in metrics else None for k in ("test_acc", "test_acc_top5", "test_loss")}
    outputs = module.take_test_outputs()
    if outputs.get("per_class_acc") is not None:
        scores["per_class_acc"] = per_class_scores(module.hparams["class_names"], outputs["per_class_acc"],
                                                   datamodule.data.test_labels)
    return scores, outputs.get("predicted")


def per_class_scores(class_names, accuracy: torch.Tensor, test_labels: torch.Tensor) -> dict:
    """{class name: accuracy}. A class without test images gets None: torchmetrics reports 0.0 for it, as if
    every one of its (no) images were wrong."""
    support = torch.bincount(test_labels.cpu(), minlength=len(class_names)).tolist()
    return {name: round(float(acc), 4) if n else None for name, acc, n in zip(class_names, accuracy, support)}


def run_facts(trainer, module, datamodule, trained: dict) -> dict:
    """What results.json says about the run besides accuracy: size, speed, precision, device, data. `trained` is
    EpochRecorder.summary()."""
    from lab.machine import describe_cpu
    from lab.model import count_params

    images = trained["train_images"] * trainer.world_size  # EpochRecorder counts rank 0's share
    train_time_s = trained["train_time_s"]
    return dict(epochs=trainer.current_epoch, train_time_s=round(train_time_s, 3),
                images_per_s=round(images / max(train_time_s, 1e-9), 1), world_size=trainer.world_size,
                time_to_first_step_s=trained["time_to_first_step_s"], params=count_params(module.net),
                precision=str(trainer.precision), device=str(trainer.strategy.root_device),
                teacher_val_acc=module.distiller.val_acc if module.distiller else None,
                num_classes=module.hparams["num_classes"], test_images=len(datamodule.data.test_labels),
                image_shape=list(datamodule.data.test_images.shape[1:]),  # [C, H, W]: what lab.study's time probe feeds
                processes=trained["processes"],  # the times and image counts cover every process of the run
                cpu_threads=torch.get_num_threads(), cpu=describe_cpu())


def cli() -> None:
    """Checks that need only the command line come before Hydra, which would print a composition error or
    its own traceback."""
    try:
        check_command_line(sys.argv[1:])
    except ConfigError as err:
        exit_for_user_error(err)
    main()


if __name__ == "__main__":
    cli()
