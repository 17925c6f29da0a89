"""Kill and resume exactly, SIGTERM checkpoints, DDP on CPU, and the -m + DDP refusal."""
import csv
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT, results, run_train, trained_run

# One thread: float sums in the same order in every run, however busy the machine (cpu_threads=auto follows load).
ARGS = ["dataset=digits", "trainer.max_epochs=4", "model.base_width=16", "trainer.accelerator=cpu", "cpu_threads=1"]


def rows_without_timing(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    assert run_train(*ARGS, f"hydra.run.dir={run_dir}").returncode == 0
    return run_dir


def start_and_signal(run_dir, sig, after_rows, delay_s=0.0, args=ARGS):
    proc = subprocess.Popen([sys.executable, "-m", "lab.train", *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.csv"
    deadline = time.time() + 300
    while (not metrics.exists() or len(metrics.read_text().splitlines()) < after_rows + 1) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.02)
    time.sleep(delay_s)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow
def test_sigkill_after_second_epoch_then_resume_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    code, _ = start_and_signal(run_dir, signal.SIGKILL, after_rows=2)
    assert code == -signal.SIGKILL
    assert results(run_dir)["status"] == "running"  # never taken as finished by resume
    proc = run_train(*ARGS, f"hydra.run.dir={run_dir}", "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rows_without_timing(run_dir) == rows_without_timing(uninterrupted)
    assert results(run_dir)["test_acc"] == results(uninterrupted)["test_acc"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, exit_code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_sigterm_or_ctrl_c_saves_a_mid_epoch_checkpoint_and_resume_is_exact(uninterrupted, tmp_path, sig,
                                                                           exit_code, name):
    run_dir = tmp_path / "run"
    code, err = start_and_signal(run_dir, sig, after_rows=1, delay_s=0.15)
    assert code == exit_code and f"stopped by {name}" in err and "resume=true" in err
    assert "stopping: saved" in err  # after the batch, with its checkpoint: not an immediate stop
    assert results(run_dir)["status"] == "interrupted"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] > 0
    proc = run_train(*ARGS, f"hydra.run.dir={run_dir}", "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rows_without_timing(run_dir) == rows_without_timing(uninterrupted)
    assert results(run_dir)["test_acc"] == results(uninterrupted)["test_acc"]
    # The step losses of the epoch it stopped in were kept in last.ckpt: steps.csv is the uninterrupted run's.
    assert (run_dir / "steps.csv").read_text() == (uninterrupted / "steps.csv").read_text()
    # Time and images both cover the whole run: their product is every image trained on, as uninterrupted.
    resumed, whole = results(run_dir), results(uninterrupted)
    assert resumed["processes"] == 2 and whole["processes"] == 1
    images = [r["images_per_s"] * r["train_time_s"] for r in (resumed, whole)]
    assert images[0] == pytest.approx(images[1], rel=0.01)


# The issue's combination: every augmentation, the moving average and test-time flips at once (digits' flips are
# off by default; they are on here so that test_tta=flip is allowed).
EVERYTHING = ARGS + ["augment.flip=true", "augment.erase_p=0.5", "augment.mix=cutmix", "ema.decay=0.99",
                     "test_tta=flip"]


@pytest.fixture(scope="module")
def uninterrupted_everything(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("everything") / "run", *EVERYTHING)


@pytest.mark.slow
@pytest.mark.parametrize("sig, after_rows, delay_s", [(signal.SIGKILL, 2, 0.15), (signal.SIGTERM, 1, 0.15)])
def test_resume_is_exact_with_every_augmentation_ema_and_flips_on(uninterrupted_everything, tmp_path, sig,
                                                                   after_rows, delay_s):
    """kill -9 mid-epoch (resumed from the last epoch's end) and SIGTERM mid-epoch (from the batch it stopped
    after): the same metrics, step losses and test accuracy as the run that was never stopped."""
    run_dir = tmp_path / "run"
    code, _ = start_and_signal(run_dir, sig, after_rows=after_rows, delay_s=delay_s, args=EVERYTHING)
    assert code in (-signal.SIGKILL, 143)
    proc = run_train(*EVERYTHING, f"hydra.run.dir={run_dir}", "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rows_without_timing(run_dir) == rows_without_timing(uninterrupted_everything)
    assert (run_dir / "steps.csv").read_text() == (uninterrupted_everything / "steps.csv").read_text()
    resumed, whole = results(run_dir), results(uninterrupted_everything)
    assert resumed["test_acc"] == whole["test_acc"] and resumed["processes"] == 2
    best = [torch.load(d / "checkpoints" / "best.ckpt", weights_only=True) for d in (run_dir, uninterrupted_everything)]
    assert all(torch.equal(best[0]["state_dict"][k], best[1]["state_dict"][k]) for k in best[1]["state_dict"])


@pytest.mark.slow  # the resume tests above compare with the same uninterrupted run
def test_same_seed_same_metrics(uninterrupted, tmp_path):
    proc = run_train(*ARGS, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0
    assert rows_without_timing(tmp_path) == rows_without_timing(uninterrupted)


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(tmp_path):
    proc = run_train("trainer=ddp", "trainer.devices=2", "dataset=digits", "trainer.max_epochs=1",
                     "model.base_width=8", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = results(tmp_path)
    assert res["status"] == "ok" and res["world_size"] == 2
    assert len(rows_without_timing(tmp_path)) == 1  # one writer: rank 0


def test_ddp_under_multirun_is_refused_with_the_launcher_route(tmp_path):
    """Set in a yaml (here a config dir's trainer option): the sweep's check of every job refuses it in one line
    before any job (the cases it tells apart: the test below)."""
    (tmp_path / "conf" / "trainer").mkdir(parents=True)
    (tmp_path / "conf" / "trainer" / "two.yaml").write_text("defaults: [ddp]\n")
    proc = run_train("-m", f"--config-dir={tmp_path / 'conf'}", "trainer=two", "dataset=digits", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'yaml'}")
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "hydra/launcher=joblib" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "yaml" / "seed=1").exists()


@pytest.mark.parametrize("overrides,refused", [
    (["trainer=ddp"], True), (["trainer.devices=4"], True), (["trainer.devices=[0,1]"], True),
    (["trainer=ddp", "trainer.devices=1"], False), (["trainer.num_nodes=2"], True), (["seed=2"], False),
])
def test_ddp_in_a_sweeps_job_is_refused(tmp_path, overrides, refused):
    """The check every -m sweep runs on each job before the first one starts (typed or set in a yaml alike; the
    Slurm launchers start every rank with srun and skip it: lab.sweeps.jobs)."""
    from omegaconf import open_dict

    from lab.config import check_ddp_outside_sweeps
    from lab.context import RunContext
    from lab.errors import ConfigError
    from tests.conftest import compose

    cfg = compose(overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    check_ddp_outside_sweeps(cfg, RunContext(run_dir=tmp_path))  # a single run may use DDP
    if refused:
        with pytest.raises(ConfigError, match="cannot run under -m"):
            check_ddp_outside_sweeps(cfg, RunContext(run_dir=tmp_path, in_sweep=True))
    else:
        check_ddp_outside_sweeps(cfg, RunContext(run_dir=tmp_path, in_sweep=True))
