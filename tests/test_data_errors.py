"""Bad data inputs as one line that names the file or folder and the fix: a damaged CIFAR archive, an image
folder too large for the training device, a relative dataset.root that does not exist."""
import os
import pickle

import numpy as np
import pytest
from omegaconf import OmegaConf

import lab.dataset.memory
from lab.dataset import load_dataset
from lab.dataset.memory import MemoryBudget, check_fits, images_bytes
from lab.errors import DataError
from tests.conftest import CONF, run_train
from tests.images import colour_folder
from tests.test_eval_predict import assert_one_line_error
from tests.test_imagefolder import folder_cfg, write_gtsrb
from tests.test_train import write_cifar100


def rewrite_pickle(path, edit):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    with open(path, "wb") as f:
        pickle.dump(edit(batch), f)


def replaced(key, value_of):
    """Damage that rewrites one entry of the pickled dict."""
    return lambda path: rewrite_pickle(path, lambda batch: {**batch, key: value_of(batch[key])})


DAMAGE = {  # what happens to cifar-100-python/train -> what the message says about it
    "garbage bytes": (lambda path: path.write_bytes(b"<html>503 Service Unavailable</html>"), "cannot be read"),
    "truncated": (lambda path: path.write_bytes(path.read_bytes()[:5000]), "cannot be read"),
    "empty": (lambda path: path.write_bytes(b""), "cannot be read"),
    "no data key": (lambda path: rewrite_pickle(path, lambda b: {b"fine_labels": b[b"fine_labels"]}), "b'data'"),
    "no label key": (lambda path: rewrite_pickle(path, lambda b: {b"data": b[b"data"]}), "b'fine_labels'"),
    "not a dict": (lambda path: rewrite_pickle(path, lambda b: [b[b"data"]]), "b'data'"),
    "wrong row size": (replaced(b"data", lambda data: data[:, :1024]), "shape (300, 1024)"),
    "fewer labels than rows": (replaced(b"fine_labels", lambda labels: labels[:-1]), "299 labels"),
    "float data": (replaced(b"data", lambda data: data / 255), "float64"),
    "label out of range": (replaced(b"fine_labels", lambda labels: [100] + labels[1:]), "outside 0..99"),
    "missing": (lambda path: path.unlink(), "is missing"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cifar_file_is_named_with_the_folder_to_delete(tmp_path, damage):
    write_cifar100(tmp_path)
    folder = tmp_path / "cifar-100-python"
    hurt, said = DAMAGE[damage]
    broken = folder / ("test" if damage == "missing" else "train")  # a missing train file means "download"
    hurt(broken)
    with pytest.raises(DataError) as err:
        load_dataset(OmegaConf.load(CONF / "dataset" / "cifar100.yaml"), tmp_path)
    message = str(err.value)
    assert message.startswith(str(broken)) and said in message and "\n" not in message
    assert f"delete {folder} and the next run downloads them again" in message


def test_cifar_meta_without_class_names_is_named(tmp_path):
    write_cifar100(tmp_path)
    rewrite_pickle(tmp_path / "cifar-100-python" / "meta", lambda meta: {b"fine_label_names": []})
    with pytest.raises(DataError, match=f"^{tmp_path / 'cifar-100-python' / 'meta'} holds no list of class names"):
        load_dataset(OmegaConf.load(CONF / "dataset" / "cifar100.yaml"), tmp_path)


def test_a_corrupt_cifar_pickle_stops_lab_train_with_one_line_and_exit_2(tmp_path):
    write_cifar100(tmp_path / "data")
    train_file = tmp_path / "data" / "cifar-100-python" / "train"
    train_file.write_bytes(train_file.read_bytes()[:100])
    proc = run_train("dataset=cifar100", f"paths.data_dir={tmp_path / 'data'}", "model.base_width=8",
                     "trainer.accelerator=cpu", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(proc, str(train_file), "cannot be read", f"delete {train_file.parent}")


def test_dataset_bytes_are_images_times_channels_times_pixels():
    assert images_bytes(100_000, 3, 224) == 15_052_800_000  # the 15 GB folder that used to crash
    assert images_bytes(1_797, 1, 8) == 1_797 * 64


def test_too_large_a_dataset_names_its_size_the_budget_and_an_image_size_that_fits(tmp_path):
    budget = MemoryBudget(2**30, "free memory of GPU 0, a test GPU")
    with pytest.raises(DataError) as err:
        check_fits(100_000, 3, 224, budget, tmp_path)
    message = str(err.value)
    assert "100000 images" in message and str(tmp_path) in message and "\n" not in message
    assert "14.0 GiB" in message and "1.0 GiB" in message and "GPU 0" in message
    largest = int(message.split("dataset.image_size=")[2].split()[0])  # the first one is the size asked for
    assert images_bytes(100_000, 3, largest) <= budget.bytes < images_bytes(100_000, 3, largest + 1)
    check_fits(100_000, 3, largest, budget, tmp_path)
    check_fits(100_000, 3, 224, None, tmp_path)  # the host does not say: no check


def test_an_image_folder_beyond_the_budget_stops_before_decoding(tmp_path):
    colour_folder(tmp_path / "images", {"train_dataset": 3, "test_dataset": 1})  # 12 images
    cfg = folder_cfg(tmp_path / "images", image_size=16)
    with pytest.raises(DataError, match=r"12 images .* need 9\.0 KiB .*dataset\.image_size=9 or smaller"):
        load_dataset(cfg, tmp_path / "data", budget=MemoryBudget(3_000, "a tiny budget"))
    assert not (tmp_path / "data" / "cache").exists()  # nothing was decoded
    cfg.image_size = 9
    data = load_dataset(cfg, tmp_path / "data", budget=MemoryBudget(3_000, "a tiny budget"))
    assert data.train_images.shape[1:] == (3, 9, 9)


def test_without_a_budget_an_image_folder_must_fit_half_the_hosts_ram(tmp_path, monkeypatch):
    colour_folder(tmp_path / "images", {"train_dataset": 3, "test_dataset": 1})
    monkeypatch.setattr(lab.dataset.memory, "host_available_bytes", lambda: 6_000)
    with pytest.raises(DataError, match=r"there is room for \(half the host's available RAM\)"):
        load_dataset(folder_cfg(tmp_path / "images", image_size=16), tmp_path / "data")
    assert lab.dataset.memory.memory_budget().bytes == 3_000


def test_gtsrb_beyond_the_budget_stops_before_decoding(tmp_path):
    write_gtsrb(tmp_path / "data", tracks=1, frames=1)  # 43 train + 2 test images
    cfg = OmegaConf.load(CONF / "dataset" / "gtsrb.yaml")
    with pytest.raises(DataError, match=f"45 images under {tmp_path / 'data' / 'gtsrb'} at dataset.image_size=32"):
        load_dataset(cfg, tmp_path / "data", budget=MemoryBudget(45 * 3 * 31 * 31, "a tiny budget"))
    assert not (tmp_path / "data" / "cache").exists()


def test_on_cuda_the_budget_is_the_gpus_free_memory(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (5 * 2**30, 141 * 2**30))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    expected = MemoryBudget(5 * 2**30, "free memory of GPU 0, NVIDIA H200")
    assert lab.dataset.memory.memory_budget(on_cuda=True) == expected


def test_the_hosts_available_memory_is_read_and_no_more_than_its_ram():
    available = lab.dataset.memory.host_available_bytes()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # MemFree: the kernel can also drop caches
    assert available is not None and free // 2 <= available <= physical


def test_a_relative_root_that_does_not_exist_names_the_absolute_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset(folder_cfg("Traffic_sign"), tmp_path / "data")
    assert "dataset.root=Traffic_sign" in str(err.value) and f"{tmp_path / 'Traffic_sign'} " in str(err.value)
    colour_folder(tmp_path / "signs", {"train_dataset": 2})
    data = load_dataset(folder_cfg("signs", image_size=8), tmp_path / "data")  # relative to the current folder
    assert len(data.train_labels) + len(data.test_labels) == 6 and np.isfinite(data.mean).all()
