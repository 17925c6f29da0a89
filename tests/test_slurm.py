"""hydra/launcher=slurm: the partition check on captured scontrol text (fast), then a real single-node Slurm
(slow): a sweep as a job array with a requeued and a failing job, a refused request, DDP as two Slurm tasks."""
import csv
import os
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from lab.context import RunContext, Slurm
from lab.errors import ConfigError
from lab.outcome import requeue_note
from lab.sweeps import slurm
from lab.sweeps import slurm_watch as slurm_queue
from lab.sweeps.callback import SweepCallback
from tests.conftest import ROOT, results, run_train
from tests.slurm_node import PARTITION, SlurmNode, SlurmUnavailable
from tests.slurm_samples import GPU_NODES, GPU_PARTITIONS, ONE_NODE, ONE_NODE_PARTITION

PRESET = dict(_target_="hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", partition=None,
              gpus_per_node=1, tasks_per_node=1, cpus_per_task=8, mem_gb=32, timeout_min=240)


def fake_scontrol(partitions: str, nodes: str):
    def scontrol(*args):
        return partitions if args[1] == "partition" else nodes
    return scontrol


def test_scontrol_records_keep_values_with_spaces_and_equals_signs():
    node = slurm.scontrol_records(ONE_NODE)[0]
    assert node["OS"] == "Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0"
    assert node["CoresPerSocket"] == "2" and node["RealMemory"] == "24105" and node["AllocTRES"] == ""
    gpu = slurm.scontrol_records(GPU_PARTITIONS)[1]
    assert gpu["TRES"] == "cpu=224,mem=770000M,node=2,billing=224,gres/gpu=12" and gpu["MaxTime"] == "2-00:00:00"
    assert slurm.scontrol_records(GPU_NODES)[1]["Reason"] == "Not responding [slurm@2026-11-01T10:00:00]"


@pytest.mark.parametrize("limit, expected", [("UNLIMITED", None), ("INFINITE", None), ("30", 30), ("1:30", 1),
                                             ("08:00:00", 480), ("2-00:00:00", 2880), ("1-12", 2160),
                                             ("1-12:30", 2190), ("00:30:59", 30)])
def test_time_limits_in_minutes(limit, expected):
    assert slurm.minutes(limit) == expected


@pytest.mark.parametrize("gres, gpus", [("(null)", 0), ("gpu:4", 4), ("gpu:a100:8(S:0-1)", 8),
                                        ("gpu:v100:2,gpu:t4:2", 4), ("gpu:a100:4(S:0),mps:400", 4)])
def test_gpus_per_node_from_gres(gres, gpus):
    assert slurm.node_gpus(gres) == gpus


@pytest.mark.parametrize("change, message", [
    (dict(cpus_per_task=8), "hydra.launcher.cpus_per_task=8: the nodes of Slurm partition debug have at most 2 "
     "CPUs each, so the jobs would wait in the queue forever; set hydra.launcher.cpus_per_task=2 or less"),
    (dict(cpus_per_task=1, mem_gb=32), "hydra.launcher.mem_gb=32: the nodes of Slurm partition debug have at most "
     "24105 MiB of memory each, so the jobs would wait in the queue forever; set hydra.launcher.mem_gb=23 or less"),
    (dict(cpus_per_task=1, mem_gb=1), "hydra.launcher.gpus_per_node=1: the nodes of Slurm partition debug have at "
     "most 0 GPUs each"),
])
def test_a_request_the_one_cpu_node_never_meets_names_the_key_and_the_limit(monkeypatch, change, message):
    monkeypatch.setattr(slurm, "scontrol", fake_scontrol(ONE_NODE_PARTITION, ONE_NODE))
    with pytest.raises(ConfigError) as err:
        slurm.check_request(OmegaConf.create(dict(PRESET, **change)))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("change, message", [
    (dict(), None),  # the preset fits gpu01
    (dict(gpus_per_node=8, cpus_per_task=64, mem_gb=250, timeout_min=2880), None),
    (dict(timeout_min=2881), "hydra.launcher.timeout_min=2881: Slurm partition gpu allows at most 2880 "
     "(MaxTime=2-00:00:00)"),
    (dict(cpus_per_task=65), "cpus_per_task=65: the nodes of Slurm partition gpu have at most 64 CPUs each"),
    (dict(cpus_per_task=40, tasks_per_node=2), "cpus_per_task=40 x tasks_per_node=2: the nodes of Slurm partition "
     "gpu have at most 64 CPUs each, so the jobs would wait in the queue forever; set hydra.launcher.cpus_per_task=32"),
    (dict(mem_gb=503), "mem_gb=503: the nodes of Slurm partition gpu have at most 515000 MiB of memory each, "
     "so the jobs would wait in the queue forever; set hydra.launcher.mem_gb=502 or less"),
    (dict(gpus_per_node=9), "gpus_per_node=9: the nodes of Slurm partition gpu have at most 8 GPUs each"),
    (dict(gpus_per_node=8, mem_gb=300), "no node of Slurm partition gpu has 8 CPUs, 307200 MiB and 8 GPUs at once "
     "(gpu01: 64 CPUs, 257000 MiB, 8 GPUs; gpu02: 64 CPUs, 515000 MiB, 4 GPUs)"),
    (dict(partition="gpus"), "hydra.launcher.partition=gpus: Slurm has no such partition; choose one of: debug, gpu"),
    (dict(partition=None), "hydra.launcher.partition is not set and Slurm has no default partition; set it to one "
     "of: debug, gpu"),
])
def test_a_gpu_partition_takes_what_one_of_its_nodes_can_give(monkeypatch, change, message):
    monkeypatch.setattr(slurm, "scontrol", fake_scontrol(GPU_PARTITIONS, GPU_NODES))
    request = OmegaConf.create({**PRESET, "partition": "gpu", **change})
    if message is None:
        slurm.check_request(request)
        return
    with pytest.raises(ConfigError) as err:
        slurm.check_request(request)
    assert message in str(err.value)


