"""python -m lab.train: compose the config, check it, load the data once, fit, test, write results.json.

The files on the path, in the order they run: conf/train.yaml and its groups (composed by Hydra) -> lab/config.py
(checks before any data) -> lab/resume.py (resume=true) -> lab/dataset/ (uint8 tensors on the device) ->
lab/model.py (the net) -> lab/distill.py (the teacher) -> lab/module.py (loss, metrics, optimizer; lab/scheduler.py)
-> lab/trainer.py (device, precision, the Lightning Trainer) -> lab/recorder.py (metrics.csv, checkpoints) ->
lab/run_files.py (results.json). A run that does not finish ends in lab/outcome.py; lab/errors.py holds the
errors a user can cause."""
import logging
import math
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lab.config import check_group_options, check_output_dir, register_resolvers, validate
from lab.errors import ConfigError
from lab.outcome import in_sweep, is_rank_zero, run_or_exit
from lab.resume import check_resume, keeping_run_record, report_finished, resume_checkpoint, slurm_requeued
from lab.run_files import FINISHED, print_results, read_results, save_results
from lab.trainer import claim_gpu

register_resolvers()
log = logging.getLogger("lab")
FIRST_JOB_IN_PROCESS = True


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_or_exit(train, cfg, Path(HydraConfig.get().runtime.output_dir))


def train(cfg: DictConfig, run_dir: Path) -> float:
    resume = cfg.resume or slurm_requeued()
    record = read_results(run_dir) if resume else None
    if record and record.get("status") in FINISHED:
        return report_finished(cfg, run_dir, record)
    claim_gpu(cfg.get("gpu_pool"))  # before any CUDA call: CUDA reads CUDA_VISIBLE_DEVICES only once
    with keeping_run_record(run_dir, resume):
        if resume:  # a requeued job runs its own command: a difference there comes from changed code or conf
            check_resume(cfg, run_dir, record, refuse=not slurm_requeued())
        validate(cfg)
    return fit_and_test(cfg, run_dir, resume)


def fit_and_test(cfg: DictConfig, run_dir: Path, resume: bool) -> float:
    start, started_at = time.perf_counter(), time.time()
    resume_from = find_resume_checkpoint(run_dir) if resume else None
    if is_rank_zero():  # replaces an old "ok" from an earlier run here: a kill now must not read as finished
        save_results(cfg, run_dir, dict(status="running", test_acc=None))
    # The first job of a process counts from process start (imports included); later sweep jobs in the
    # same process (basic launcher) from their own start.
    global FIRST_JOB_IN_PROCESS
    job_start = None if FIRST_JOB_IN_PROCESS else started_at
    FIRST_JOB_IN_PROCESS = False
    module, datamodule, trainer, recorder = build_run(cfg, run_dir, job_start, started_at)
    from lab.tune_pruning import pruned_epoch
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    # Read before testing: trainer.test(ckpt_path=best) restores callback state (EpochRecorder's totals).
    results = dict(status="ok", test_acc=None, diverged_epoch=recorder.diverged_epoch,
                   **run_facts(trainer, module, datamodule, recorder))
    if recorder.diverged_epoch is not None:
        results["status"] = "diverged"
        log.warning(f"loss became NaN/inf in epoch {recorder.diverged_epoch}: stopped, status diverged")
    else:
        results.update(test_checkpoints(cfg, trainer, module, datamodule))
    if pruned_epoch(trainer) is not None:  # a tuning trial its pruner stopped (lab/tune_pruning.py)
        results.update(status="pruned", pruned_epoch=pruned_epoch(trainer))
    results.update(total_time_s=round(recorder.earlier_segments_s + time.perf_counter() - start, 3),
                   started_at=round(started_at, 3), finished_at=round(time.time(), 3))
    if trainer.is_global_zero:
        save_results(cfg, run_dir, results)
        print_results(results)
        log.info(f"run dir: {run_dir}")
    return results["test_acc"] if results["test_acc"] is not None else math.nan


def find_resume_checkpoint(run_dir: Path) -> str | None:
    path = resume_checkpoint(run_dir)
    if path is not None:
        log.info(f"resume: continuing from {path}")
        return str(path)
    hint = "" if in_sweep() else " (to resume a single run, pass its dir as hydra.run.dir)"
    log.warning(f"resume: no {run_dir / 'checkpoints' / 'last.ckpt'} to continue from: training from the start{hint}")
    return None


