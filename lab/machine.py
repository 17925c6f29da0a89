"""What this CPU is: its model name and the flags that decide whether bf16 autocast pays (from /proc/cpuinfo).

Timings in BENCHMARKS.md and a study's provenance name these, since the same 2-core machine comes with or without
AVX-512 BF16 / AMX, and bf16 is ~2x faster with them and slower than fp32 without."""
import os
from functools import cache
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_flags() -> tuple[str, str]:
    """(model name, flags line) of the first CPU; ("unknown", "") off Linux."""
    try:
        first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0]
    except OSError:
        return "unknown", ""
    field = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first_cpu.splitlines())}
    return field.get("model name", "unknown"), field.get("flags", "")


def cpu_model() -> str:
    return cpu_flags()[0]


def cpu_has_fast_bf16() -> bool:
    flags = cpu_flags()[1].split()
    return any(f in flags for f in BF16_FLAGS)


def describe_cpu() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor, 2 cores, avx512_bf16 amx_bf16'."""
    flags = cpu_flags()[1].split()
    bf16 = " ".join(f for f in BF16_FLAGS if f in flags) or "no AVX-512 BF16 or AMX"
    return f"{cpu_model()}, {os.cpu_count()} cores, {bf16}"


def torch_facts(gpu: bool) -> dict:
    """The software a report was rendered with and the GPUs it sees: torch, CUDA, the GPUs' names."""
    import torch

    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if gpu and torch.cuda.is_available() else []
    return dict(torch=torch.__version__, cuda=torch.version.cuda, gpu_names=sorted(set(names)))
