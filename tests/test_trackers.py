"""logger=wandb (offline: the run files read back, record by record) and the tuning journal in optuna-dashboard
(the real server on loopback, read through its HTTP API). MLflow has tests/test_mlflow.py."""
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, TINY, compose, free_port, results, run_train

from lab.errors import ConfigError

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of records (crc 4, length 2, type 1, data)


def wandb_records(path: Path):
    """The protobuf records of an offline run's .wandb file (wandb 0.31 ships no reader for it)."""
    from wandb.proto import wandb_internal_pb2

    raw, pos, pending = Path(path).read_bytes(), 7, b""  # 7: the file's header
    while pos + 7 <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < 7 or raw[pos + 6] == 0:  # a block's zero padding
            pos += left
            continue
        length, kind = int.from_bytes(raw[pos + 4:pos + 6], "little"), raw[pos + 6]
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST (2, 3: FIRST, MIDDLE of a record split across blocks)
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_runs(save_dir: Path) -> dict:
    """{run name: [(its last run record, each key's last logged or summary value, exit code, initial config)]}."""
    runs = {}
    for path in sorted(save_dir.glob("wandb/offline-run-*/run-*.wandb")):
        run, summary, exit_code, config = None, {}, None, {}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
                config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
            elif kind in ("summary", "history"):  # the last logged value of each key
                items = record.summary.update if kind == "summary" else record.history.item
                summary.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in items})
            elif kind == "exit":
                exit_code = record.exit.exit_code
        runs.setdefault(run.display_name, []).append((run, summary, exit_code, config))
    return runs


@pytest.mark.slow  # ~40 s: each job starts wandb's own service process
def test_wandb_offline_groups_a_sweep_and_tags_each_job_with_its_status(tmp_path):
    sweep, store = tmp_path / "multirun" / "sweep", tmp_path / "store"
    proc = run_train("-m", "dataset=digits", *TINY, "trainer.max_epochs=2", "logger=wandb", f"logger.save_dir={store}",
                     "optimizer.lr=0.05,1000", "seed=3", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = offline_runs(store)
    assert sorted(runs) == ["optimizer.lr=0.05", "optimizer.lr=1000"]
    ids = set()
    for name, [(run, summary, exit_code, config)] in runs.items():
        status = results(sweep / name)["status"]
        assert (run.run_group, run.job_type, run.project) == ("multirun/sweep", "job", "lab")
        assert list(run.tags) == [f"status:{status}"] and summary["status"] == status and exit_code == 0
        assert (config["optimizer.lr"], config["seed"], config["run_dir"]) == (name.split("=")[1], 3, str(sweep / name))
        ids.add(run.run_id)
    assert len(ids) == 2  # one run per job, none reused by the next job of the same process
    test_acc = results(sweep / "optimizer.lr=0.05")["test_acc"]
    assert runs["optimizer.lr=0.05"][0][1]["test_acc"] == pytest.approx(test_acc)


def test_without_the_wandb_package_logger_wandb_says_to_install_the_extra(monkeypatch):
    import lab.tracking
    from lab.config import validate

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "lab.tracking.wandb_run", raising=False)
    monkeypatch.delattr(lab.tracking, "wandb_run", raising=False)
    with pytest.raises(ConfigError, match=r'needs the wandb package.*pip install -e "\.\[wandb\]"'):
        validate(compose(["logger=wandb"]))


@pytest.mark.slow  # ~15 s: two commands that import mlflow
@pytest.mark.parametrize("sweeper", [[], ["hydra/sweeper=tune", "optimizer.lr=interval(0.01, 0.1)"]])
def test_an_unreachable_tracking_server_stops_a_sweep_before_any_job(tmp_path, sweeper):
    port = free_port()
    proc = run_train("-m", "dataset=digits", *TINY, "seed=1,2", *sweeper, "logger=mlflow",
                     f"logger.tracking_uri=http://127.0.0.1:{port}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error:") and lines[0].endswith("(no job was started)")
    assert f"logger.tracking_uri=http://127.0.0.1:{port}: no tracking server answers" in lines[0]
    assert not any((tmp_path / "sweep").glob("*/results.json"))


def test_a_wandb_mode_that_cannot_work_is_one_line():
    from lab.config import check_tracker

    with pytest.raises(ConfigError, match="logger.mode=cloud is not a W&B mode: choose offline, online, disabled"):
        check_tracker(compose(["logger=wandb", "logger.mode=cloud"]))
    check_tracker(compose(["logger=wandb"]))  # offline needs nothing


@pytest.mark.slow  # ~35 s: a 3-trial study logged to MLflow, then the dashboard's server
def test_a_tuning_run_is_a_parent_run_in_mlflow_and_its_journal_opens_in_optuna_dashboard(tmp_path):
    sweep, store = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_train("-m", "hydra/sweeper=tune", "dataset=digits", *TINY, "trainer.max_epochs=2",
                     "optimizer.lr=tag(log, interval(0.01, 0.1))", "hydra.sweeper.n_trials=3",
                     "hydra.sweeper.sampler=random", f"hydra.sweep.dir={sweep}", "logger=mlflow",
                     f"logger.tracking_uri={store}", f"logger.artifact_location={tmp_path / 'artifacts'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    from tests.test_mlflow import runs_by_name

    runs = runs_by_name(store)
    parent = runs.pop("sweep")
    assert parent.data.tags["lab.kind"] == "tuning" and sorted(runs) == ["trial=000", "trial=001", "trial=002"]
    for name, run in runs.items():
        record = results(sweep / name)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert (run.data.tags["status"], float(run.data.params["optimizer.lr"])) == \
            (record["status"], pytest.approx(record["config"]["optimizer"]["lr"]))
    assert f"optuna-dashboard {sweep / 'tune.journal'}" in (sweep / "tuning.md").read_text()
    port = free_port()
    dashboard = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"), str(sweep / "tune.journal"),
                                  "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies", dashboard)["study_summaries"]
        [study] = [s for s in studies if s["study_name"] == "lab"]
        trials = get_json(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", dashboard)["trials"]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    served = {t["number"]: (t["state"], float(t["params"][0]["param_external_value"])) for t in trials}
    from tests.test_tune import load_study

    states = {t.number: t.state.name.capitalize() for t in load_study(sweep).trials}  # complete or pruned (ASHA)
    on_disk = {n: (states[n], results(sweep / f"trial={n:03d}")["config"]["optimizer"]["lr"]) for n in range(3)}
    assert served.keys() == on_disk.keys()
    for number, (state, lr) in served.items():
        assert state == on_disk[number][0] and lr == pytest.approx(on_disk[number][1])


def get_json(url: str, server, timeout_s: float = 60) -> dict:
    deadline = time.time() + timeout_s
    while True:
        assert server.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)
