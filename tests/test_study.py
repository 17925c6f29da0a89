"""python -m lab.study: the original report as one study of lab.train steps, resumable, with one REPORT.md."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.study.main import main, plan_study
from lab.study.plan import Step, step_command
from lab.study.report import write_study_report
from tests.conftest import ROOT, results
from tests.images import arrow_folder

DIGITS = ["dataset=digits", "trainer.max_epochs=3"]


def commands(argv, run_dir_of=lambda name: Path("/runs") / name):
    study, out, overrides, steps = plan_study(argv)
    for step in steps:
        step_command(step, study, overrides, out, run_dir_of)
    return out, {step.name: step for step in steps}


def test_the_lab_report_runs_every_task_in_order_and_the_teacher_before_distillation():
    _, steps = commands(DIGITS + ["study.signs_root=/signs"])
    assert list(steps) == ["t1", "t3", "t2", "t3b", "t4", "teacher", "t5", "t6", "t6_real", "t6_digits"]
    # task 6's arms on real images: the study's dataset, and digits whatever the command line's dataset is
    assert "augment.flip=false,true" in steps["t6_real"].command and "dataset=digits" in steps["t6_digits"].command
    assert "+experiment=lr_sweep" in steps["t3"].command and "+experiment=teacher" in steps["teacher"].command
    assert "distill.teacher_ckpt=/runs/teacher" in steps["t5"].command
    assert all("trainer.max_epochs=3" in s.command and "resume=true" in s.command for s in steps.values())


def test_choosing_a_step_brings_the_steps_it_needs():
    _, steps = commands(DIGITS + ["study.steps=[t1,t5]"])
    assert list(steps) == ["t1", "teacher", "t5"]


def test_t6_without_a_signs_folder_is_skipped_with_the_reason():
    _, steps = commands(DIGITS)
    assert steps["t6"].skipped and "study.signs_root" in steps["t6"].skipped and not steps["t6"].command


def test_t6_keeps_its_image_folder_when_the_user_picks_another_dataset():
    _, steps = commands(DIGITS + ["study.signs_root=/signs"])
    assert "dataset=digits" not in steps["t6"].command and "dataset.root=/signs" in steps["t6"].command
    _, steps = commands(["dataset=gtsrb"])
    assert steps["t6"].skipped is None and "dataset=gtsrb" in steps["t6"].command


def test_a_step_whose_teacher_did_not_finish_is_skipped():
    _, steps = commands(DIGITS + ["study.steps=[t5]"], run_dir_of=lambda name: None)
    assert "teacher" in steps["t5"].skipped


def test_the_study_dir_is_named_by_the_command_not_the_clock_nor_the_chosen_steps():
    out, _ = commands(DIGITS)
    assert out == commands(DIGITS + ["study.steps=[t1]", "study.signs_root=/signs"])[0]
    assert out != commands(["dataset=digits", "trainer.max_epochs=4"])[0]
    assert out.parent == Path("studies/lab_report") and "=" not in out.name and "," not in out.name


@pytest.mark.parametrize("argv, says", [(["study.nope=1"], "unknown key(s) nope"),
                                        (["study.steps=[t1,t9]"], "unknown step(s) t9"),
                                        (["study=missing"], "study/missing"),
                                        (["study.plan.t1.bogus=1"], "study.plan.t1: unknown key(s) bogus")])
def test_a_bad_study_setting_is_one_line_and_exit_2(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def fake_job(step_dir: Path, name: str, acc: float, lr: float, status="ok", n=359, seed=None):
    """A finished job's results.json and test_predictions.json: round(acc * n) of n images right."""
    run_dir = step_dir / name
    run_dir.mkdir(parents=True)
    overrides = [f"optimizer.lr={lr}"] + ([f"seed={seed}"] if seed is not None else [])
    (run_dir / "results.json").write_text(json.dumps(dict(
        status=status, test_acc=acc, test_images=n, total_time_s=10.0, train_time_s=8.0, epochs=3,
        dataset="digits", overrides=overrides, git_commit="abc", git_dirty=False, device="cpu", seed=seed,
        choices={"optimizer": "sgd", "model": "resnet10"}, config={"optimizer": {"lr": lr}, "seed": seed})))
    if acc is not None:
        right = round(acc * n)
        (run_dir / "test_predictions.json").write_text(json.dumps(dict(
            checkpoint="best", label=[0] * n, predicted=[0] * right + [1] * (n - right))))