def test_queue_line_counts_the_sweeps_jobs_by_state_and_reason(tmp_path):
    for name in ("12", "12_0", "12_1", "12_2", "14_0", "notes"):
        (tmp_path / ".submitit" / name).mkdir(parents=True)
    assert slurm_queue.submitted_arrays(str(tmp_path / ".submitit" / "%j")) == ["12", "14"]
    assert slurm_queue.submitted_arrays(str(tmp_path / ".submitit")) == []  # not a folder per job: nothing to watch
    squeue = "RUNNING|None\nPENDING|Resources\nPENDING|Resources\nPENDING|BeginTime\n"
    expected = "Slurm job 12: 2 PENDING (Resources), 1 PENDING (BeginTime), 1 RUNNING"
    assert slurm_queue.queue_line(["12"], squeue) == expected
    assert slurm_queue.queue_line(["12", "14"], "") is None


def test_a_job_that_left_the_queue_without_a_result_is_named(tmp_path):
    (tmp_path / "12").mkdir()  # the array's own folder: its sbatch script
    (tmp_path / "12" / "12_submission.sh").write_text("#!/bin/bash\n")
    for job, result in (("12_0", "12_0_0_result.pkl"), ("12_1", None), ("12_10", None), ("12_2", "12_2_1_result.pkl"),
                        ("14", None)):  # a sweep of one job is no array
        (tmp_path / job).mkdir()
        (tmp_path / job / f"{job}_submitted.pkl").write_bytes(b"")
        if result:
            (tmp_path / job / result).write_bytes(b"")
    missing = slurm_queue.jobs_without_result(str(tmp_path / "%j"))
    assert missing == ["12_1", "12_10", "14"]
    line = slurm_queue.stranded_line(["12"], missing, "multirun/x")
    assert line.startswith("Slurm job 12:") and "12_1, 12_10, 14" in line and "12_0" not in line
    assert "resume=true hydra.sweep.dir=multirun/x" in line
    assert slurm_queue.stranded_line(["12"], [], "multirun/x") is None


def test_a_sigterm_inside_slurm_says_a_requeue_resumes_and_a_scancel_needs_resume_true(tmp_path):
    outside = RunContext(run_dir=tmp_path)
    assert requeue_note("SIGTERM", outside) == ""  # not in a Slurm job: the plain resume=true hint
    in_slurm = RunContext(run_dir=tmp_path, slurm=Slurm(job_id="12"))
    assert requeue_note("Ctrl-C", in_slurm) == ""  # a person at a terminal, not Slurm
    note = requeue_note("SIGTERM", in_slurm)  # a single run whose dir may be time-stamped
    assert "it resumes from last.ckpt on its own if its command sets hydra.run.dir" in note
    assert "scancel" in note
    same_dir = requeue_note("SIGTERM", RunContext(run_dir=tmp_path, slurm=Slurm(job_id="12"), run_dir_given=True))
    assert "on its own;" in same_dir and "if its command sets" not in same_dir


def test_other_launchers_are_not_checked(monkeypatch):
    monkeypatch.setattr(slurm, "scontrol", lambda *args: pytest.fail("scontrol called for submitit_local"))
    local = OmegaConf.create(dict(hydra=dict(launcher=dict(
        _target_="hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", cpus_per_task=999),
        sweeper=dict(_target_="hydra_plugins.lab_tune.tune_sweeper.TuneSweeper"))))  # sampled jobs: no pre-check
    callback = SweepCallback()
    callback.on_multirun_start(local)
    assert callback.slurm_watch is None