def build_run(cfg: DictConfig, run_dir: Path, job_start: float | None, started_at: float | None = None):
    """Everything fit() needs: module, datamodule, trainer and the epoch recorder."""
    import pytorch_lightning as pl

    from lab.dataset import load_dataset, split_validation
    from lab.dataset.datamodule import DataModule
    from lab.distill import build_distiller
    from lab.model import build_model
    from lab.module import Classifier
    from lab.recorder import EpochRecorder
    from lab.trainer import build_trainer, set_cpu_threads, shows_progress_bar, use_channels_last
    from lab.tune_pruning import trial_pruning

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    set_cpu_threads(cfg.cpu_threads)
    data = split_validation(load_dataset(cfg.dataset, cfg.paths.data_dir), cfg.dataset.val_split, cfg.seed)
    if cfg.dataset.val_split == 0:
        log.warning("dataset.val_split=0: validating on the test set, as the lab did; the best checkpoint "
                    "is then chosen on test data, so results.json reports the last epoch's test accuracy")
    net = build_model(cfg.model, data.num_classes, data.channels)  # before the teacher: same seed, same init
    channels_last = use_channels_last(cfg)
    distiller = build_distiller(cfg.distill, data, channels_last, split=(cfg.seed, cfg.dataset.val_split))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    hparams = dict(model=OmegaConf.to_container(cfg.model), num_classes=data.num_classes,
                   in_channels=data.channels, image_size=data.image_size, class_names=list(data.class_names),
                   mean=list(data.mean), std=list(data.std), dataset=cfg.dataset.name,
                   config=OmegaConf.to_container(cfg, resolve=True), choices=group_choices())
    module = Classifier(net, hparams, hydra.utils.instantiate(cfg.optimizer), cfg.scheduler, distiller,
                        compile_net=cfg.model.compile)
    datamodule = DataModule(data, cfg.dataset.batch_size, cfg.dataset.augment, cfg.seed, channels_last)
    extra_columns = ["train_ce", "train_distill"] if distiller is not None else []
    recorder = EpochRecorder(run_dir, extra_columns, job_start, segment_started_at=started_at,
                             progress_every_s=None if shows_progress_bar() else cfg.progress_every_s)
    pruning = trial_pruning(cfg)  # None unless the job is a trial of hydra/sweeper=tune
    trainer = build_trainer(cfg, run_dir, [recorder] + ([pruning] if pruning else []))
    return module, datamodule, trainer, recorder


def group_choices() -> dict | None:
    """{group: option} of this run (lab.resume puts them back into a resumed run's hydra.yaml)."""
    if not HydraConfig.initialized():
        return None
    return OmegaConf.to_container(HydraConfig.get().runtime.choices)


def test_checkpoints(cfg, trainer, module, datamodule) -> dict:
    """Test the last weights and, when validation is a held-out split, the best-validation checkpoint.
    With val_split=0 the "best" checkpoint was picked on the test set: neither its accuracy nor that
    validation (test) peak is reported."""
    last = score_test_set(trainer, module, datamodule)
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint else ""
    held_out = cfg.dataset.val_split > 0  # else "val" is the test set: its best epoch is picked on test data
    scores = dict(last, test_acc_last=last["test_acc"], test_acc_best=None,
                  best_val_acc=float(checkpoint.best_model_score) if best_path and held_out else None)
    if best_path and held_out:
        best = score_test_set(trainer, module, datamodule, ckpt_path=best_path)
        scores.update(best, test_acc_best=best["test_acc"])
    return scores


def score_test_set(trainer, module, datamodule, ckpt_path=None) -> dict:
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True)
    metrics = trainer.callback_metrics  # empty with trainer.limit_test_batches=0
    scores = {k: float(metrics[k]) if k in metrics else None for k in ("test_acc", "test_acc_top5", "test_loss")}
    if module.per_class_acc is not None:
        scores["per_class_acc"] = per_class_scores(module.hparams["class_names"], module.per_class_acc,
                                                   datamodule.data.test_labels)
    return scores


def per_class_scores(class_names, accuracy: torch.Tensor, test_labels: torch.Tensor) -> dict:
    """{class name: accuracy}. A class without test images gets None: torchmetrics reports 0.0 for it, as if
    every one of its (no) images were wrong."""
    support = torch.bincount(test_labels.cpu(), minlength=len(class_names)).tolist()
    return {name: round(float(acc), 4) if n else None for name, acc, n in zip(class_names, accuracy, support)}


def run_facts(trainer, module, datamodule, recorder) -> dict:
    """What results.json says about the run besides accuracy: size, speed, precision, device, data."""
    from lab.model import count_params

    images = recorder.train_images * trainer.world_size  # EpochRecorder counts rank 0's share
    return dict(epochs=trainer.current_epoch, train_time_s=round(recorder.train_time_s, 3),
                images_per_s=round(images / max(recorder.train_time_s, 1e-9), 1), world_size=trainer.world_size,
                time_to_first_step_s=recorder.time_to_first_step_s, params=count_params(module.net),
                precision=str(trainer.precision), device=str(trainer.strategy.root_device),
                teacher_val_acc=getattr(module.distiller, "val_acc", None),
                num_classes=module.hparams["num_classes"], test_images=len(datamodule.data.test_labels),
                processes=recorder.processes,  # the times and image counts cover every process of the run
                cpu_threads=torch.get_num_threads())


def cli() -> None:
    """Checks that need only the command line come before Hydra, which would print a composition error or
    its own traceback."""
    try:
        check_group_options(sys.argv[1:])
        check_output_dir(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
