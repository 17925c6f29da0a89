"""hydra/launcher=slurm before the job array runs: refuse a request the partition can never meet (Slurm would
keep it PENDING forever, reason PartitionConfig or PartitionTimeLimit, and say nothing). slurm_watch.py watches
the array while it runs; lab/outcome.py has the words for a job stopped by SIGTERM inside Slurm."""
import logging
import re
import shutil
import subprocess

from lab.errors import ConfigError

log = logging.getLogger("lab")


def scontrol_records(text: str) -> list[dict]:
    """`scontrol -o show partition|node` output (one record a line, `Key=value` fields; a value may hold
    spaces, as OS=Linux 6.1 #1 SMP does) as dicts."""
    field = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")
    return [{key: value.strip() for key, value in field.findall(line.strip())}
            for line in text.splitlines() if "=" in line]


def number_or_none(value: str | None) -> int | None:
    """A Slurm count or MiB amount; UNLIMITED, INFINITE or missing means no limit (None)."""
    return int(value) if value and value.isdigit() else None


def minutes(limit: str | None) -> int | None:
    """A Slurm time limit (minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]])
    in whole minutes, seconds dropped (a job may ask for no more); UNLIMITED, INFINITE, NONE: None."""
    if not limit or not limit[0].isdigit():
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:
        parts = (parts + [0, 0])[:3]
    elif len(parts) < 3:
        parts = [0, *parts, 0][:3]
    hours, mins, _ = parts
    return int(days or 0) * 1440 + hours * 60 + mins


def node_gpus(gres: str | None) -> int:
    """GPUs in a node's Gres field: gpu:4, gpu:a100:4(S:0-1), gpu:a100:2,gpu:v100:2 (summed)."""
    counts = [re.match(r"gpu(?::[^:,(]+)?:(\d+)", item) for item in (gres or "").split(",")]
    return sum(int(m.group(1)) for m in counts if m)


def node_capacity(partition: dict, node: dict) -> dict:
    """What one job can get on this node inside this partition: CPUs, memory (MiB), GPUs."""
    cpus = number_or_none(node.get("CPUEfctv")) or number_or_none(node.get("CPUTot")) or 0
    mem_mb = number_or_none(node.get("RealMemory")) or 0
    return dict(name=node.get("NodeName", "?"), gpus=node_gpus(node.get("Gres")),
                cpus=min(cpus, number_or_none(partition.get("MaxCPUsPerNode")) or cpus),
                mem_mb=min(mem_mb, number_or_none(partition.get("MaxMemPerNode")) or mem_mb))


def request_of(launcher) -> dict:
    """The per-node amounts a job of the array asks for (submitit: --cpus-per-task x --ntasks-per-node,
    --mem=<mem_gb>GB, which Slurm reads as GiB, --gpus-per-node, --time)."""
    tasks = launcher.get("tasks_per_node") or 1
    return dict(cpus=(launcher.get("cpus_per_task") or 1) * tasks, tasks=tasks,
                mem_mb=(launcher.get("mem_gb") or 0) * 1024, gpus=launcher.get("gpus_per_node") or 0,
                timeout_min=launcher.get("timeout_min"))


# hydra.launcher key -> (the request_of/node_capacity field, its unit, the largest value that fits a node)
PER_NODE = {"cpus_per_task": ("cpus", "CPUs", lambda most, need: most // need["tasks"]),
            "mem_gb": ("mem_mb", "MiB of memory", lambda most, need: most // 1024),
            "gpus_per_node": ("gpus", "GPUs", lambda most, need: most)}


def unmet_request(launcher, partition: dict, nodes: list[dict]) -> str | None:
    """The one line that says which key the partition can never satisfy, or None when a node fits it all."""
    need, name = request_of(launcher), partition.get("PartitionName", "?")
    never = "so the jobs would wait in the queue forever"
    caps = [node_capacity(partition, n) for n in nodes]
    if not caps:
        return f"hydra.launcher.partition={name}: the Slurm partition has no nodes; choose another partition"
    max_time = minutes(partition.get("MaxTime"))
    if need["timeout_min"] and max_time is not None and need["timeout_min"] > max_time:
        return (f"hydra.launcher.timeout_min={need['timeout_min']}: Slurm partition {name} allows at most {max_time} "
                f"(MaxTime={partition['MaxTime']}), {never}; set hydra.launcher.timeout_min={max_time} or less, "
                f"or choose another hydra.launcher.partition")
    for key, (field, unit, fits) in PER_NODE.items():
        most = max(c[field] for c in caps)
        if need[field] > most:
            times = f" x tasks_per_node={need['tasks']}" if key == "cpus_per_task" and need["tasks"] > 1 else ""
            return (f"hydra.launcher.{key}={launcher.get(key)}{times}: the nodes of Slurm partition {name} have at "
                    f"most {most} {unit} each, {never}; set hydra.launcher.{key}={fits(most, need)} or less, or "
                    f"choose another hydra.launcher.partition")
    if not any(all(c[f] >= need[f] for f, _, _ in PER_NODE.values()) for c in caps):
        offer = "; ".join(f"{c['name']}: {c['cpus']} CPUs, {c['mem_mb']} MiB, {c['gpus']} GPUs" for c in caps[:4])
        return (f"hydra.launcher: no node of Slurm partition {name} has {need['cpus']} CPUs, {need['mem_mb']} MiB "
                f"and {need['gpus']} GPUs at once ({offer}), {never}; ask for less")
    return None


def scontrol(*args: str) -> str:
    if shutil.which("scontrol") is None:
        raise ConfigError("hydra/launcher=slurm: Slurm's scontrol is not on PATH; run the sweep where Slurm's "
                          "commands work (the cluster's login node), or use hydra/launcher=submitit_local")
    proc = subprocess.run(["scontrol", "-a", "-o", *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no message"])[0]
        raise ConfigError(f"hydra/launcher=slurm: `scontrol show {' '.join(args[1:])}` failed ({reason}); check "
                          f"that Slurm answers here (sinfo)")
    return proc.stdout


def chosen_partition(wanted: str | None) -> dict:
    """The partition the array goes to: hydra.launcher.partition, or Slurm's default when it is null."""
    partitions = scontrol_records(scontrol("show", "partition"))
    names = ", ".join(p.get("PartitionName", "?") for p in partitions)
    for partition in partitions:
        if partition.get("PartitionName") == wanted or (wanted is None and partition.get("Default") == "YES"):
            return partition
    if wanted is None:
        raise ConfigError(f"hydra.launcher.partition is not set and Slurm has no default partition; set it to "
                          f"one of: {names}")
    raise ConfigError(f"hydra.launcher.partition={wanted}: Slurm has no such partition; choose one of: {names}")


def check_request(launcher) -> None:
    """Raise ConfigError when the partition can never run a job of this array."""
    partition = chosen_partition(launcher.get("partition"))
    nodes = partition.get("Nodes")
    if not nodes or nodes == "(null)":
        records = []
    else:
        records = scontrol_records(scontrol("show", "node", *([] if nodes == "ALL" else [nodes])))
    problem = unmet_request(launcher, partition, records)
    if problem:
        raise ConfigError(problem)
