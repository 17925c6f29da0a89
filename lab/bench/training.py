"""python -m lab.bench's training, host, memory and concurrent-jobs sections (main.py holds the command line and
the tables; data.py the machine facts and the data path)."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from lab.bench.data import fake_cifar, lab_loader, sync
from lab.config import CONF
from lab.model import build_model


def model_batch(model: str, batch: int, device) -> int:
    # ResNet50 at batch 128 needs ~4x the CPU time per step of ResNet18; keep CPU steps a few seconds long.
    return batch // 4 if model == "resnet50" and device.type == "cpu" else batch


def build_net(model: str, device, channels_last: bool):
    """The net of conf/model/<model>.yaml with CIFAR-100's 100 classes; "linear" is one Linear layer, a net
    with next to no compute, so a step's time is the host's own work (loop, data slicing, metric updates)."""
    if model == "linear":
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 100)).to(device)
    net = build_model(OmegaConf.load(CONF / "model" / f"{model}.yaml"), 100, 3).to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def raw_throughput(model, device, batch, steps, warmup, bf16, channels_last) -> dict:
    """A minimal PyTorch loop: forward, cross-entropy, backward, SGD step. Same data path as lab."""
    torch.manual_seed(0)
    net = build_net(model, device, channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    images, labels = fake_cifar(batch * (steps + warmup))
    batches = iter(lab_loader(images, labels, batch, device, channels_last))
    for step in range(warmup + steps):
        if step == warmup:
            t0 = sync(device)
        x, y = next(batches)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return dict(images_per_s=steps * batch / (sync(device) - t0))


def lightning_throughput(model, device, batch, steps, warmup, precision: str, compile_net=False,
                         channels_last=True) -> dict:
    """lab's Classifier in a Lightning Trainer (progress bar, logger and checkpoints off); compile_net is
    model.compile=true, whose compilation happens in the warm-up steps (warmup_s)."""
    import pytorch_lightning as pl

    from lab.module import Classifier
    from lab.trainer import quiet_lightning

    quiet_lightning()

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch_, idx):
            if idx == 0:
                self.t_start = sync(device)
            if idx == warmup:
                self.t0 = sync(device)

        def on_train_batch_end(self, trainer, module, outputs, batch_, idx):
            if idx == warmup + steps - 1:
                self.t1 = sync(device)

    torch.manual_seed(0)
    net = build_net(model, device, channels_last)
    if compile_net:
        net.compile()
    sgd = OmegaConf.create(dict(_target_="torch.optim.SGD", _partial_=True, lr=0.01, momentum=0.9, weight_decay=1e-4))
    module = Classifier(net, {"num_classes": 100}, sgd)
    images, labels = fake_cifar(batch * (steps + warmup))
    timer = StepTimer()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = pl.Trainer(accelerator=device.type, devices=1, precision=precision, max_steps=warmup + steps,
                         limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer], benchmark=True)
    trainer.fit(module, train_dataloaders=lab_loader(images, labels, batch, device, channels_last))
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return dict(images_per_s=steps * batch / (timer.t1 - timer.t0), peak_gpu_gib=peak,
                warmup_s=timer.t0 - timer.t_start)


def host_section(device, quick: bool) -> dict:
    """Host time per training step, lab in a Trainer vs a bare loop, on the "linear" net. On a GPU this work
    overlaps the queued kernels as long as nothing in the step waits for the device (tests/test_sync.py), so
    it costs throughput only if it exceeds the GPU's own time per step (~15 ms for resnet18 at batch 512)."""
    batch, steps, warmup = 32, (200 if quick else 1000), 20
    raw = raw_throughput("linear", device, batch, steps, warmup, bf16=False, channels_last=False)
    lab = lightning_throughput("linear", device, batch, steps, warmup, "32-true", channels_last=False)
    raw, lab = raw["images_per_s"], lab["images_per_s"]
    raw_ms, lab_ms = 1000 * batch / raw, 1000 * batch / lab
    return dict(batch=batch, raw_ms_per_step=round(raw_ms, 3), lab_ms_per_step=round(lab_ms, 3),
                lab_extra_ms_per_step=round(lab_ms - raw_ms, 3))


def short_if_slow(bf16: bool, device, steps: int, warmup: int) -> tuple[int, int]:
    # Without AVX-512 BF16 a CPU emulates bf16 ~15x slower than fp32: 2 timed steps tell that story.
    from lab.machine import cpu_has_fast_bf16

    slow = bf16 and device.type == "cpu" and not cpu_has_fast_bf16()
    return (min(steps, 2), 1) if slow else (steps, warmup)