def test_report_sets_the_lab_reports_numbers_beside_labs_with_intervals_and_counts(tmp_path):
    """On 359 test images each accuracy carries its Wilson interval and its count; every lr is a row."""
    study, _, _, _ = plan_study(["study.steps=[t3]"])
    fake_job(tmp_path / "t3", "optimizer.lr=0.03", 0.9749, 0.03)
    fake_job(tmp_path / "t3", "optimizer.lr=0.1", 0.9666, 0.1)
    fake_job(tmp_path / "t3", "optimizer.lr=1", 0.80, 1)
    runs = [dict(started_at=0.0, ended_at=60.0)]
    report = write_study_report(study, tmp_path, [Step("t3", study["plan"]["t3"])], {"t3": {"status": "ok"}},
                                runs, "python -m lab.study")
    rows = {row["label"]: row for row in report["steps"][0]["jobs"]}
    assert set(rows) == {"lr 0.03", "lr 0.1", "lr 1"}
    assert rows["lr 0.1"]["lab_report_acc"] == 0.653 and rows["lr 1"]["lab_report_acc"] == 0.5153
    assert rows["lr 0.03"]["correct"] == [350] and rows["lr 0.03"]["test_images"] == 359  # 0.9749 of 359
    low, high = rows["lr 0.03"]["interval"]
    assert 0.95 < low < 0.9749 < high < 0.99
    text = (tmp_path / "REPORT.md").read_text()
    assert "## t3. Task 3" in text and "(the original report only) 0.005" in text and "350 / 359" in text
    assert text.index("## Findings") < text.index("## t3.") and "Setup vs the original:" in text
    assert "t3/" not in text or "](t3/" in text  # links are relative
    assert "git commit abc" in text and not re.search(r"<[a-z/]", text)  # no HTML
    from lab.run_files import git_state  # the jobs' commit and the commit that rendered the page, both named
    assert f"this report rendered at git commit {git_state()['git_commit'][:12]}" in text


def test_seeds_give_mean_and_std_per_setting(tmp_path):
    study, _, _, _ = plan_study(["study.steps=[t3]"])
    for lr, accs in ((0.03, (0.90, 0.92)), (0.1, (0.80, 0.84))):
        for seed, acc in zip((5, 42), accs):
            fake_job(tmp_path / "t3", f"optimizer.lr={lr},seed={seed}", acc, lr, seed=seed)
    report = write_study_report(study, tmp_path, [Step("t3", study["plan"]["t3"])], {}, [], "python -m lab.study")
    rows = {row["label"]: row for row in report["steps"][0]["jobs"]}
    assert rows["lr 0.03"]["seeds"] == 2 and abs(rows["lr 0.03"]["test_acc"] - 0.91) < 1e-9
    assert abs(rows["lr 0.1"]["test_acc_std"] - 0.0282843) < 1e-6 and rows["lr 0.1"]["lab_report_acc"] == 0.653
    assert "0.9100 ± 0.0141" in (tmp_path / "REPORT.md").read_text()
    assert "- seeds 5, 42;" in (tmp_path / "REPORT.md").read_text()  # by number, not as text


