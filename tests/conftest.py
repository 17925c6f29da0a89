"""Shared test helpers: compose the real config, run the real CLI in a subprocess on tiny data."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose(overrides=(), config_name="train"):
    """The composed config, as `python -m lab.train OVERRIDES` would see it (hydra node included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lab.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def run_module(module: str, *args, env=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or ROOT)


def free_port() -> int:
    """A loopback port nothing listens on now (a server the test starts, or one that must not answer)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Tests that check plumbing, not learning, train a 8-wide ResNet10 on a few batches.
TINY = ["model.base_width=8", "trainer.accelerator=cpu", "trainer.limit_train_batches=8"]


def run_train(*args, **kwargs) -> subprocess.CompletedProcess:
    return run_module("lab.train", *args, **kwargs)


def trained_run(run_dir, *args, **kwargs):
    """run_dir after `python -m lab.train ARGS hydra.run.dir=run_dir` finished: module fixtures share one run."""
    proc = run_train(*args, f"hydra.run.dir={run_dir}", **kwargs)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def results(run_dir) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """One real 8-epoch run on scikit-learn's digits, shared by the tests that read its run dir. A 16-wide
    ResNet10 (model.base_width=16) learns digits as well as the 64-wide one at 1/16 of the cost."""
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    # PYTHONPROFILEIMPORTTIME: stderr lists every module the run imported (test_architecture reads it).
    proc = run_train("dataset=digits", "trainer.max_epochs=8", "scheduler=cosine", "model.base_width=16",
                     "trainer.accelerator=cpu", f"hydra.run.dir={run_dir}", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc
