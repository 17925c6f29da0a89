"""lab.bench compares like with like: both pipelines deliver the same batches; targets are judged right."""
import torch

from lab.bench.data import fake_cifar, lab_loader, others_cpu_share, seed_style_loader
from lab.bench.main import check_targets
from lab.bench.training import study_projection


def test_both_data_pipelines_deliver_the_same_kind_of_batch():
    images, labels = fake_cifar(512)
    lab_x, lab_y = next(iter(lab_loader(images, labels, 64, torch.device("cpu"))))
    seed_x, seed_y = next(iter(seed_style_loader(images, labels, 64, workers=0, pin=False)))
    assert lab_x.shape == seed_x.shape == (64, 3, 32, 32) and lab_x.dtype == seed_x.dtype == torch.float32
    # Same normalisation: random uint8 pixels come out with the same mean/std either way (padding zeros too).
    assert abs(lab_x.mean() - seed_x.mean()) < 0.05 and abs(lab_x.std() - seed_x.std()) < 0.05
    assert lab_y.dtype == seed_y.dtype == torch.int64


def test_targets_say_met_or_by_how_much_they_are_missed():
    report = {"data": {"data_speedup": 12.5}, "train": [{"model": "resnet10", "lightning_overhead": 1.21}],
              "memory": {"time_to_first_step_s": 8.0, "resnet18_run_peak_rss_mib": 2095}}
    verdicts = {r["target"]: r["verdict"] for r in check_targets(report, torch.device("cpu"))}
    assert verdicts["data_speedup >= 10"] == "met"
    assert verdicts["resnet10 lightning_overhead <= 1.1"] == "missed by 10.0%"
    assert verdicts["resnet18 run peak RSS MiB <= 2048"] == "missed by 2.3%"


def test_study_projection_adds_the_teachers_forward_pass_to_distilled_students():
    rows = [{"model": "resnet10", "epoch_50k_s": 1.0}, {"model": "resnet18", "epoch_50k_s": 2.0},
            {"model": "resnet50", "epoch_50k_s": 6.0}]
    study = {r["task"] + r["model"]: r["hours"] for r in study_projection(rows)["rows"]}
    assert study["1 ResNet10resnet10"] == round(1.0 * 50 / 3600, 3)
    students = (2.0 + 6.0 / 3 * 2 / 3) * 50 * 3 / 3600
    assert study["5 studentsresnet18"] == round(students, 3)


def test_others_cpu_share_is_the_machines_cpu_time_not_run_by_this_process():
    # 10 s of wall time on 2 cores; the machine ran 12 CPU s, this process 7: others took 5 of 20.
    assert others_cpu_share((0.0, 100.0, 3.0), (10.0, 112.0, 10.0), cores=2) == 0.25
    assert others_cpu_share((0.0, 100.0, 3.0), (10.0, 106.0, 10.0), cores=2) == 0.0  # tick rounding
