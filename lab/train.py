"""python -m lab.train: compose the config, check it, load the data once, fit, test, write results.json.

The path to results: conf/train.yaml -> check (lab/config.py) -> data (lab/dataset/) -> net (lab/model.py)
-> Classifier (lab/module.py) -> Trainer (lab/trainer.py) -> run dir files (lab/run_files.py; a run that
does not finish: lab/outcome.py)."""
import logging
import math
import os
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lab.config import check_group_options, register_resolvers, validate
from lab.errors import USER_ERRORS, ConfigError, ResumeRefused
from lab.outcome import fail, is_rank_zero, save_results, stopped
from lab.resume import check_resume, keep_run_record
from lab.run_files import FINISHED, read_results
from lab.sweep import claim_gpu

register_resolvers()
log = logging.getLogger("lab")
FIRST_JOB_IN_PROCESS = True


def use_channels_last(cfg: DictConfig) -> bool:
    """model.channels_last, except where it hangs: on the CPU, oneDNN (torch 2.14) segfaults or spins forever
    in the backward pass of channels_last convolutions this narrow (seen with base_width 2, 3, 4 and 6)."""
    from lab.trainer import uses_cuda

    if cfg.model.channels_last and cfg.model.base_width < 8 and not uses_cuda(cfg.trainer.accelerator):
        log.warning(f"model.channels_last ignored: model.base_width={cfg.model.base_width} is under 8, where "
                    "channels_last convolutions hang or crash on the CPU (oneDNN); training in the default layout")
        return False
    return cfg.model.channels_last


def build_run(cfg: DictConfig, run_dir: Path, job_start: float | None, started_at: float | None = None):
    """Everything fit() needs: module, datamodule, trainer and the epoch recorder."""
    import pytorch_lightning as pl

    from lab.dataset import load_dataset, split_validation
    from lab.dataset.datamodule import DataModule
    from lab.distill import build_distiller
    from lab.model import build_model
    from lab.module import Classifier
    from lab.recorder import EpochRecorder
    from lab.trainer import build_trainer

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
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
    recorder = EpochRecorder(run_dir, extra_columns, job_start, segment_started_at=started_at)
    trainer = build_trainer(cfg, run_dir, [recorder])
    return module, datamodule, trainer, recorder


def group_choices() -> dict | None:
    """{group: option} of this run (lab.resume puts them back into a resumed run's hydra.yaml)."""
    if not HydraConfig.initialized():
        return None
    return OmegaConf.to_container(HydraConfig.get().runtime.choices)


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


def evaluate(cfg, trainer, module, datamodule) -> dict:
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


def refuse_ddp_in_sweeps(cfg: DictConfig) -> None:
    """Lightning #11300 / Hydra #2070: each DDP child re-executes sys.argv, -m included, and so launches
    its own copy of the whole sweep."""
    # Several devices means DDP whatever trainer.strategy says (Lightning picks ddp for "auto").
    ddp = cfg.trainer.devices not in (1, "1", [0]) or cfg.trainer.num_nodes > 1
    if ddp and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(f"trainer.devices={cfg.trainer.devices} (DDP) cannot run under -m (each DDP process "
                          "would relaunch the sweep): run one job per GPU with hydra/launcher=joblib gpu_pool=[0,1,...] or "
                          "hydra/launcher=slurm, or drop -m for a single DDP run")


def train(cfg: DictConfig, run_dir: Path) -> float:
    # A SLURM job requeued after preemption/timeout (submitit) runs the same command again: resume it.
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    resume = cfg.resume or requeued
    done = read_results(run_dir) if resume else None
    if done and done.get("status") in FINISHED:  # nothing to train, so nothing may fail it now
        check_resume(cfg, run_dir, done)  # warns about other settings and keeps the run's record
        return report_finished(cfg, run_dir, done)
    claim_gpu(cfg.get("gpu_pool"))  # before any CUDA call: CUDA reads CUDA_VISIBLE_DEVICES only once
    try:
        if resume:  # a requeued job runs its own command: a difference there comes from changed code or conf
            check_resume(cfg, run_dir, done, refuse=not requeued)
        validate(cfg)
        refuse_ddp_in_sweeps(cfg)
    except ConfigError as err:
        if resume and keep_run_record(run_dir, done):  # nothing trained: the run's record stays as it was
            raise ResumeRefused(str(err)) from None
        raise
    return fit_and_test(cfg, run_dir, resume)


