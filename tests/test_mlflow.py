"""logger=mlflow: a real run logged into a local SQLite store, read back through MLflow's own client."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest

import lab.tracking
from lab.config import validate
from lab.errors import ConfigError
from tests.conftest import ROOT, TINY, compose, free_port, results, run_train


@pytest.mark.slow  # ~20 s: importing mlflow and creating a new store take most of it
def test_an_mlflow_run_holds_the_metrics_csv_values(tmp_path):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    proc = run_train("dataset=digits", "logger=mlflow", "model.base_width=8", "trainer.max_epochs=2",
                     "trainer.accelerator=cpu", "trainer.limit_train_batches=4", f"logger.tracking_uri={store}",
                     f"logger.artifact_location={tmp_path / 'store' / 'artifacts'}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "alembic" not in proc.stderr and "ERROR" not in proc.stderr  # a new store is created quietly
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("lab")
    [run] = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status, run.data.tags["run_dir"]) == ("run", "FINISHED", str(run_dir))
    assert run.data.params["choices/logger"] == "mlflow" and run.data.params["config/model/base_width"] == "8"
    with open(run_dir / "metrics.csv") as f:
        val_acc_csv = [float(row["val_acc"]) for row in csv.DictReader(f)]
    history = sorted(client.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)
    val_acc_mlflow = [m.value for m in history]
    assert len(val_acc_mlflow) == 2 and [round(v, 4) for v in val_acc_mlflow] == [round(v, 4) for v in val_acc_csv]
    test_acc = {round(m.value, 4) for m in client.get_metric_history(run.info.run_id, "test_acc")}
    res = results(run_dir)
    assert {round(res["test_acc_last"], 4), round(res["test_acc_best"], 4)} == test_acc  # both test passes
    assert not (tmp_path / "mlruns").exists() and experiment.artifact_location.endswith("artifacts")


@pytest.mark.slow  # ~25 s: three processes import mlflow
def test_parallel_jobs_meeting_a_new_store_all_log(tmp_path):
    # Without the lock in lab.tracking.mlflow_runs, all but one such job fail in alembic's table creation.
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = ("import sys; from lab.tracking.mlflow_runs import mlflow_logger; "
            "logger = mlflow_logger(sys.argv[1], sys.argv[2], sys.argv[3]); "
            "logger.log_metrics({'val_acc': 0.5}, step=0); logger.finalize('success')")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    jobs = [subprocess.Popen([sys.executable, "-c", code, store, str(tmp_path / "artifacts"), f"/sweep/job{i}"],
                             env=env, stderr=subprocess.PIPE, text=True) for i in range(3)]
    errors = [job.communicate(timeout=300)[1] for job in jobs]
    assert all(job.returncode == 0 for job in jobs), "\n".join(errors)[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("lab").experiment_id])
    assert sorted(run.info.run_name for run in runs) == [f"job{i}" for i in range(3)]


def test_logger_mlflow_logs_into_one_store_under_the_project_root():
    cfg = compose(["logger=mlflow"])
    assert cfg.logger.tracking_uri == f"sqlite:///{cfg.paths.root_dir}/mlruns/mlflow.db"
    assert cfg.logger.experiment_name == "lab" and cfg.logger._target_ == "lab.tracking.mlflow_runs.mlflow_logger"


def test_without_the_mlflow_package_logger_mlflow_says_to_install_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "lab.tracking.mlflow_runs", raising=False)
    monkeypatch.delattr(lab.tracking, "mlflow_runs", raising=False)  # else the import finds the package's attribute
    with pytest.raises(ConfigError, match=r'needs the mlflow package.*pip install -e "\.\[mlflow\]"'):
        validate(compose(["logger=mlflow"]))


@pytest.mark.parametrize("uri, says", [
    ("mlflow.db", "is not a tracking URI MLflow reads"),
    ("sqlite://mlflow.db", "is not a SQLite store's URI"),
    ("http://:5000", "names no host"),
    ("http://127.0.0.1:{port}", "no tracking server answers at 127.0.0.1:{port}"),
])
def test_a_tracking_uri_that_cannot_work_is_one_line_naming_the_key(uri, says):
    from lab.config import check_tracker

    port = free_port()
    uri, says = uri.format(port=port), says.format(port=port)
    with pytest.raises(ConfigError, match=says) as err:
        check_tracker(compose(["logger=mlflow", f"logger.tracking_uri={uri}"]))
    message = str(err.value)
    assert message.startswith(f"logger.tracking_uri={uri}") and "\n" not in message


def runs_by_name(store: str, experiment: str = "lab") -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    found = client.get_experiment_by_name(experiment)
    return {run.info.run_name: run for run in client.search_runs([found.experiment_id])}


@pytest.mark.slow  # ~20 s: a sweep of two jobs, each importing mlflow
def test_a_sweeps_jobs_nest_under_its_parent_run_with_their_overrides_and_status(tmp_path):
    store, sweep = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "sweep"
    arguments = ["-m", "dataset=digits", *TINY, "logger=mlflow", f"logger.tracking_uri={store}",
                 f"logger.artifact_location={tmp_path / 'artifacts'}", "optimizer.lr=0.05,1000", "seed=3",
                 f"hydra.sweep.dir={sweep}"]
    first = run_train(*arguments, "trainer.max_epochs=2")
    assert first.returncode == 0, first.stderr[-3000:]
    runs = runs_by_name(store)
    parent = runs.pop("sweep")
    assert (parent.data.tags["lab.kind"], parent.data.tags["lab.dir"], parent.info.status) == \
        ("sweep", str(sweep), "FINISHED")
    assert (parent.data.tags["jobs_ok"], parent.data.tags["jobs_diverged"]) == ("1", "1")
    assert sorted(runs) == ["optimizer.lr=0.05", "optimizer.lr=1000"]
    for name, run in runs.items():
        record = results(sweep / name)
        tags, params = run.data.tags, run.data.params
        assert tags["mlflow.parentRunId"] == parent.info.run_id and tags["lab.dir"] == str(sweep / name)
        assert (params["optimizer.lr"], params["seed"], tags["swept"]) == (name.split("=")[1], "3", name)
        assert tags["status"] == record["status"]
        assert run.info.status == "FINISHED"  # diverged is an outcome, not a crash
    assert runs["optimizer.lr=0.05"].data.metrics["test_acc"] == pytest.approx(results(sweep / "optimizer.lr=0.05")
                                                                                ["test_acc"])


@pytest.mark.slow  # ~25 s
def test_a_job_stopped_by_sigterm_and_resumed_continues_its_own_mlflow_run(tmp_path):
    store, job_dir = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "sweep" / "0"
    resumed = ["-m", "dataset=digits", *TINY, "logger=mlflow", f"logger.tracking_uri={store}",
               f"logger.artifact_location={tmp_path / 'artifacts'}", "trainer.max_epochs=40",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.Popen([sys.executable, "-m", "lab.train", *resumed], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (job_dir / "checkpoints" / "last.ckpt").exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert results(job_dir)["status"] == "interrupted"
    stopped = runs_by_name(store)["0"]
    assert (stopped.data.tags["status"], stopped.info.status) == ("interrupted", "KILLED")
    again = run_train(*resumed, "resume=true")
    assert again.returncode == 0, again.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    [job] = client.search_runs([stopped.info.experiment_id], "attributes.run_name = '0'")  # one run, not two
    assert job.info.run_id == stopped.info.run_id
    steps = [m.step for m in client.get_metric_history(job.info.run_id, "val_acc")]
    assert len(steps) == 40 == len(set(steps)) == results(job_dir)["epochs"]  # every epoch once, across 2 processes
    assert results(job_dir)["processes"] == 2 and job.data.tags["status"] == "ok" and job.info.status == "FINISHED"


@pytest.mark.slow  # ~40 s: a real tracking server, stopped while the second job of a sweep trains
def test_a_tracking_server_that_dies_mid_sweep_costs_no_jobs_results(tmp_path):
    port, sweep = free_port(), tmp_path / "sweep"
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", backend, "--default-artifact-root", str(tmp_path / "art"),
                               "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    sweep_proc = None
    try:
        wait_for_port(port, server)
        sweep_proc = subprocess.Popen(
            [sys.executable, "-m", "lab.train", "-m", "dataset=digits", *TINY, "trainer.max_epochs=2,200",
             "logger=mlflow", f"logger.tracking_uri=http://127.0.0.1:{port}", f"hydra.sweep.dir={sweep}"],
            cwd=ROOT, env=dict(os.environ, PYTHONWARNINGS="ignore"), stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL, text=True)
        deadline = time.time() + 300
        while time.time() < deadline and sweep_proc.poll() is None and not logged_an_epoch(backend, "200"):
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the server goes away while the second job trains
        server.wait()
    assert sweep_proc is not None
    err = sweep_proc.communicate(timeout=600)[1]
    assert sweep_proc.returncode == 0, err[-3000:]
    second = results(sweep / "trainer.max_epochs=200")
    assert second["status"] == "ok" and second["epochs"] == 200
    with open(sweep / "trainer.max_epochs=200" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 200
    assert "this run's tracking stops here" in err  # once, mid-run; the job trained on
    runs = runs_by_name(backend)  # the server's own store: the first job got there whole
    assert runs["trainer.max_epochs=2"].info.status == "FINISHED"
    assert runs["trainer.max_epochs=2"].data.tags["status"] == "ok"


def logged_an_epoch(store: str, max_epochs: str) -> bool:
    """The job of the sweep with this max_epochs has a val_acc in the store."""
    from mlflow.tracking import MlflowClient

    try:
        run = runs_by_name(store).get(f"trainer.max_epochs={max_epochs}")
    except Exception:  # the store not created yet
        return False
    return run is not None and bool(MlflowClient(store).get_metric_history(run.info.run_id, "val_acc"))


def read(run_dir):
    try:
        return results(run_dir)
    except (OSError, ValueError):
        return None


def wait_for_port(port: int, process, timeout_s: float = 120) -> None:
    import socket

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {timeout_s} s")


@pytest.mark.slow  # ~80 s: a two-step study, mlflow ui and Chromium
def test_a_study_is_one_experiment_whose_steps_group_in_mlflow_ui(tmp_path):
    from tests.mlflow_ui import CHROMIUM, grouped_by_step, mlflow_ui

    pytest.importorskip("playwright", reason="the browser check drives Chromium with playwright (dev extra)")
    if not CHROMIUM:
        pytest.skip("no chromium here (apt-get install chromium): the browser check needs a real browser")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = subprocess.run([sys.executable, "-m", "lab.study", f"study.dir={tmp_path / 'study'}", "study.steps=[t1,t3]",
                            "dataset=digits", "trainer.max_epochs=2", "model.base_width=8", "trainer.accelerator=cpu",
                            'study.plan.t3.overrides=["optimizer.lr=0.05,0.1","seed=1"]', "logger=mlflow",
                            f"logger.tracking_uri={store}", f"logger.artifact_location={tmp_path / 'artifacts'}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert study.returncode == 0, study.stderr[-3000:]
    runs = runs_by_name(store, "lab_report")
    parent = runs.pop("study")
    assert (parent.data.tags["lab.kind"], parent.data.tags["jobs_ok"]) == ("study", "3")
    assert sorted(runs) == ["t1/0", "t3/optimizer.lr=0.05", "t3/optimizer.lr=0.1"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs.values())
    assert {name: r.data.tags["step"] for name, r in runs.items()} == {name: name[:2] for name in runs}
    with mlflow_ui(store) as url:
        page = grouped_by_step(url, parent.info.experiment_id, tmp_path / "grouped.png", ["t1", "t3"])
    assert "Group by: step" in page and page.index("Group: t3") < page.index("t3/optimizer.lr=0.1")
    assert (tmp_path / "grouped.png").stat().st_size > 20_000
