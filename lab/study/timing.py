"""A study's time claims, measured in pairs: a short probe of the two arms' training steps in one process, taking
turns (lab/bench/alternate.py), instead of the arms' own training times.

The arms' runs trained minutes apart while a shared machine's speed moved (x1.8 in 20 minutes on the 2-core
CPU), so the ratio of their times holds the drift; a probe that alternates A B B A ... pairs the arms in time. It
times what separates the arms, the net and the optimizer: forward, loss, backward and the optimizer's step on one
batch of the run's size, image shape and precision, on the device the run trained on (the CPU when that device is
not here). The loader, validation and distillation's teacher are left out. The ratio is this machine's: a CPU's
ratio of two nets is not a GPU's. Results are kept in <study dir>/time_probe.json, keyed by the work timed, so a
report rendered again reads them instead of timing again."""
import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lab.bench.alternate import alternate
from lab.errors import first_line
from lab.machine import describe_cpu
from lab.run_files import write_json

log = logging.getLogger("lab")

PAIRS = 6  # pairs of rounds (A B, B A): six ratios give the interval 5 degrees of freedom
STEPS = 3  # training steps a turn: long enough that the clock's and the loop's overhead are noise
# Settings that change what a run learns but not the work of a training step.
NOT_WORK = {"experiment", "scheduler", "seed", "logger", "paths", "resume", "progress_every_s", "ema", "test_tta"}


def work_key(results: dict) -> str:
    """What one training step of this run computes: runs with the same key time the same in a probe."""
    config = {k: v for k, v in (results.get("config") or {}).items() if k not in NOT_WORK}
    config["optimizer"] = {k: v for k, v in (config.get("optimizer") or {}).items() if k != "lr"}
    ran_on = [results.get(k) for k in ("precision", "cpu_threads", "device", "image_shape", "num_classes")]
    return json.dumps([config, ran_on], sort_keys=True, default=str)


def probe_device(results: dict) -> torch.device:
    wanted = str(results.get("device") or "cpu")
    return torch.device(wanted if wanted.startswith("cuda") and torch.cuda.is_available() else "cpu")


def training_steps(results: dict, steps: int):
    """A function that runs `steps` training steps of this run's net and optimizer on one random batch."""
    import hydra
    from omegaconf import OmegaConf

    from lab.model import build_model, ready_to_train

    cfg, device = OmegaConf.create(results["config"]), probe_device(results)
    channels, height, width = results["image_shape"]
    net = build_model(cfg.model, results["num_classes"], channels, width).to(device)
    net, channels_last = ready_to_train(net, cfg.model, device.type == "cuda")
    optimizer = hydra.utils.instantiate(cfg.optimizer)(net.parameters())
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(cfg.dataset.batch_size, channels, height, width, generator=generator).to(device)
    images = images.to(memory_format=torch.channels_last) if channels_last else images
    labels = torch.randint(results["num_classes"], (cfg.dataset.batch_size,), generator=generator).to(device)
    precision = str(results.get("precision") or "32-true")
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16

    def run() -> None:
        for _ in range(steps):
            with torch.autocast(device.type, dtype=dtype, enabled=precision != "32-true"):
                loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return run


class TimeProbe:
    """Times arm a's training steps against arm b's, alternating; -> {seconds_a, seconds_b (per pair of rounds),
    machine}, or why it cannot. Each pair of works is timed once per study dir."""

    def __init__(self, path: Path | None, pairs: int = PAIRS, steps: int = STEPS):
        self.path, self.pairs, self.steps = path, pairs, steps
        self.cache = json.loads(path.read_text()) if path is not None and path.is_file() else {}

    def __call__(self, a: dict, b: dict) -> dict | str:
        if not (a.get("image_shape") and b.get("image_shape")):
            return "a run's results.json has no image_shape (trained before lab's time probe): run it again"
        key = json.dumps([work_key(a), work_key(b), self.pairs, self.steps])
        if key not in self.cache:
            device = probe_device(a)
            log.info(f"time probe: {self.pairs} pairs of {self.steps} training steps each, alternating, on {device}")
            try:
                works = {"a": training_steps(a, self.steps), "b": training_steps(b, self.steps)}
                seconds = alternate(works, self.pairs)
            except Exception as err:  # a net this machine cannot build or fit: the row says so, the report stands
                return f"the time probe could not time these arms here: {first_line(err)}"
            machine = torch.cuda.get_device_name(device) if device.type == "cuda" else describe_cpu()
            self.cache[key] = dict(seconds_a=seconds["a"], seconds_b=seconds["b"], machine=machine,
                                   measured_at=time.time())
            if self.path is not None:
                write_json(self.path, self.cache)
        return self.cache[key]
