"""The run directory contract, on real training runs (digits; a CIFAR-100 archive the test writes)."""
import csv
import json
import pickle

import numpy as np
import pytest
import torch

from lab.checkpoint import net_from_checkpoint
from lab.dataset import cifar
from lab.errors import DataError
from lab.machine import describe_cpu
from tests.conftest import results, run_train


def test_digits_run_learns_and_prints_the_labs_two_lines(digits_run):
    run_dir, proc = digits_run
    res = results(run_dir)
    assert res["status"] == "ok" and res["test_acc"] >= 0.95
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == f"Model Accuracy: {res['test_acc']:.4f}"
    assert lines[-1] == f"Total time: {res['total_time_s']:.2f}"


def test_results_json_holds_the_contract_keys(digits_run):
    run_dir, _ = digits_run
    res = results(run_dir)
    for key in ("test_acc", "test_acc_top5", "best_val_acc", "train_time_s", "epochs", "params",
                "images_per_s", "status", "seed", "overrides", "git_commit"):
        assert key in res, key
    assert res["epochs"] == 8 and res["seed"] == 42 and "dataset=digits" in res["overrides"]
    assert 0 < res["best_val_acc"] <= 1 and res["test_acc_top5"] >= res["test_acc"]
    assert res["images_per_s"] > 0 and 0 < res["train_time_s"] < res["total_time_s"]
    with open(run_dir / "metrics.csv") as f:  # training time covers every epoch, not just up to the best one
        assert res["train_time_s"] > 0.5 * sum(float(r["epoch_time_s"]) for r in csv.DictReader(f))
    assert set(res["per_class_acc"]) == {str(d) for d in range(10)}
    # What reports, the study and resume read a run by: its group choices and resolved config.
    assert res["choices"]["model"] == "resnet10" and res["choices"]["scheduler"] == "cosine"
    assert res["config"]["model"]["base_width"] == 16 and res["config"]["dataset"]["name"] == "digits"
    # Timings are comparable only on the same CPU: the run names it and whether it has fast bf16.
    assert res["cpu"] == describe_cpu() and res["cpu"].endswith(("bf16", "or AMX"))