def fit_and_test(cfg: DictConfig, run_dir: Path, resume: bool) -> float:
    start, started_at = time.perf_counter(), time.time()
    if is_rank_zero():  # replaces an old "ok" from an earlier run here: a kill now must not read as finished
        save_results(cfg, run_dir, dict(status="running", test_acc=None))
    # The first job of a process counts from process start (imports included); later sweep jobs in the
    # same process (basic launcher) from their own start.
    global FIRST_JOB_IN_PROCESS
    job_start = None if FIRST_JOB_IN_PROCESS else started_at
    FIRST_JOB_IN_PROCESS = False
    module, datamodule, trainer, recorder = build_run(cfg, run_dir, job_start, started_at)
    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    resume_from = str(last_ckpt) if resume and last_ckpt.exists() else None
    if resume_from:
        log.info(f"resume: continuing from {last_ckpt}")
    elif resume:
        single = HydraConfig.get().mode != RunMode.MULTIRUN
        hint = " (to resume a single run, pass its dir as hydra.run.dir)" if single else ""
        log.warning(f"resume: no {last_ckpt} to continue from: training from the start{hint}")
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    # Read before testing: trainer.test(ckpt_path=best) restores callback state (EpochRecorder's totals).
    results = dict(status="ok", test_acc=None, diverged_epoch=recorder.diverged_epoch,
                   **run_facts(trainer, module, recorder))
    earlier_segments_s = recorder.earlier_segments_s  # a resumed run's time before this process
    if recorder.diverged_epoch is not None:
        results["status"] = "diverged"
        log.warning(f"loss became NaN/inf in epoch {recorder.diverged_epoch}: stopped, status diverged")
    else:
        results.update(evaluate(cfg, trainer, module, datamodule))
    results.update(total_time_s=round(earlier_segments_s + time.perf_counter() - start, 3),
                   started_at=round(started_at, 3),
                   finished_at=round(time.time(), 3))
    if trainer.is_global_zero:
        save_results(cfg, run_dir, results)
        print_results(results)
        log.info(f"run dir: {run_dir}")
    return results["test_acc"] if results["test_acc"] is not None else math.nan


def print_results(results: dict) -> None:
    """stdout carries these two lines only (the lab's Task 1 output); logs go to stderr."""
    accuracy = results["test_acc"] if results.get("test_acc") is not None else math.nan
    print(f"Model Accuracy: {accuracy:.4f}")
    print(f"Total time: {results.get('total_time_s') or math.nan:.2f}")


def report_finished(cfg, run_dir: Path, done: dict) -> float:
    """resume=true on a run that already finished: nothing to train; say so, and what it reported."""
    log.info(f"resume: {run_dir} already finished ({done['status']}), nothing to do")
    by_epochs = cfg.trainer.get("max_steps") in (None, -1)  # a max_steps run stops mid-way on purpose
    if done["status"] == "ok" and by_epochs and done.get("epochs") not in (None, cfg.trainer.max_epochs):
        log.warning(f"resume: the run finished after {done['epochs']} epochs and resume=true does not extend "
                    f"a finished run (trainer.max_epochs={cfg.trainer.max_epochs} ignored): start a new run")
    if is_rank_zero():
        print_results(done)
    return done["test_acc"] if done.get("test_acc") is not None else math.nan


def run_facts(trainer, module, recorder) -> dict:
    """What results.json says about the run besides accuracy: size, speed, precision, device."""
    from lab.model import count_params

    images = recorder.train_images * trainer.world_size  # EpochRecorder counts rank 0's share
    return dict(epochs=trainer.current_epoch, train_time_s=round(recorder.train_time_s, 3),
                images_per_s=round(images / max(recorder.train_time_s, 1e-9), 1), world_size=trainer.world_size,
                time_to_first_step_s=recorder.time_to_first_step_s, params=count_params(module.net),
                precision=str(trainer.precision), device=str(trainer.strategy.root_device),
                teacher_val_acc=getattr(module.distiller, "val_acc", None))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        from lab.trainer import STOPPED_BY, ctrl_c_stops_after_the_batch
    except KeyboardInterrupt:  # Ctrl-C while Lightning is imported (seconds): before the run has begun
        stopped(cfg, run_dir, "Ctrl-C")
    try:
        with ctrl_c_stops_after_the_batch():
            accuracy = train(cfg, run_dir)
    except SIGTERMException:  # a SystemExit
        stopped(cfg, run_dir, STOPPED_BY["signal"] or "SIGTERM")
    except SystemExit:
        if STOPPED_BY["signal"] is None:  # Lightning exits 1 on a KeyboardInterrupt; other exits are not ours
            raise
        stopped(cfg, run_dir, STOPPED_BY["signal"])
    except KeyboardInterrupt:
        stopped(cfg, run_dir, "Ctrl-C")
    except Exception as err:
        message, user_error = fail(cfg, run_dir, err), isinstance(err, USER_ERRORS)
    else:
        if STOPPED_BY["signal"]:  # pressed where Lightning does not stop early (a last batch): stop the sweep
            stopped(cfg, run_dir, STOPPED_BY["signal"])
        return accuracy
    log.error(f"error: {message} [run dir {run_dir}]")
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return math.nan  # the sweep goes on; lab.sweep names the failed jobs and exits non-zero at the end
    sys.exit(2 if user_error else 1)


if __name__ == "__main__":
    try:
        check_group_options(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