# --- a real Slurm ------------------------------------------------------------------------------------------

# One thread in every training process: the requeued job must reproduce the uninterrupted run bit for bit.
THREADS = {"OMP_NUM_THREADS": "1"}
TRAIN = ["dataset=digits", "model.base_width=8", "trainer.accelerator=cpu", "trainer.max_epochs=3"]
# The preset asks for a GPU node (8 CPUs, 32 GB, 1 GPU); this machine is one CPU node.
SMALL = ["hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.gpus_per_node=0", "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    node = SlurmNode(tmp_path_factory.mktemp("slurm"))
    try:
        node.start()
    except SlurmUnavailable as why:
        node.stop()
        pytest.skip(f"no test Slurm: {why}")
    except BaseException:
        node.stop()
        raise
    try:
        yield node
    finally:
        node.stop()


def wait_until(condition, what: str, timeout_s: float = 240, proc=None):
    deadline = time.time() + timeout_s
    while not condition():
        assert proc is None or proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.05)


def task_state(cluster, job: str) -> str:
    return cluster.run("squeue", "-h", "-r", "-j", job, "-o", "%i %T %r").stdout


def requeue_mid_epoch(cluster, sweep_dir, proc) -> str:
    """scontrol requeue the first job of the array once it trains its second epoch; while it waits out
    Slurm's hold (reason BeginTime, ~2 min) let the queue watch log it, then end the hold."""
    metrics = sweep_dir / "dataset.train_subset=null" / "metrics.csv"
    wait_until(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2, "epoch 0", proc=proc)
    job = f"{slurm_queue.submitted_arrays(str(sweep_dir / '.submitit' / '%j'))[0]}_0"  # jobs go in sweep order
    assert cluster.run("scontrol", "requeue", job).returncode == 0
    wait_until(lambda: "PENDING BeginTime" in task_state(cluster, job), "requeued job", 60, proc)
    time.sleep(slurm_queue.POLL_S + 3)
    assert cluster.run("scontrol", "update", f"jobid={job}", "starttime=now").returncode == 0
    return job