def test_test_predictions_are_the_scored_checkpoints_and_steps_csv_has_every_step(digits_run):
    run_dir, _ = digits_run
    res, predictions = results(run_dir), json.loads((run_dir / "test_predictions.json").read_text())
    assert predictions["checkpoint"] == res["scored_checkpoint"] == "best"
    right = sum(p == y for p, y in zip(predictions["predicted"], predictions["label"]))
    assert len(predictions["label"]) == res["test_images"] and right / res["test_images"] == \
        pytest.approx(res["test_acc"], abs=1e-6)
    with open(run_dir / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    # digits: 1,294 training images at batch 32 (drop_last): 40 steps an epoch, 8 epochs.
    assert [int(r["step"]) for r in steps] == list(range(320)) and {int(r["epoch"]) for r in steps} == set(range(8))
    assert float(steps[-1]["train_loss"]) < float(steps[0]["train_loss"])


def test_per_class_accuracy_comes_from_the_same_pass_as_test_acc(digits_run):
    from lab.dataset import load_digits

    run_dir, _ = digits_run
    res = results(run_dir)
    counts = torch.bincount(load_digits()["test_labels"], minlength=10)
    weighted = sum(res["per_class_acc"][str(c)] * int(n) for c, n in enumerate(counts)) / int(counts.sum())
    assert weighted == pytest.approx(res["test_acc"], abs=2e-3)  # per-class values are rounded to 4 places


def test_a_class_without_test_images_has_no_per_class_accuracy():
    from lab.train import per_class_scores

    scores = per_class_scores(["a", "b", "c"], torch.tensor([0.5, 0.0, 1.0]), torch.tensor([0, 0, 2]))
    assert scores == {"a": 0.5, "b": None, "c": 1.0}


def test_an_errors_line_keeps_the_cause_that_follows_a_colon():
    from lab.errors import first_line

    err = RuntimeError("Error(s) in loading state_dict for Classifier:\n\tsize mismatch for net.fc.weight")
    assert first_line(err) == "Error(s) in loading state_dict for Classifier: size mismatch for net.fc.weight"
    assert first_line(ValueError("bad value\nsecond line")) == "bad value"
    assert len(first_line(ValueError("x" * 1000))) == 300 and first_line(ValueError()) == "ValueError"


def test_an_unexpected_error_is_one_line_with_its_type(tmp_path):
    from lab.context import RunContext
    from lab.outcome import fail

    message = fail({}, RunContext(run_dir=tmp_path), ValueError("x" * 1000 + "\nsecond line"), records_run=False)
    assert message.startswith("ValueError: xxx") and len(message) == 300 and "second" not in message


def test_metrics_csv_has_one_row_per_epoch(digits_run):
    run_dir, _ = digits_run
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(8))
    assert list(rows[0])[:7] == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s"]
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(0.03) and lrs[-1] < lrs[0]  # cosine schedule, stepped per epoch
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_checkpoints_load_with_weights_only_and_rebuild_the_net(digits_run):
    run_dir, _ = digits_run
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        net, hp = net_from_checkpoint(ckpt)
        assert hp["class_names"] == [str(d) for d in range(10)] and hp["in_channels"] == 1
        assert net(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 7  # the final epoch


def write_cifar100(root, n_train=300, n_test=100, seed=0):
    """A cifar-100-python/{train,test,meta} folder in the official pickle format. Class c is drawn with
    mean brightness 2c, so a net can learn it; labels are checked against pixels below."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 100, n)
        data = (labels[:, None] * 2 + rng.integers(0, 20, (n, 3072))).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist()}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f)


def test_cifar100_pickles_load_as_chw_uint8(tmp_path):
    write_cifar100(tmp_path)
    parts = cifar.load_cifar("cifar100", tmp_path)
    with open(tmp_path / "cifar-100-python" / "train", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert parts["train_images"].shape == (300, 3, 32, 32) and parts["train_images"].dtype == torch.uint8
    assert torch.equal(parts["train_images"][5].flatten(), torch.from_numpy(raw[b"data"][5]))  # CHW order kept
    assert parts["train_labels"].tolist() == raw[b"fine_labels"] and parts["class_names"][99] == "c99"


def test_cifar100_run_on_a_written_archive(tmp_path):
    write_cifar100(tmp_path / "data")
    run_dir = tmp_path / "run"
    proc = run_train("trainer.max_epochs=1", "dataset.batch_size=64", "model.base_width=8", "trainer.accelerator=cpu",
                     "dataset.val_split=0", f"hydra.run.dir={run_dir}", env={"LAB_DATA": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = results(run_dir)
    assert res["status"] == "ok" and res["params"] == 83_852 and res["dataset"] == "cifar100"
    assert 0 <= res["test_acc"] <= 1
    # val_split=0 validates on the test set: the last epoch is reported, never a checkpoint picked on test data.
    assert res["test_acc"] == res["test_acc_last"] and res["test_acc_best"] is None
    assert "validating on the test set" in proc.stderr


def test_missing_cifar_without_network_names_the_file_and_the_offline_choice(tmp_path, monkeypatch):
    monkeypatch.setitem(cifar.ARCHIVES["cifar100"], "url", "http://127.0.0.1:9/cifar-100-python.tar.gz")
    with pytest.raises(DataError) as err:
        cifar.load_cifar("cifar100", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-100-python" / "train") in message and "dataset=digits" in message
    assert "\n" not in message


def test_narrow_net_on_the_cpu_trains_without_channels_last(tmp_path):
    # oneDNN hangs or segfaults in the backward pass of channels_last convolutions with base_width 2-6 on the
    # CPU; lab falls back to the default layout instead (a hang here ends in the subprocess timeout).
    run_dir = tmp_path / "run"
    proc = run_train("dataset=fake", "dataset.train_size=128", "dataset.test_size=32", "dataset.batch_size=32",
                     "model.base_width=4", "trainer.accelerator=cpu", "trainer.max_epochs=1",
                     f"hydra.run.dir={run_dir}", timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model.channels_last ignored" in proc.stderr
    assert results(run_dir)["status"] == "ok"
