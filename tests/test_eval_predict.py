"""python -m lab.eval and python -m lab.predict on a checkpoint from one tiny imagefolder training run.

The run's classes are arrows pointing left, right, up and down, where "right" is the mirror image of
"left": with the imagefolder defaults (no flip) a short run must tell them apart."""
import json
import logging

import pytest

from lab.context import RunContext
from lab.errors import CheckpointError, ConfigError, DataError
from tests.conftest import compose, results, run_module
from tests.images import arrow_folder, colour_folder, corrupt

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["down", "left", "right", "up"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data root, run dir, env): 24 training / 8 test arrows per class, 8x8 pixels, a 5k-parameter ResNet."""
    tmp = tmp_path_factory.mktemp("arrows")
    arrow_folder(tmp / "arrows", {"train_dataset": 24, "test_dataset": 8}, size=16)
    env = {"LAB_DATA": str(tmp / "data")}
    proc = run_module("lab.train", "dataset=imagefolder", f"dataset.root={tmp / 'arrows'}", "dataset.image_size=8",
                      "dataset.batch_size=16", "model.base_width=8", "model.layers=[1,1]", "trainer.max_epochs=15",
                      "trainer.accelerator=cpu", f"hydra.run.dir={tmp / 'run'}", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return tmp / "arrows", tmp / "run", env


@pytest.fixture(scope="module")
def evaluated(trained):
    _, run_dir, env = trained
    out = run_dir.parent / "eval"
    proc = run_module("lab.eval", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", f"hydra.run.dir={out}",
                      env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc


def test_short_run_tells_mirror_image_classes_apart(evaluated):
    scores = json.loads((evaluated[0] / "eval.json").read_text())
    # Guessing scores 0.25; a net that cannot see orientation confuses left and right (~0.5 each).
    assert scores["test_acc"] >= 0.75
    assert scores["per_class_acc"]["left"] >= 0.75 and scores["per_class_acc"]["right"] >= 0.75


def test_eval_writes_scores_table_and_confusion_matrix(trained, evaluated):
    _, run_dir, _ = trained
    out, proc = evaluated
    scores = json.loads((out / "eval.json").read_text())
    assert {"test_acc", "test_acc_top5", "per_class_acc", "test_images"} <= set(scores)
    assert list(scores["per_class_acc"]) == CLASSES and scores["test_images"] == 32
    assert scores["precision"] == "32-true"
    # The same checkpoint on the same test set: what lab.train reported for its best checkpoint.
    assert scores["test_acc"] == pytest.approx(results(run_dir)["test_acc_best"], abs=1e-6)
    assert (out / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)
    assert "left" in proc.stdout and f"test_acc {scores['test_acc']:.4f}" in proc.stdout


def test_predict_gives_top_k_names_per_image(trained):
    root, run_dir, env = trained
    out = run_dir.parent / "predict"
    images = f"[{root / 'test_dataset' / 'left'},{root / 'test_dataset' / 'right' / '0.png'}]"  # folder + file
    proc = run_module("lab.predict", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", f"images={images}",
                      "top_k=10", f"hydra.run.dir={out}", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    saved = json.loads((out / "predictions.json").read_text())
    assert saved["top_k"] == 4 and len(saved["predictions"]) == 9  # capped at the 4 classes
    for prediction in saved["predictions"]:
        probs = [c["prob"] for c in prediction["top_k"]]
        assert sorted(c["class"] for c in prediction["top_k"]) == CLASSES
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-3)
    top1 = [p["top_k"][0]["class"] for p in saved["predictions"][:8]]
    assert top1.count("left") >= 6
    assert "right/0.png" in proc.stdout and "1. " in proc.stdout


def assert_one_line_error(proc, *fragments) -> None:
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in output, output[-2000:]
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.mark.slow
def test_cli_errors_are_one_line_and_exit_2(trained, tmp_path):
    _, run_dir, env = trained
    proc = run_module("lab.eval", f"hydra.run.dir={tmp_path / 'eval'}", env=env)
    assert_one_line_error(proc, "ckpt_path is not set", "ckpt_path=")
    proc = run_module("lab.predict", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
                      f"images=[{tmp_path / 'missing.png'}]", f"hydra.run.dir={tmp_path / 'predict'}", env=env)
    assert_one_line_error(proc, "do not exist", str(tmp_path / "missing.png"))


def run_in_process(module, config_name: str, overrides: list, out_dir):
    cfg = compose(overrides, config_name=config_name)
    return module(cfg, RunContext(run_dir=out_dir))


def test_eval_refuses_other_classes_and_missing_checkpoints(trained, tmp_path):
    from lab.eval import score_checkpoint as evaluate

    _, run_dir, _ = trained
    colour_folder(tmp_path / "colours", {"train_dataset": 2, "test_dataset": 1})
    with pytest.raises(CheckpointError, match="do not match .*best.ckpt"):
        run_in_process(evaluate, "eval", [f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", "dataset=imagefolder",
                                          f"dataset.root={tmp_path / 'colours'}",
                                          f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
    with pytest.raises(DataError, match="dataset=cifar10 has 10 classes but .*best.ckpt was trained on 4"):
        run_in_process(evaluate, "eval", [f"ckpt_path={run_dir}", "dataset=cifar10",
                                          f"paths.data_dir={tmp_path / 'downloads'}"], tmp_path)
    assert not (tmp_path / "downloads").exists()  # refused before any download
    with pytest.raises(CheckpointError, match="nothing.ckpt does not exist"):
        run_in_process(evaluate, "eval", [f"ckpt_path={tmp_path / 'nothing.ckpt'}"], tmp_path)


def test_eval_takes_a_run_dir_for_its_best_checkpoint(trained, tmp_path, caplog):
    from lab.eval import score_checkpoint as evaluate

    _, run_dir, env = trained
    best = run_dir / "checkpoints" / "best.ckpt"
    with caplog.at_level(logging.INFO, logger="lab"):
        result = run_in_process(evaluate, "eval", [f"ckpt_path={run_dir}"], tmp_path)
    assert result["ckpt_path"] == str(best)
    assert f"{run_dir} is a run dir: using {best}" in caplog.text
    (tmp_path / "not_a_run").mkdir()
    proc = run_module("lab.eval", f"ckpt_path={tmp_path / 'not_a_run'}", f"hydra.run.dir={tmp_path / 'eval'}",
                      env=env)
    assert_one_line_error(proc, str(tmp_path / "not_a_run" / "checkpoints" / "best.ckpt"), "does not exist")


def test_predict_refuses_unreadable_images_and_bad_top_k(trained, tmp_path):
    from lab.predict import predict

    _, run_dir, _ = trained
    ckpt = f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}"
    bad = corrupt(tmp_path / "broken.png")
    with pytest.raises(DataError, match=r"1 file\(s\) cannot be read as images: .*broken.png"):
        run_in_process(predict, "predict", [ckpt, f"images={bad}"], tmp_path)
    with pytest.raises(ConfigError, match="top_k=0"):
        run_in_process(predict, "predict", [ckpt, f"images={bad}", "top_k=0"], tmp_path)
