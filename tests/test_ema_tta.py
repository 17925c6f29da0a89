"""ema.decay (Lightning's EMAWeightAveraging, lab/ema.py) and test_tta=flip: validation, the scored checkpoint, test
and lab.eval all see the averaged weights, test-time flips average each image's logits with its mirror's, and
both are refused or checked where they cannot mean what they say."""
import csv
import json

import pytest
import torch

from lab.errors import ConfigError
from tests.conftest import compose, results, run_module, run_train, trained_run

# 32-bit: lab.eval computes in float32, so its accuracy and the run's own test must agree to the image.
EMA_RUN = ["dataset=digits", "trainer.max_epochs=3", "model.base_width=8", "trainer.accelerator=cpu",
           "trainer.precision=32-true", "ema.decay=0.9", "augment.flip=true", "test_tta=flip", "cpu_threads=1"]


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("ema") / "run", *EMA_RUN)


def evaluate(run_dir, ckpt: str, *extra) -> dict:
    out = run_dir.parent / f"eval_{ckpt}_{len(extra)}"
    proc = run_module("lab.eval", f"ckpt_path={run_dir / 'checkpoints' / ckpt}", f"hydra.run.dir={out}", *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "eval.json").read_text())


def test_checkpoints_hold_the_average_and_the_trained_weights_and_load_weights_only(ema_run):
    ckpt = torch.load(ema_run / "checkpoints" / "last.ckpt", weights_only=True)
    average, trained = ckpt["state_dict"], ckpt["current_model_state"]
    assert set(average) == set(trained) and int(ckpt["averaging_state"]["n_averaged"]) == ckpt["global_step"]
    assert not torch.equal(average["net.stem.0.weight"], trained["net.stem.0.weight"])


def test_test_and_lab_eval_score_the_average_with_flips(ema_run):
    record = results(ema_run)
    assert record["scored_checkpoint"] == "best"
    assert evaluate(ema_run, "best.ckpt", "test_tta=flip")["test_acc"] == pytest.approx(record["test_acc_best"],
                                                                                          abs=1e-6)
    assert evaluate(ema_run, "last.ckpt", "test_tta=flip")["test_acc"] == pytest.approx(record["test_acc_last"],
                                                                                          abs=1e-6)


def test_validation_ranks_the_average(ema_run):
    """The last epoch's val_acc is the averaged weights' (last.ckpt's state_dict) on the validation split."""
    from omegaconf import open_dict

    from lab.checkpoint import load_checkpoint, net_from_checkpoint
    from lab.dataset import load_training_data
    from lab.dataset.loader import DeviceLoader

    cfg = compose(EMA_RUN)
    with open_dict(cfg):
        del cfg["hydra"]
    data = load_training_data(cfg.dataset, cfg.paths.data_dir, cfg.seed)
    net, hp = net_from_checkpoint(load_checkpoint(ema_run / "checkpoints" / "last.ckpt"))
    loader = DeviceLoader(data.val_images, data.val_labels, 512, hp["mean"], hp["std"], shuffle=False,
                          drop_last=False, channels_last=False)
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in loader)
    with open(ema_run / "metrics.csv") as f:
        last_row = list(csv.DictReader(f))[-1]
    assert float(last_row["val_acc"]) == pytest.approx(correct / len(data.val_labels), abs=1e-6)


def test_flip_averaged_is_the_mean_of_an_image_and_its_mirror():
    from lab.augment import flip_averaged

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    images = torch.randn(5, 1, 3, 4)
    assert torch.allclose(flip_averaged(net, images), (net(images) + net(images.flip(3))) / 2)


def test_ema_decay_warms_up_and_the_update_copies_first():
    from lab.ema import EMA

    ema = EMA(0.999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(90) == pytest.approx(0.91)
    assert ema.decay_at(100_000) == 0.999 and EMA(0.999, warmup=False).decay_at(0) == 0.999


@pytest.mark.parametrize("overrides,message", [
    (["ema.decay=1.0"], r"ema.decay=1.0 is not allowed: must be a number in \(0, 1\)"),
    (["ema.decay=0"], r"ema.decay=0 is not allowed"),
    (["augment.mix_alpha=0"], r"augment.mix_alpha=0 is not allowed: must be a number > 0"),
    (["augment.erase_p=1.5"], r"augment.erase_p=1.5 is not allowed: must be a chance in \[0, 1\]"),
    (["augment.mix=mixupp"], r"augment.mix='mixupp' is not allowed: must be one of none, mixup, cutmix"),
    (["dataset=digits", "test_tta=flip"], r"test_tta=flip is refused: augment.flip is false"),
    (["+experiment=traffic_signs", "dataset.root=x", "test_tta=flip"], r"test_tta=flip is refused"),
])
def test_bad_augment_ema_and_tta_values_are_refused_before_any_data(overrides, message):
    from lab.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose(overrides))


def test_lab_eval_refuses_flips_for_a_net_that_never_saw_a_mirror(tmp_path):
    from lab.eval import check_test_tta

    no_flip = {"config": {"augment": {"flip": False}}}
    before_augment_group = {"config": {"dataset": {"augment": {"crop_padding": 1, "flip": False}}}}
    for hp in (no_flip, before_augment_group):
        with pytest.raises(ConfigError, match=r"test_tta=flip is refused: .* was trained without random flips"):
            check_test_tta("flip", hp, tmp_path / "best.ckpt")
        check_test_tta("none", hp, tmp_path / "best.ckpt")
    check_test_tta("flip", {"config": {"augment": {"flip": True}}}, tmp_path / "best.ckpt")


def test_a_bad_value_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    proc = run_train("dataset=digits", "augment.erase_p=2", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert "augment.erase_p=2 is not allowed" in proc.stderr and not (tmp_path / "run").exists()
