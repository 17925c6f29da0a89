"""python -m lab.bench [--quick]: lab's speed, measured side by side on whatever device is here.

Sections: data pipeline (lab's loader vs a torchvision/PIL DataLoader), training throughput (lab's
LightningModule in a Trainer vs a raw PyTorch loop), channels_last / bf16 effects, projected epoch and study
times, memory. Prints a table and writes bench.json with the machine and the commit. Every timed region
starts after warm-up steps and ends with a device sync (CUDA work is asynchronous)."""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from lab.bench.data import cpu_clock, data_section, others_cpu_share
from lab.bench.training import (
    host_section,
    jobs_section,
    memory_section,
    study_projection,
    training_section,
)
from lab.machine import describe_cpu
from lab.run_files import git_state, write_atomic


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m lab.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and models (< 3 min on a 2-core CPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default: 512 on CUDA, 128 on CPU")
    p.add_argument("--models", default=None, help="comma list; default resnet10,resnet18,resnet50")
    p.add_argument("--sections", default="data,train,host,memory",
                   help="comma list of data, train, host, memory, jobs (host: the loop's own time per step; "
                        "jobs: 1/2/4 concurrent resnet10 runs)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (model.compile=true)")
    p.add_argument("--out", default="bench.json")
    return p.parse_args(argv)


def machine() -> dict:
    info = dict(cpu=describe_cpu(), cores=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, **git_state())
    info["command"] = "python -m lab.bench " + " ".join(sys.argv[1:])
    return info


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    width = {c: max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns}
    print(f"\n{title}")
    print("  ".join(c.ljust(width[c]) for c in columns))
    for r in rows:
        print("  ".join(fmt(r.get(c)).ljust(width[c]) for c in columns))


def check_targets(report: dict, device) -> list[dict]:
    """The issue's targets against what this run measured: met, or missed by how much."""
    train = {r["model"]: r for r in report.get("train", [])}
    memory, data = report.get("memory", {}), report.get("data", {})
    resnet10_train = train.get("resnet10", {}).get("lab_lightning")
    # With every augmentation op on, the loader must still outrun training by far (measured with --sections
    # data,train): on a CPU both share the cores, so the loader's time adds to every step.
    loader_margin = round(data["lab_erase_cutmix_images_per_s"] / resnet10_train, 1) \
        if resnet10_train and data.get("lab_erase_cutmix_images_per_s") else None
    wanted = [("data_speedup", data.get("data_speedup"), ">=", 10),
              ("erase+cutmix loader / resnet10 training images/s", loader_margin, ">=", 50),
              ("resnet10 lightning_overhead", train.get("resnet10", {}).get("lightning_overhead"), "<=", 1.10),
              ("time_to_first_step_s", memory.get("time_to_first_step_s"), "<=", 10)]
    if device.type == "cpu":
        wanted.append(("resnet18 run peak RSS MiB", memory.get("resnet18_run_peak_rss_mib"), "<=", 2048))
    else:
        wanted += [("data images/s", data.get("lab_images_per_s"), ">=", 100_000),
                   ("resnet18 epoch_50k_s", train.get("resnet18", {}).get("epoch_50k_s"), "<=", 1.5),
                   ("resnet50 epoch_50k_s", train.get("resnet50", {}).get("epoch_50k_s"), "<=", 5.0)]
    rows = []
    for name, value, op, target in wanted:
        if value is None:
            verdict = "not measured"
        elif (value >= target) if op == ">=" else (value <= target):
            verdict = "met"
        else:
            verdict = f"missed by {abs(value - target) / target:.1%}"
        rows.append(dict(target=f"{name} {op} {target}", measured=value, verdict=verdict))
    return rows


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return "" if value is None else str(value)


def run_sections(args, device, models: list[str], batch: int, report: dict, save) -> None:
    """Each section measures, prints its table and saves bench.json, so a run cut short keeps what it has."""
    sections = args.sections.split(",")
    if "data" in sections:
        report["data"] = data_section(device, batch, quick=args.quick)
        save()
        print_table("Data pipeline (normalised, augmented batches on the device)", [report["data"]])
    if "train" in sections:
        report["train"] = training_section(device, models, batch, quick=args.quick, compile_too=args.compile)
        print_table("Training throughput, images/s (after warm-up)", report["train"])
        report["study"] = study_projection(report["train"])
        print_table("Projected 50k-image epoch and the lab's whole study (tasks 1-5, 50 epochs each)",
                    report["study"]["rows"])
        partial = "" if report["study"]["complete"] else " (only the measured models; run without --quick)"
        print(f"whole study: {report['study']['total_h']:.2f} h{partial}")
        save()
    if "host" in sections:
        report["host"] = host_section(device, quick=args.quick)
        print_table("Host time per training step (a one-layer net: the loop's own work)", [report["host"]])
        save()
    if "memory" in sections:
        report["memory"] = memory_section(device, quick=args.quick)
        print_table("Memory and start-up", [report["memory"]])
        save()
    if "jobs" in sections:
        report["jobs"] = jobs_section(device, batch, quick=args.quick)
        print_table("Concurrent resnet10 jobs on one device", report["jobs"])


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    batch = args.batch_size or (512 if device.type == "cuda" else 128)
    default_models = "resnet10" if args.quick and device.type == "cpu" else "resnet10,resnet18,resnet50"
    models = (args.models or default_models).split(",")
    report = dict(machine=machine(), device=str(device), batch_size=batch, quick=args.quick)
    start, clock = time.perf_counter(), cpu_clock()
    save = lambda: write_atomic(Path(args.out), json.dumps(report, indent=2) + "\n")
    run_sections(args, device, models, batch, report, save)
    report["targets"] = check_targets(report, device)
    print_table("Targets", report["targets"])
    # A busy machine slows both sides of a ratio unevenly and every absolute number: say so, loudly.
    others = others_cpu_share(clock, cpu_clock(), os.cpu_count() or 1)
    report["machine"]["others_cpu_share"] = round(others, 3)
    if others > 0.05:
        print(f"\nwarning: other processes used {others:.0%} of this machine's CPU during the bench, so these "
              f"numbers are not comparable with a quiet run's: rerun when the machine is idle")
    report["bench_time_s"] = round(time.perf_counter() - start, 1)
    save()
    print(f"\nwrote {args.out} ({report['bench_time_s']} s)")
    return 0
