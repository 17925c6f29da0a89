"""A run saved before models had a `_target_` and before augment was its own group (lab.saved_config) still
evaluates, predicts, teaches and resumes. The old layout is made here from a new run by writing its checkpoints and
results.json back the way that lab wrote them: model {name, block, layers, ...}, dataset.augment {crop_padding, flip},
no augment, ema or test_tta keys."""
import copy
import json

import pytest
import torch

from lab.saved_config import todays_config, todays_model
from tests.conftest import compose, results, run_module, run_train, trained_run

ARGS = ["dataset=digits", "model.base_width=8", "trainer.accelerator=cpu", "cpu_threads=1"]


def as_saved_before(config: dict) -> dict:
    old = copy.deepcopy(config)
    old["model"] = {"name": "resnet10", **{k: v for k, v in old["model"].items() if k != "_target_"}}
    dataset = old["dataset"]
    dataset["augment"] = {"crop_padding": dataset.pop("crop_padding"), "flip": dataset.pop("flip")}
    for key in ("augment", "ema", "test_tta"):
        old.pop(key)
    return old


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    run_dir = trained_run(tmp_path_factory.mktemp("old") / "run", *ARGS, "trainer.max_epochs=2")
    for name in ("best.ckpt", "last.ckpt"):
        path = run_dir / "checkpoints" / name
        ckpt = torch.load(path, weights_only=True)
        hp = ckpt["hyper_parameters"]
        hp["config"] = as_saved_before(hp["config"])
        hp["model"] = hp["config"]["model"]
        torch.save(ckpt, path)
    record = json.loads((run_dir / "results.json").read_text())
    record["config"] = as_saved_before(record["config"])
    (run_dir / "results.json").write_text(json.dumps(record))
    return run_dir


def test_an_old_layout_reads_as_todays():
    from omegaconf import OmegaConf, open_dict

    cfg = compose(ARGS + ["~logger"])  # its save_dir names Hydra's run dir, which only a Hydra run has
    with open_dict(cfg):
        del cfg["hydra"]
    today = OmegaConf.to_container(cfg, resolve=True)
    assert todays_config(as_saved_before(today)) == today
    assert todays_config(today) == today  # today's layout is left as it is
    assert todays_model({"_target_": "my.builder", "block": "x"}) == {"_target_": "my.builder", "block": "x"}


def test_an_old_checkpoint_evaluates_and_predicts(old_run, tmp_path):
    proc = run_module("lab.eval", f"ckpt_path={old_run}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert scores["test_acc"] == pytest.approx(results(old_run)["test_acc"], abs=0.02)  # bf16 run, fp32 eval
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (8, 8), 128).save(image)
    proc = run_module("lab.predict", f"ckpt_path={old_run}", f"images=[{image}]", f"hydra.run.dir={tmp_path / 'p'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads((tmp_path / "p" / "predictions.json").read_text())["predictions"]) == 1


def test_an_old_checkpoint_teaches(old_run):
    from omegaconf import open_dict

    from lab.dataset import load_training_data
    from lab.distill import build_distiller

    cfg = compose(ARGS + ["distill=soft_target", f"distill.teacher_ckpt={old_run}"])
    with open_dict(cfg):
        del cfg["hydra"]
    data = load_training_data(cfg.dataset, cfg.paths.data_dir, cfg.seed)
    distiller = build_distiller(cfg.distill, data, channels_last=False)
    assert distiller.teacher(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_an_old_run_resumes_with_todays_command(old_run):
    record = json.loads((old_run / "results.json").read_text())
    (old_run / "results.json").write_text(json.dumps(dict(record, status="interrupted", test_acc=None)))  # killed
    proc = run_train(*ARGS, "trainer.max_epochs=3", f"hydra.run.dir={old_run}", "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = results(old_run)
    assert record["status"] == "ok" and record["epochs"] == 3 and record["processes"] == 2
