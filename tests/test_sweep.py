"""Sweeps: readable job dirs, bad jobs that do not sink the sweep, resume, the report, parallel jobs."""
import csv

import pytest
import torch

from tests.conftest import TINY, compose, results, run_train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory):
    """Four jobs of one epoch on digits, each value valid on its own: lr 0.02 trains, lr 1000 diverges, and a
    training subset larger than digits' 1,437 training images fails when its job loads the data."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "lr"
    args = ["+experiment=lr_sweep", "dataset=digits", "trainer.max_epochs=1", *TINY, "optimizer.lr=0.02,1000",
            "dataset.train_subset=null,5000", f"hydra.sweep.dir={sweep_dir}"]
    return sweep_dir, args, run_train(*args)


OK, DIVERGED = "optimizer.lr=0.02,dataset.train_subset=null", "optimizer.lr=1000,dataset.train_subset=null"
FAILED = ("optimizer.lr=0.02,dataset.train_subset=5000", "optimizer.lr=1000,dataset.train_subset=5000")


def test_job_dirs_are_named_by_the_swept_values(lr_sweep):
    sweep_dir, _, _ = lr_sweep
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) == \
        sorted([OK, DIVERGED, *FAILED])


def test_diverged_and_failed_jobs_are_recorded_and_the_sweep_exits_nonzero(lr_sweep):
    sweep_dir, _, proc = lr_sweep
    assert results(sweep_dir / OK)["status"] == "ok"
    diverged = results(sweep_dir / DIVERGED)
    assert diverged["status"] == "diverged" and diverged["diverged_epoch"] == 0
    failed = results(sweep_dir / FAILED[0])
    assert failed["status"] == "failed" and "train_subset=5000" in failed["error"]
    assert proc.returncode == 1
    assert "2 job(s) failed" in proc.stderr and FAILED[0] in proc.stderr and "Traceback" not in proc.stderr
    assert "job 1/4: starting optimizer.lr=" in proc.stderr and "4/4 jobs ended" in proc.stderr


def test_a_bad_value_among_good_ones_stops_the_sweep_before_any_job(tmp_path):
    sweep_dir = tmp_path / "bad"
    proc = run_train("-m", "dataset=digits", *TINY, "optimizer.lr=0.01,abc", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "optimizer.lr=abc" in error[0] and "no job was started" in error[0]
    assert not any(p.is_dir() for p in sweep_dir.glob("*")) if sweep_dir.exists() else True


def test_sweep_writes_its_report(lr_sweep):
    sweep_dir, _, _ = lr_sweep
    with open(sweep_dir / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and sorted(r["status"] for r in rows) == ["diverged", "failed", "failed", "ok"]
    assert (sweep_dir / "summary.md").read_text().count("|") > 10
    per_class = (sweep_dir / "per_class_acc.csv").read_text().splitlines()
    assert per_class[0] == f"class,\"{OK}\"" and len(per_class) == 11  # the ok job (CSV-quoted), 10 classes
    figures = sorted(sweep_dir.glob("*.png"))
    assert {"acc_vs_optimizer.lr.png", "curves.png"} <= {p.name for p in figures}
    for png in figures:
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000


@pytest.mark.slow
def test_resume_skips_finished_jobs_and_reruns_the_failed_ones(lr_sweep):
    sweep_dir, args, _ = lr_sweep
    before = (sweep_dir / OK / "results.json").stat().st_mtime_ns
    proc = run_train(*args, "resume=true")
    assert "epoch 0" not in proc.stderr + proc.stdout  # no training happened
    assert (sweep_dir / OK / "results.json").stat().st_mtime_ns == before
    assert results(sweep_dir / DIVERGED)["status"] == "diverged"
    assert proc.returncode == 1  # the failed jobs were run again and failed again


@pytest.mark.slow  # five lab.train runs, 33 s: the fast suite keeps the skip/rerun resume tests
def test_resume_continues_an_unfinished_run_from_last_ckpt(tmp_path):
    run_dir = tmp_path / "run"
    common = ["dataset=digits", *TINY,
              f"hydra.run.dir={run_dir}"]
    assert run_train(*common, "trainer.max_epochs=1").returncode == 0
    first_row = (run_dir / "metrics.csv").read_text().splitlines()[1]
    (run_dir / "results.json").unlink()  # as if killed after its first epoch
    # Another lr would continue the run with the checkpoint's optimizer state under a config that says otherwise.
    refused = run_train(*common, "trainer.max_epochs=2", "optimizer.lr=0.001", "resume=true")
    assert refused.returncode == 2 and "other settings (optimizer.lr: 0.03 -> 0.001)" in refused.stderr
    assert results(run_dir)["config"]["optimizer"]["lr"] == 0.03  # the run keeps its own record
    bad = run_train(*common, "trainer.max_epochs=0", "resume=true")  # a resume that fails its checks
    assert bad.returncode == 2 and "trainer.max_epochs=0" in bad.stderr
    assert results(run_dir)["config"]["trainer"]["max_epochs"] == 1  # keeps the record too
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["EpochRecorder"]
    proc = run_train(*common, "trainer.max_epochs=2", "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 0 " not in proc.stderr and "epoch 1 " in proc.stderr
    # Total time is the whole run's: the first process's time up to its checkpoint, plus this one's.
    res = results(run_dir)
    assert res["total_time_s"] == pytest.approx(before["elapsed_s"] + res["finished_at"] - res["started_at"], abs=0.3)
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1] == first_row and results(run_dir)["epochs"] == 2
    # Finished now: resume=true trains nothing, reprints its result and says a longer run is a new run.
    again = run_train(*common, "trainer.max_epochs=3", "optimizer=adam", "resume=true")
    assert again.returncode == 0 and "epoch 2 " not in again.stderr
    assert "does not extend a finished run" in again.stderr
    assert "settings differ from the run's (optimizer._target_: torch.optim.SGD -> torch.optim.Adam" in again.stderr
    record = results(run_dir)
    assert record["config"]["trainer"]["max_epochs"] == 2 and record["config"]["optimizer"]["_target_"] == \
        "torch.optim.SGD"  # not this command's 3 and Adam
    assert record["choices"]["optimizer"] == "sgd" and record["status"] == "ok"  # what lab.report reads
    assert again.stdout.startswith(f"Model Accuracy: {results(run_dir)['test_acc']:.4f}\n")


@pytest.mark.slow
def test_resume_with_nothing_to_resume_says_so_and_trains(tmp_path):
    proc = run_train("dataset=digits", *TINY, "trainer.max_epochs=1", "resume=true",
                     f"hydra.run.dir={tmp_path / 'new'}")
    assert proc.returncode == 0 and "no " in proc.stderr and "training from the start" in proc.stderr
    assert results(tmp_path / "new")["status"] == "ok"
    assert f"run dir: {tmp_path / 'new'}" in proc.stderr


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_at_once(tmp_path):
    sweep_dir = tmp_path / "par"
    proc = run_train("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "dataset=digits",
                     "trainer.max_epochs=4", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep_dir}")  # jobs that overlap
    assert proc.returncode == 0, proc.stderr[-2000:]
    (a, b) = [results(sweep_dir / f"seed={s}") for s in (1, 2)]
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]  # overlapping
    assert (sweep_dir / "summary.csv").exists()


def test_experiments_carry_their_own_grids():
    grids = {"lr_sweep": ("optimizer.lr", 10), "optimizers": ("optimizer", 5),
             "multistep": ("scheduler", 2), "models": ("model", 3)}
    for name, (key, count) in grids.items():
        cfg = compose([f"+experiment={name}"])
        assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
        assert len(str(cfg.hydra.sweeper.params[key]).split(",")) == count
    for option in str(compose(["+experiment=optimizers"]).hydra.sweeper.params.optimizer).split(","):
        lr = compose([f"optimizer={option}"]).optimizer.lr
        assert lr == {"sgd": 0.03, "adam": 1e-3, "adagrad": 1e-2, "adagrad_lab": 1e-3, "adamw": 1e-3}[option]


def test_seeds_vary_slowest_so_an_experiments_arms_take_turns(tmp_path):
    """An experiment's grid (sweeper.params) comes before the command line in Hydra's basic sweeper, which varies
    its first key slowest: each arm's seeds ran back to back. lab's seed_first sweeper runs seed 1's arms, then
    seed 2's; job dirs keep the seed last in their names, and lab's own expansion of the jobs has the same order."""
    from omegaconf import OmegaConf

    from lab.sweeps.jobs import job_name, job_overrides

    sweep_dir = tmp_path / "sweep"
    proc = run_train("+experiment=lr_sweep", "dataset=digits", "trainer.max_epochs=1", *TINY, "seed=1,2",
                     "optimizer.lr=0.02,0.05", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ran = sorted((results(p.parent)["started_at"], p.parent.name) for p in sweep_dir.glob("*/results.json"))
    expected = ["optimizer.lr=0.02,seed=1", "optimizer.lr=0.05,seed=1", "optimizer.lr=0.02,seed=2",
                "optimizer.lr=0.05,seed=2"]
    assert [name for _, name in ran] == expected
    planned = job_overrides(OmegaConf.load(sweep_dir / "multirun.yaml"))
    assert [job_name(job, {"optimizer.lr", "seed"}) for job in planned] == expected


def test_a_sweep_begun_with_the_seed_typed_first_keeps_its_job_dirs(tmp_path):
    """`-m seed=1,2 optimizer.lr=0.1,0.2` named its jobs seed first before the seed went last; resumed, a job
    finds its old dir, and a new sweep gets the seed-last name."""
    from omegaconf import OmegaConf

    from lab.sweeps.jobs import job_dirname

    sweep = {"hydra": {"overrides": {"task": ["seed=1,2", "optimizer.lr=0.1,0.2"]}, "sweeper": {"params": {}}}}
    OmegaConf.save(OmegaConf.create(sweep), tmp_path / "multirun.yaml")
    job = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "job": {"num": 0},
                                      "overrides": {"task": ["seed=1", "optimizer.lr=0.1"]}}})
    assert job_dirname(job) == "optimizer.lr=0.1,seed=1"
    (tmp_path / "seed=1,optimizer.lr=0.1").mkdir()
    assert job_dirname(job) == "seed=1,optimizer.lr=0.1"
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["seed=1"]}}}), tmp_path / "multirun.yaml")
    alone = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "job": {"num": 0},
                                        "overrides": {"task": ["seed=1"]}}})
    assert job_dirname(alone) == "0"  # nothing swept: the job's number, never the sweep dir itself


@pytest.mark.slow
def test_submitit_route_runs_jobs_and_writes_the_report(tmp_path):
    # hydra/launcher=slurm is submitit_slurm; submitit_local runs the same launcher code without a cluster.
    sweep_dir = tmp_path / "submitit"
    proc = run_train("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "dataset=digits",
                     "trainer.max_epochs=1", *TINY, "optimizer.lr=0.01,0.02", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [results(sweep_dir / f"optimizer.lr={lr}")["status"] for lr in ("0.01", "0.02")] == ["ok", "ok"]
    assert len((sweep_dir / "summary.csv").read_text().splitlines()) == 3