@pytest.fixture(scope="module")
def slurm_sweep(cluster, tmp_path_factory):
    """Two jobs as one array: the whole training set (requeued mid-epoch) and a training subset larger than
    digits (fails when it loads its data), and the first run without Slurm or interruption, which the requeued
    job must reproduce."""
    base = tmp_path_factory.mktemp("slurm_sweep")
    sweep_dir, reference = base / "sweep", base / "reference"
    env = dict(os.environ, **cluster.env, **THREADS, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "lab.train", "-m", *SMALL, *TRAIN, "optimizer.lr=0.02",
                             "dataset.train_subset=null,5000",
                             f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        requeue_mid_epoch(cluster, sweep_dir, proc)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    alone = run_train(*TRAIN, "optimizer.lr=0.02", f"hydra.run.dir={reference}", env={**cluster.env, **THREADS})
    assert alone.returncode == 0, alone.stderr[-2000:]
    return sweep_dir, reference, proc.returncode, err


def rows_without_timing(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_a_sweep_runs_as_a_job_array_and_writes_its_report(slurm_sweep):
    sweep_dir, _, _, err = slurm_sweep
    with open(sweep_dir / "summary.csv") as f:
        assert sorted(row["status"] for row in csv.DictReader(f)) == ["failed", "ok"]
    assert (sweep_dir / "curves.png").stat().st_size > 5000
    assert "Slurm job " in err and ": 1 PENDING (BeginTime)" in err  # the queue watch, while it waited


@pytest.mark.slow
def test_a_requeued_job_resumes_from_last_ckpt_and_matches_an_uninterrupted_run(slurm_sweep):
    sweep_dir, reference, _, _ = slurm_sweep
    job_dir = sweep_dir / "dataset.train_subset=null"
    log = (job_dir / "train.log").read_text()
    assert "stopping: saved" in log and "resume: continuing from" in log  # mid-epoch, then resumed
    assert "it resumes from last.ckpt on its own;" in log and "scancel" in log and "resume=true" in log
    assert results(job_dir)["status"] == "ok"
    assert rows_without_timing(job_dir) == rows_without_timing(reference)
    assert results(job_dir)["test_acc"] == results(reference)["test_acc"]


@pytest.mark.slow
def test_a_failed_job_in_the_array_is_reported_and_the_sweep_exits_1(slurm_sweep):
    sweep_dir, _, returncode, err = slurm_sweep
    assert results(sweep_dir / "dataset.train_subset=5000")["status"] == "failed"
    assert returncode == 1 and "1 job(s) failed" in err and "train_subset=5000" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_request_the_partition_never_meets_is_refused_before_anything_is_submitted(cluster, tmp_path):
    cpus = cluster.cpus()
    start = time.time()
    proc = run_train("-m", *SMALL, f"hydra.launcher.cpus_per_task={cpus * 4}", *TRAIN,
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", env=cluster.env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error:") and f"hydra.launcher.cpus_per_task={cpus * 4}" in lines[0]
    assert PARTITION in lines[0] and f"cpus_per_task={cpus} or less" in lines[0]
    assert time.time() - start < 60 and not (tmp_path / "sweep").exists() and cluster.job_ids() == []


@pytest.mark.slow
def test_a_job_cancelled_without_a_result_is_named_while_the_sweep_waits_for_it(cluster, tmp_path):
    sweep_dir, stderr = tmp_path / "sweep", tmp_path / "stderr"
    env = dict(os.environ, **cluster.env, **THREADS, PYTHONWARNINGS="ignore")
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "lab.train", "-m", *SMALL, *TRAIN, "trainer.max_epochs=50",
                                 f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
    try:
        # Once it trains: before Lightning's handler is in, submitit ignores SIGTERM and Slurm kills the job
        # KillWait later, with status running.
        wait_until(lambda: (sweep_dir / "0" / "metrics.csv").exists(), "first epoch", proc=proc)
        job = slurm_queue.jobs_without_result(str(sweep_dir / ".submitit" / "%j"))[0]  # one job: no array
        assert cluster.run("scancel", job).returncode == 0
        warning = f"Slurm job {job}: no job is queued or running, yet {job} wrote no result"
        wait_until(lambda: warning in stderr.read_text(), "stranded-job warning", 4 * slurm_queue.POLL_S, proc)
    finally:
        proc.kill()
        proc.wait()
    assert results(sweep_dir / "0")["status"] == "interrupted"  # scancel sends SIGTERM: last.ckpt, then exit


@pytest.mark.slow
def test_ddp_as_two_slurm_tasks_matches_lightnings_own_two_processes(cluster, tmp_path):
    if cluster.cpus() < 2:
        pytest.skip("two Slurm tasks of one CPU each need a node with 2 CPUs")
    ddp = ["trainer=ddp", "trainer.devices=2", "dataset=digits", "model.base_width=8", "trainer.accelerator=cpu",
           "trainer.max_epochs=2"]
    command = " ".join([sys.executable, "-m", "lab.train", *ddp, f"hydra.run.dir={tmp_path / 'srun'}"])
    submitted = cluster.run("sbatch", "--parsable", "--ntasks-per-node=2", "--cpus-per-task=1", "--mem=2G",
                            f"--output={tmp_path / 'srun.out'}", f"--chdir={ROOT}", "--wrap", f"srun {command}",
                            env_extra=THREADS)
    assert submitted.returncode == 0, submitted.stderr
    local = run_train(*ddp, f"hydra.run.dir={tmp_path / 'local'}", env=THREADS)
    assert local.returncode == 0, local.stderr[-2000:]
    wait_until(lambda: not cluster.job_ids(), "end of the DDP job", 240)
    srun_results = results(tmp_path / "srun")
    assert srun_results["status"] == "ok" and srun_results["world_size"] == 2, (tmp_path / "srun.out").read_text()
    assert rows_without_timing(tmp_path / "srun") == rows_without_timing(tmp_path / "local")
    assert srun_results["test_acc"] == results(tmp_path / "local")["test_acc"]


@pytest.mark.slow
def test_tuning_on_slurm_submits_a_trial_as_a_slot_frees_up(cluster, tmp_path):
    """hydra/sweeper=tune with 2 slots on the Slurm launcher: a grid over max_epochs, the long trial first; trial 2
    is submitted when trial 1 ends, while trial 0 still trains (a batch of 2 would wait for trial 0)."""
    if cluster.cpus() < 2:
        pytest.skip("two jobs at once need a node with 2 CPUs")
    from tests.test_tune import grid_seed_running_first, load_study

    sweep = tmp_path / "sweep"
    seed = grid_seed_running_first([40, 1, 2], 40)
    proc = run_train("-m", "hydra/sweeper=tune", *SMALL, *TRAIN, "trainer.max_epochs=choice(40,1,2)",
                     "hydra.sweeper.sampler=grid", "hydra.sweeper.pruner=none", f"hydra.sweeper.seed={seed}",
                     "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={sweep}", env={**cluster.env, **THREADS})
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load_study(sweep).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3 and trials[0].params["trainer.max_epochs"] == 40
    timing = [results(sweep / t.user_attrs["dir"]) for t in trials]
    assert timing[1]["finished_at"] < timing[2]["started_at"] < timing[0]["finished_at"]
    assert len(set(slurm_queue.submitted_arrays(str(sweep / ".submitit" / "%j")))) == 3  # one Slurm job a trial