def study_proc(tmp_path, *argv):
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT))
    # As a terminal's foreground command: a shell that runs pytest in the background (`&`, no job control)
    # ignores SIGINT, and the study would inherit that and never see the test's Ctrl-C.
    return subprocess.Popen([sys.executable, "-m", "lab.study", f"study.dir={tmp_path / 'study'}", *argv],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finished_at(study_dir: Path) -> dict:
    return {str(p.parent.relative_to(study_dir)): results(p.parent)["finished_at"]
            for p in study_dir.glob("*/*/results.json") if results(p.parent)["status"] == "ok"}


def mid_training(study_dir: Path) -> bool:
    """A job is training with a last.ckpt to resume from."""
    return any((p.parent / "checkpoints" / "last.ckpt").is_file() and results(p.parent)["status"] == "running"
               for p in study_dir.glob("*/*/results.json"))


@pytest.mark.slow
def test_a_study_resumes_after_ctrl_c_and_kill_9_without_training_a_finished_job_twice(tmp_path):
    """Run t1 and t3 (one job fails when it loads its data: a training subset larger than digits), then the
    whole cut-down study: Ctrl-C it, kill -9 it (each while a job trains), run it to the end. Every finished job
    keeps its finished_at, a stopped job resumes from its last.ckpt, and REPORT.md has every section."""
    arrow_folder(tmp_path / "signs", {"train_dataset": 24, "test_dataset": 8}, size=16)
    tiny = ["dataset=digits", "trainer.max_epochs=3", "model.base_width=8", "trainer.accelerator=cpu",
            'study.plan.t3.overrides=["optimizer.lr=0.05","dataset.train_subset=null,5000"]',
            f"study.signs_root={tmp_path / 'signs'}"]
    study_dir = tmp_path / "study"
    first = study_proc(tmp_path, "study.steps=[t1,t3]", *tiny)
    err = first.communicate(timeout=600)[1]
    assert first.returncode == 1 and "train_subset=5000" in err, err[-2000:]
    done = finished_at(study_dir)
    assert len(done) == 2 and "t1/0" in done and any("train_subset=null" in job for job in done)

    everything = ["study.steps=[t1,t3,t5,t6]", *tiny]
    for stop in (signal.SIGINT, signal.SIGKILL):
        proc = study_proc(tmp_path, *everything)
        while not mid_training(study_dir) and proc.poll() is None:  # stop a job after its first epoch
            time.sleep(0.05)
        proc.send_signal(stop)
        err = proc.communicate(timeout=300)[1]
        if stop == signal.SIGINT:
            assert proc.returncode == 130 and "continue with the same command" in err, err[-2000:]
        assert {k: v for k, v in finished_at(study_dir).items() if k in done} == done
        done = finished_at(study_dir)

    last = study_proc(tmp_path, *everything)
    err = last.communicate(timeout=600)[1]
    assert last.returncode == 1 and "train_subset=5000" in err  # the bad job still fails, the rest finished
    assert {k: v for k, v in finished_at(study_dir).items() if k in done} == done
    for job in ("teacher/0", "t5/distill=none", "t5/distill=soft_target", "t5/distill=logits"):
        assert results(study_dir / job)["status"] in ("ok", "diverged"), job
    t6 = [results(p.parent)["status"] for p in (study_dir / "t6").glob("*/results.json")]
    assert len(t6) == 4 and set(t6) <= {"ok", "diverged"}  # flip and crop, each on and off
    resumed = [p.parent.name for p in study_dir.glob("*/*/results.json") if results(p.parent).get("processes", 1) > 1]
    assert resumed, "no job was stopped mid-training and resumed"
    report = (study_dir / "REPORT.md").read_text()
    for heading in ("## t1.", "## t3.", "## t5.", "### teacher.", "## t6.", "## Provenance"):
        assert heading in report
    assert "train_subset=5000" in report and "failed" in report
    assert "distill.teacher_ckpt=" in (study_dir / "logs" / "t5.log").read_text()


def test_a_missing_path_or_bad_value_in_any_step_stops_the_study_before_any_step(tmp_path, capsys):
    out = tmp_path / "study"
    code = main([f"study.dir={out}", *DIGITS, "study.steps=[t1,t6]", f"study.signs_root={tmp_path / 'MISSING'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "study step t6" in err and str(tmp_path / "MISSING") in err and "is not a folder" in err
    assert not out.exists()  # nothing started, nothing written
    assert main([f"study.dir={out}", *DIGITS, "study.steps=[t3]", 'study.plan.t3.overrides=["optimizer.lr=abc"]']) == 2
    assert "optimizer.lr='abc' is not allowed" in capsys.readouterr().err and not out.exists()


def test_jobs_per_gpu_lists_each_gpu_that_many_times_for_a_joblib_launcher(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    _, steps = commands(DIGITS + ["study.jobs_per_gpu=2"])
    assert {"hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "gpu_pool=[0,0,1,1]"} <= set(steps["t3"].command)
    _, steps = commands(DIGITS + ["study.jobs_per_gpu=2", "hydra/launcher=submitit_local"])
    assert "gpu_pool=[0,0,1,1]" not in steps["t3"].command and "hydra/launcher=submitit_local" in steps["t3"].command
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _, steps = commands(DIGITS + ["study.jobs_per_gpu=2"])
    assert not any(o.startswith("gpu_pool") for o in steps["t3"].command)


def test_a_single_run_step_is_labelled_by_its_model(tmp_path):
    study, _, _, _ = plan_study(["study.steps=[t1,teacher]"])
    for step, model in (("t1", "resnet10"), ("teacher", "resnet50")):
        fake_job(tmp_path / step, "0", 0.9, 0.03)
        record = json.loads((tmp_path / step / "0" / "results.json").read_text())
        record["choices"]["model"] = model
        (tmp_path / step / "0" / "results.json").write_text(json.dumps(record))
    steps = [Step(name, study["plan"][name]) for name in ("t1", "teacher")]
    report = write_study_report(study, tmp_path, steps, {}, [], "python -m lab.study")
    labels = {s["name"]: [row["label"] for row in s["jobs"]] for s in report["steps"]}
    assert labels == {"t1": ["ResNet10"], "teacher": ["ResNet50"]}
    assert report["steps"][0]["jobs"][0]["lab_report_acc"] == 0.6629  # t1's one published row


def test_progress_counts_each_job_once_across_commands(tmp_path, caplog):
    """An earlier command left one job finished and one failed; this one skips the first (resume=true may
    rewrite its results.json) and reruns the second, which fails again: 2 of 2 jobs, one line for the rerun."""
    import logging

    from lab.study.run import Progress

    step_dir = tmp_path / "t3"
    fake_job(step_dir, "optimizer.lr=0.03", 0.9, 0.03)
    fake_job(step_dir, "optimizer.lr=-1", None, -1, status="failed")
    progress = Progress({"t3": 2})
    progress.begin("t3", step_dir)
    progress.scan("t3", step_dir)
    assert progress.done == {"t3": 1}  # the stale failed results.json is not a job that ended now
    time.sleep(0.01)
    for name in ("optimizer.lr=0.03", "optimizer.lr=-1"):  # both results.json rewritten by this command
        record = step_dir / name / "results.json"
        record.write_text(record.read_text())
    with caplog.at_level(logging.INFO, logger="lab"):
        progress.scan("t3", step_dir)
        progress.scan("t3", step_dir)
    lines = [r.message for r in caplog.records if r.message.startswith("study: t3")]
    assert progress.done == {"t3": 2} and len(lines) == 1 and "optimizer.lr=-1: failed" in lines[0]
    assert "2/2 jobs" in lines[0]


def test_a_continued_studys_eta_counts_the_jobs_of_later_steps_finished_earlier(tmp_path, caplog):
    import logging

    from lab.study.run import Progress

    fake_job(tmp_path / "t2", "optimizer.lr=0.1", 0.9, 0.1)  # finished by an earlier command, its step not begun
    progress = Progress({"t1": 1, "t2": 2})
    for step in ("t1", "t2"):
        progress.begin(step, tmp_path / step, say=False)
    fake_job(tmp_path / "t1", "optimizer.lr=0.03", 0.9, 0.03)
    with caplog.at_level(logging.INFO, logger="lab"):
        progress.scan("t1", tmp_path / "t1")
    assert "2/3 jobs" in caplog.messages[-1]  # one job left: t2's other


def test_identical_jobs_of_different_steps_are_planned_once_and_copied(tmp_path):
    """t1, t3's lr 0.03 and t4's ResNet10 are one job (same resolved config): t1 trains it, the others copy it."""
    from lab.study.main import plan_jobs
    from lab.study.run import all_finished, copy_identical_jobs

    study, out, overrides, steps = plan_study([f"study.dir={tmp_path}", *DIGITS, "study.steps=[t1,t3,t4]"])
    totals = plan_jobs(steps, study, overrides, out)
    by_name = {s.name: {job.name: job for job in s.jobs} for s in steps}
    assert totals == {"t1": 1, "t3": 10, "t4": 3}
    assert by_name["t1"]["0"].same_as is None
    assert by_name["t3"]["optimizer.lr=0.03"].same_as == "t1/0" == by_name["t4"]["model=resnet10"].same_as
    assert by_name["t3"]["optimizer.lr=0.1"].same_as is None and by_name["t4"]["model=resnet18"].same_as is None
    fake_job(tmp_path / "t1", "0", 0.9, 0.03)
    t4 = next(s for s in steps if s.name == "t4")
    copy_identical_jobs(t4, tmp_path)
    copied = results(tmp_path / "t4" / "model=resnet10")
    assert copied["same_as"] == "t1/0" and copied["test_acc"] == 0.9
    assert (tmp_path / "t4" / "model=resnet10" / "test_predictions.json").is_file()
    assert not all_finished(t4, tmp_path)  # resnet18 and resnet50 are still to train


def test_t6_takes_none_of_the_users_dataset_keys():
    _, steps = commands(["dataset=fashion_mnist", "dataset.root=/fm", "dataset.train_subset=5000",
                         "study.signs_root=/signs"])
    assert "dataset.root=/signs" in steps["t6"].command and "dataset.root=/fm" not in steps["t6"].command
    assert "dataset.train_subset=5000" not in steps["t6"].command and "dataset.train_subset=5000" in steps["t1"].command


@pytest.mark.parametrize("teacher_acc, says", [(0.7, "worse"), (0.82, "noise"), (0.95, None)])
def test_a_teacher_below_its_students_is_named_in_the_distillation_section(tmp_path, teacher_acc, says):
    study, _, _, _ = plan_study(["study.steps=[t5]"])
    fake_job(tmp_path / "teacher", "0", teacher_acc, 0.05)
    for name, acc in (("distill=none", 0.84), ("distill=soft_target", 0.78), ("distill=logits", 0.73)):
        fake_job(tmp_path / "t5", name, acc, 0.05)
        record = json.loads((tmp_path / "t5" / name / "results.json").read_text())
        record["choices"]["distill"], record["overrides"] = name.split("=")[1], [name]
        (tmp_path / "t5" / name / "results.json").write_text(json.dumps(record))
    write_study_report(study, tmp_path, [Step(n, study["plan"][n]) for n in ("teacher", "t5")], {}, [], "cmd")
    text = (tmp_path / "REPORT.md").read_text()
    assert ("The teacher (" in text) == (says is not None)
    if says == "worse":  # 0.84 is beyond the interval of 0.70 on 359 images
        assert "The teacher (0.7000) scores below student alone 0.8400, soft target 0.7800, logits 0.7300: its " \
            "targets are worse than the labels" in text
    if says == "noise":  # 0.84 is inside 0.82's interval on 359 images: no weaker, no stronger
        assert "The teacher (0.8200) scores below student alone 0.8400, within its test set's noise" in text
        assert "worse than the labels" not in text
