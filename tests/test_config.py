import pytest
import torch
from omegaconf import OmegaConf

from lab.config import validate
from lab.errors import ConfigError
from lab.keys import flatten
from tests.conftest import CONF, compose, run_train

GROUPS = ["model", "optimizer", "scheduler", "dataset", "trainer", "logger", "distill"]
# The keys an option cannot run without (validate refuses it otherwise: tested in test_distill/test_imagefolder).
REQUIRED = {("distill", o): ["distill.teacher_ckpt=teacher.ckpt"] for o in ("soft_target", "logits", "both")}
REQUIRED[("dataset", "imagefolder")] = ["dataset.root=signs"]


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_passes_the_checks(group, option):
    cfg = compose([f"{group}={option}", *REQUIRED.get((group, option), [])])
    assert cfg.hydra.runtime.choices[group] == option
    if (group, option) == ("trainer", "gpu") and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"trainer\.accelerator=gpu.*trainer=cpu"):
            validate(cfg)
        return
    validate(cfg)


def test_defaults_are_the_labs_task_1():
    cfg = compose()
    assert (cfg.hydra.runtime.choices.model, cfg.model.layers, cfg.dataset.name, cfg.dataset.batch_size,
            cfg.trainer.max_epochs) == ("resnet10", [1, 1, 1, 1], "cifar100", 256, 50)
    assert (cfg.augment.crop_padding, cfg.augment.flip, cfg.augment.erase_p, cfg.augment.mix) == (4, True, 0, "none")
    assert (cfg.ema.decay, cfg.test_tta, cfg.loss.label_smoothing) == (None, "none", 0.0)
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == \
        ("torch.optim.SGD", 0.03, 0.9, 1e-4)
    assert cfg.scheduler.get("_target_") is None


def test_multistep_is_the_labs_schedule():
    cfg = compose(["scheduler=multistep", "optimizer.lr=0.1"])
    assert list(cfg.scheduler.milestones) == [30, 40] and cfg.scheduler.gamma == 0.1


@pytest.mark.parametrize("override,key", [
    ("optimizer.lr=0", "optimizer.lr"), ("optimizer.lr=-0.1", "optimizer.lr"),
    ("optimizer.lr=abc", "optimizer.lr"), ("dataset.batch_size=0", "dataset.batch_size"),
    ("trainer.max_epochs=0", "trainer.max_epochs"), ("dataset.val_split=1", "dataset.val_split"),
    ("dataset.val_split=-0.1", "dataset.val_split"), ("optimizer.weight_decay=-1", "optimizer.weight_decay"),
    ("scheduler.milestones=[40,30]", "scheduler.milestones"),
    ("distill=soft_target distill.temperature=0 distill.teacher_ckpt=t.ckpt", "distill.temperature"),
    ("distill=soft_target distill.alpha=-1 distill.teacher_ckpt=t.ckpt", "distill.alpha"),
    ("seed=1.5", "seed"), ("seed=-5", "seed"),
    ("model.channels_last=maybe", "model.channels_last"), ("trainer.max_epochs=ten", "trainer.max_epochs"),
    ("dataset=imagefolder dataset.root=signs dataset.image_size=0", "dataset.image_size"),
    ("cpu_threads=0", "cpu_threads"), ("scheduler.warmup_epochs=-1", "scheduler.warmup_epochs"),
    ("loss.label_smoothing=1", "loss.label_smoothing"), ("progress_every_s=0", "progress_every_s"),
    ("+trainer.check_val_every_n_epoch=2", "trainer.check_val_every_n_epoch"),
    ("+trainer.val_check_interval=0.5", "trainer.val_check_interval"),
    ("model.shortcut=pool", "model.shortcut"), ("model.zero_init_residual=yes", "model.zero_init_residual"),
    ("optimizer.nesterov=1", "optimizer.nesterov"),
])
def test_out_of_range_values_name_the_key_and_the_range(override, key):
    overrides = override.split() if not override.startswith("scheduler.") else ["scheduler=multistep", override]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + r"=.* must be "):
        validate(compose(overrides))


def test_bad_value_on_the_cli_is_one_line_before_any_data(tmp_path):
    # dataset=cifar100 with an empty data dir: had data loading started, the error would be about the data.
    proc = run_train("optimizer.lr=-1", f"hydra.run.dir={tmp_path}", env={"LAB_DATA": str(tmp_path / "none")})
    assert proc.returncode == 2
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "optimizer.lr=-1" in errors[0] and "> 0" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "none").exists()