def training_section(device, models, batch, quick, compile_too=False) -> list[dict]:
    from lab.trainer import resolve_precision

    precision = resolve_precision("auto", device.type)
    bf16_default = precision.startswith("bf16")
    # --quick on a CPU times 5 steps: with 3, one slow step moves lightning_overhead by 10%.
    steps, warmup = (5, 1) if quick and device.type == "cpu" else (8, 2) if device.type == "cpu" else (50, 15)
    rows = []
    for model in models:
        b = model_batch(model, batch, device)
        lab = lightning_throughput(model, device, b, steps, warmup, precision)
        row = dict(model=model, batch=b, precision=precision, lab_lightning=lab["images_per_s"])
        if not quick or model == "resnet10":
            raw = {(bf16, cl): raw_throughput(model, device, b, *short_if_slow(bf16, device, steps, warmup), bf16,
                                              cl)["images_per_s"]
                   for bf16, cl in ((False, False), (False, True), (True, True))}
            row.update(raw_fp32=raw[(False, False)], raw_fp32_channels_last=raw[(False, True)],
                       raw_bf16_channels_last=raw[(True, True)])
            row["lightning_overhead"] = round(raw[(bf16_default, True)] / lab["images_per_s"], 3)
        if compile_too:  # model.compile=true against the eager lab run above
            compiled = lightning_throughput(model, device, b, steps, warmup, precision, compile_net=True)
            row.update(lab_compiled=compiled["images_per_s"], compile_warmup_s=round(compiled["warmup_s"], 1),
                       compile_speedup=round(compiled["images_per_s"] / lab["images_per_s"], 3))
        row["epoch_50k_s"] = round(50_000 / lab["images_per_s"], 2)
        row["peak_gpu_gib"] = round(lab["peak_gpu_gib"], 2) if lab["peak_gpu_gib"] else None
        rows.append(row)
    return rows


# The lab's study as lab's experiments run it, 50 epochs each: (task, model, runs).
STUDY = [("1 ResNet10", "resnet10", 1), ("2 optimizers", "resnet10", 5), ("3 lr sweep", "resnet10", 10),
         ("3b multistep", "resnet10", 2), ("4 models", "resnet10", 1), ("4 models", "resnet18", 1),
         ("4 models", "resnet50", 1), ("5 teacher", "resnet50", 1), ("5 students", "resnet18", 3)]


def study_projection(train_rows: list[dict]) -> dict:
    """Hours for the whole study from measured epoch times. A distilled student's epoch adds the teacher's
    forward pass, ~1/3 of a ResNet50 training step (backward costs about twice the forward)."""
    epoch_s = {r["model"]: r["epoch_50k_s"] for r in train_rows}
    rows, total = [], 0.0
    for task, model, runs in STUDY:
        if model not in epoch_s:
            rows.append(dict(task=task, model=model, runs=runs, hours="not measured"))
            continue
        per_epoch = epoch_s[model]
        if task == "5 students" and "resnet50" in epoch_s:
            per_epoch += epoch_s["resnet50"] / 3 * 2 / 3  # two of three students distill
        hours = per_epoch * 50 * runs / 3600
        total += hours
        rows.append(dict(task=task, model=model, runs=runs, hours=round(hours, 3)))
    return dict(rows=rows, total_h=total, complete=all(isinstance(r["hours"], float) for r in rows))


def memory_section(device, quick: bool) -> dict:
    """Peak RSS of a real `python -m lab.train` ResNet18 run on CIFAR-100-sized data, and its start-up time."""
    run_dir = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    args = ["dataset=fake", "dataset.train_size=50000", "dataset.test_size=10000", "model=resnet18",
            f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}", "trainer.max_steps=2",
            "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "dataset.batch_size=128",
            f"hydra.run.dir={run_dir}"]
    # wait4 gives this child's own peak RSS; RUSAGE_CHILDREN would also count earlier DataLoader workers.
    proc = subprocess.Popen([sys.executable, "-m", "lab.train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return dict(error=err.strip().splitlines()[-1] if err.strip() else "lab.train failed")
    res = json.loads((run_dir / "results.json").read_text())
    return dict(resnet18_run_peak_rss_mib=round(usage.ru_maxrss / 1024),  # KiB on Linux
                dataset_uint8_mib=round(60_000 * 3072 / 2**20), time_to_first_step_s=res["time_to_first_step_s"])


def jobs_section(device, batch, quick: bool) -> list[dict]:
    """Is several small jobs on one device faster than one at a time? k concurrent resnet10 loops."""
    steps, warmup = (3, 1) if device.type == "cpu" else (40, 10)
    code = ("import json,torch; from lab.bench.training import raw_throughput; "
            f"print(json.dumps(raw_throughput('resnet10', torch.device('{device.type}'), {batch}, {steps}, "
            f"{warmup}, {device.type == 'cuda'}, True)))")
    rows = []
    for k in (1, 2, 4):
        # Threads per job as hydra/launcher=joblib gives its workers (joblib splits the cores between them).
        threads = max(1, (os.cpu_count() or 1) // k)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
                 for _ in range(k)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        total = sum(o["images_per_s"] for o in outs)
        rows.append(dict(concurrent_jobs=k, threads_per_job=threads, total_images_per_s=round(total),
                         per_job=round(total / k)))
    return rows
