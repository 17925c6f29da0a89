"""How lab.train behaves at the edges of a run: errors before any work, damaged checkpoints, an output dir that
cannot be made, resumed timing, progress lines and CPU threads."""
import os
import time
from types import SimpleNamespace

import pytest
import torch

from lab.recorder import EpochRecorder
from lab.trainer import idle_cores, set_cpu_threads
from tests.conftest import TINY, results, run_train


def one_error_line(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line or line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


def test_a_user_error_before_a_single_run_begins_leaves_no_run_dir(tmp_path):
    run_dir = tmp_path / "day" / "run"
    line = one_error_line(run_train("dataset=digits", "optimizer.lr=-1", f"hydra.run.dir={run_dir}"))
    assert "optimizer.lr=-1" in line and "run dir" not in line
    assert not (tmp_path / "day").exists()  # nor the empty date dir above it


def test_a_data_error_before_the_first_epoch_leaves_no_run_dir(tmp_path):
    run_dir = tmp_path / "day" / "run"
    line = one_error_line(run_train("dataset=imagefolder", f"dataset.root={tmp_path / 'no_such_folder'}",
                                    f"hydra.run.dir={run_dir}"))
    assert "no_such_folder does not exist" in line and not (tmp_path / "day").exists()


def test_an_output_dir_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    line = one_error_line(run_train("dataset=digits", f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"))
    assert f"cannot create the output dir {tmp_path / 'a_file' / 'run'}" in line and "hydra.run.dir=" in line


@pytest.mark.slow
def test_a_damaged_last_ckpt_resumes_from_best_and_all_damaged_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    common = ["dataset=digits", *TINY, f"hydra.run.dir={run_dir}"]
    assert run_train(*common, "trainer.max_epochs=1").returncode == 0
    (run_dir / "results.json").unlink()  # as if killed after its first epoch
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated: torch cannot find the zip's central directory
    proc = run_train(*common, "trainer.max_epochs=2", "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "last.ckpt is missing or damaged: continuing from" in proc.stderr and "best.ckpt" in proc.stderr
    assert results(run_dir)["epochs"] == 2
    (run_dir / "results.json").unlink()
    for name in ("last.ckpt", "best.ckpt"):
        (run_dir / "checkpoints" / name).write_bytes(b"garbage")
    line = one_error_line(run_train(*common, "trainer.max_epochs=3", "resume=true"))
    assert "every checkpoint in" in line and "cannot continue" in line and "delete" in line


def fake_trainer():
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))


def test_a_mid_epoch_checkpoint_keeps_the_training_time_of_the_running_epoch(tmp_path):
    recorder = EpochRecorder(tmp_path)
    recorder.on_train_epoch_start(fake_trainer(), None)
    recorder.phase_start -= 5.0  # five seconds into the epoch's training, 32 images seen
    recorder.epoch_start -= 5.0
    recorder.train_time_s, recorder.train_images = 10.0, 32
    state = recorder.state_dict()
    assert abs(state["train_time_s"] - 15.0) < 0.5 and abs(state["epoch_elapsed_s"] - 5.0) < 0.5
    resumed = EpochRecorder(tmp_path)
    resumed.load_state_dict(state)
    resumed.on_train_start(fake_trainer(), None)  # a mid-epoch resume skips on_train_epoch_start
    assert resumed.processes == 2 and resumed.train_images == 32
    assert abs((time.perf_counter() - resumed.epoch_start) - 5.0) < 0.5  # the epoch's time counts both parts


@pytest.mark.slow
def test_progress_lines_come_inside_an_epoch_without_a_terminal(tmp_path):
    proc = run_train("dataset=digits", *TINY, "trainer.max_epochs=1", "progress_every_s=0.000001",
                     f"hydra.run.dir={tmp_path / 'run'}", env={"PYTHONWARNINGS": "default"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SweepCallback" not in proc.stderr  # its job lines are for sweeps; a single run has no job number
    assert "epoch 0: batch 1/8, " in proc.stderr and "images/s, epoch ETA" in proc.stderr


def test_cpu_threads_take_a_number_or_the_idle_cores():
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1
        assert 1 <= set_cpu_threads("auto") <= len(os.sched_getaffinity(0))
        assert 1 <= idle_cores(0.05) <= len(os.sched_getaffinity(0))
        torch.set_num_threads(2)  # an OMP_NUM_THREADS the user (or joblib) set stands
        assert set_cpu_threads("auto", omp_threads_set=True) == 2
    finally:
        torch.set_num_threads(before)


def test_the_commit_is_read_at_the_start_of_a_run_not_at_its_end(monkeypatch):
    """The first results.json of a run (status running) reads git; a commit made while it trains does not
    change what its final results.json names: the code in memory is the first one's."""
    import subprocess

    from lab import run_files

    run_files.git_state.cache_clear()
    heads = iter(["aaa111\n", "", "bbb222\n", ""])  # rev-parse HEAD, then status --porcelain, twice
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: SimpleNamespace(returncode=0, stdout=next(heads)))
    at_start = run_files.git_state()
    at_end = run_files.git_state()
    run_files.git_state.cache_clear()
    assert at_start == at_end == {"git_commit": "aaa111", "git_dirty": False}


def test_an_edit_under_docs_or_to_markdown_does_not_make_a_run_dirty(tmp_path):
    """A study copies its report into docs/ while its later runs train: edits there and to markdown leave a run
    clean; an edit to code or config makes it dirty."""
    import subprocess

    from lab import run_files

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for path in ("docs/REPORT.md", "docs/study.png", "README.md", "lab/train.py", "conf/train.yaml"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("one\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")

    def dirty_after_editing(*paths) -> bool:
        git("checkout", "-q", ".")
        for path in paths:
            (tmp_path / path).write_text("two\n")
        run_files.git_state.cache_clear()
        return run_files.git_state(tmp_path / "lab")["git_dirty"]

    try:
        assert dirty_after_editing() is False
        assert dirty_after_editing("docs/REPORT.md", "docs/study.png", "README.md") is False
        assert dirty_after_editing("lab/train.py") is True
        assert dirty_after_editing("conf/train.yaml") is True
    finally:
        run_files.git_state.cache_clear()