def test_unknown_key_is_refused_at_composition(tmp_path):
    proc = run_train("optimizer.lrr=0.1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0 and "optimizer.lrr" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_group_option_is_one_line_with_the_choices(tmp_path):
    proc = run_train("-m", "model=resnet10,resnet19", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: model=resnet19") and "model=resnet18?" in proc.stderr  # the closest
    assert "resnet10, resnet18, resnet34, resnet50" in proc.stderr  # and every choice


@pytest.mark.parametrize("argv,message", [
    (["+experiment=lr_sweeep"], "+experiment=lr_sweeep is not an option of conf/experiment/ (did you mean "
                                "+experiment=lr_sweep?"),
    (["dataset=digts", "optimizer.lr=0.1,0.2"], "dataset=digts is not an option"),
])
def test_group_option_typos_are_named_before_hydra_composes(argv, message):
    from lab.cli import check_group_options

    with pytest.raises(ConfigError) as err:
        check_group_options(argv)
    assert str(err.value).startswith(message)
    check_group_options(["model=resnet50", "+experiment=lr_sweep", "hydra/launcher=joblib", "~distill", "-m"])


@pytest.mark.parametrize("override,key", [("+sed=1", "sed"), ("++augment.flipp=true", "augment.flipp"),
                                          ("+ema.decayy=0.9", "ema.decayy")])
def test_a_key_lab_would_ignore_is_refused_by_name(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + r" is not a lab setting \(known: "):
        validate(compose([override]))


@pytest.mark.parametrize("overrides,message", [
    (["+optimizer.lrr=0.1"], r"optimizer\.lrr is not an argument of torch\.optim\.SGD \(did you mean lr\?\)"),
    (["optimizer=adam", "+optimizer.momentum=0.9"], r"optimizer\.momentum is not an argument of torch\.optim\.Adam"),
    (["+trainer.max_epoch=3"], r"trainer\.max_epoch is not an argument of .*Trainer \(did you mean max_epochs"),
    (["scheduler=multistep", "+scheduler.milestone=[5]"], r"scheduler\.milestone .*did you mean milestones"),
])
def test_a_key_its_target_does_not_take_is_refused_before_any_data(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose(overrides))


def test_fix_for_an_added_trainer_key_is_to_drop_it():
    with pytest.raises(ConfigError, match=r"drop the \+trainer\.check_val_every_n_epoch override"):
        validate(compose(["+trainer.check_val_every_n_epoch=2"]))


def test_milestones_the_run_never_reaches_are_warned_about(caplog):
    from types import SimpleNamespace

    from lab.scheduler import build_scheduler

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    cfg = compose(["scheduler=multistep"]).scheduler  # milestones [30, 40]
    build_scheduler(cfg, optimizer, SimpleNamespace(max_epochs=35))
    assert "scheduler.milestones [40]" in caplog.text and "trainer.max_epochs=35" in caplog.text
    caplog.clear()
    build_scheduler(cfg, optimizer, SimpleNamespace(max_epochs=50))
    assert "milestones" not in caplog.text


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_sets_what_its_file_says_and_passes_the_checks(experiment):
    """Its group choices and values land in the composed config (an experiment file that Hydra read under the
    wrong package would leave the defaults), and lab's checks accept the result."""
    cfg = compose([f"+experiment={experiment}", "distill.teacher_ckpt=teacher.ckpt"])
    spec = OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml"))
    for entry in spec.pop("defaults", []):
        for group, option in (entry.items() if isinstance(entry, dict) else []):
            group = group.replace("override /", "")
            if group in cfg.hydra.runtime.choices:
                assert cfg.hydra.runtime.choices[group] == option, (group, option)
    for key, value in flatten({k: v for k, v in spec.items() if k != "hydra"}).items():
        assert OmegaConf.select(cfg, key) == value, key
    assert spec.get("hydra", {}).get("mode") in (None, "MULTIRUN")
    if cfg.dataset.name == "imagefolder":  # the folder is the user's: no experiment can name it
        cfg.dataset.root = "signs"
    validate(cfg)


def test_distill_logits_is_distill_soft_with_the_logits_loss():
    soft, logits = (compose([f"+experiment={e}"]) for e in ("distill_soft", "distill_logits"))
    assert logits.distill.kind == "logits" and soft.distill.kind == "soft_target"
    for group in ("model", "optimizer", "scheduler", "dataset", "trainer"):
        assert logits[group] == soft[group], group


def test_cfg_job_prints_the_composed_experiment():
    proc = run_train("+experiment=distill_logits", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = OmegaConf.create(proc.stdout)
    assert printed.distill.kind == "logits" and printed.model.layers == [2, 2, 2, 2]
