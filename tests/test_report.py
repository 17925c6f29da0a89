"""lab.report on synthetic run dirs: tables, seed grouping, figures, and the CLI's errors."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from lab.errors import ReportError
from lab.report import main, write_report
from lab.report.curves import draw_lr, read_metrics
from lab.report.figure_parts import left_out
from tests.conftest import run_module

PNG_HEADER = b"\x89PNG\r\n\x1a\n"
JOB_COLUMNS = ["status", "test_acc", "test_acc_low", "test_acc_high", "vs_best", "vs_best_p", "test_acc_top5",
               "best_val_acc", "teacher_val_acc", "train_time_s", "total_time_s", "epochs", "params",
               "images_per_s", "num_classes", "test_images", "job", "note"]


def make_run(run_dir, overrides, status="ok", test_acc=0.5, epochs=3, lrs=None, seed=42, error=None,
             config=None, **extra):
    """A run dir as lab.train leaves it: results.json (its `config` from the YAML text given) and metrics.csv;
    test_acc=None and status!='ok' for diverged/failed jobs; `extra`: more results.json keys (teacher_val_acc,
    per_class_acc, test_images, choices, ...)."""
    run_dir.mkdir(parents=True)
    results = dict(status=status, test_acc=test_acc, test_acc_top5=None if test_acc is None else 0.99,
                   best_val_acc=test_acc, train_time_s=10.0 + epochs, epochs=epochs, params=1234,
                   images_per_s=500.0, seed=seed, overrides=overrides, error=error,
                   diverged_epoch=1 if status == "diverged" else None,
                   config=yaml.safe_load(config or "seed: 42\n"), **extra)
    (run_dir / "results.json").write_text(json.dumps(results))
    lrs = lrs or [0.1] * epochs
    rows = [f"{e},{lr},{2.0 / (e + 1)},{0.3 + 0.1 * e},{1.5},{0.4 + 0.1 * e},1.2," for e, lr in enumerate(lrs)]
    header = "epoch,lr,train_loss,train_acc,val_loss,val_acc,epoch_time_s,train_distill\n"
    (run_dir / "metrics.csv").write_text(header + "\n".join(rows) + "\n")
    return run_dir


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_HEADER and len(data) > 2000, path


def md_rows(text):
    return [line for line in text.splitlines() if line.startswith("| ") and "status" not in line]


@pytest.fixture
def lr_sweep(tmp_path):
    """1e-3, 0.01, 0.1 and a diverged 2.0: directory order (0.01, 0.1, 1e-3, 2.0) is not numeric order."""
    sweep = tmp_path / "sweep"
    for lr, acc in (("1e-3", 0.61), ("0.01", 0.83), ("0.1", 0.72)):
        make_run(sweep / f"optimizer.lr={lr}", [f"optimizer.lr={lr}", "dataset=digits"], test_acc=acc)
    make_run(sweep / "optimizer.lr=2.0", ["optimizer.lr=2.0", "dataset=digits"], status="diverged",
             test_acc=None, epochs=2)
    return sweep


def test_lr_sweep_table_sorted_numerically_with_the_diverged_job_kept(lr_sweep):
    report = write_report([lr_sweep], lr_sweep)
    summary = pd.read_csv(lr_sweep / "summary.csv")
    assert list(summary.columns) == ["optimizer.lr"] + JOB_COLUMNS  # dataset=digits is not swept
    assert list(summary["optimizer.lr"]) == [0.001, 0.01, 0.1, 2.0]
    assert list(summary.status) == ["ok", "ok", "ok", "diverged"]
    assert summary.note[3] == "loss NaN/inf in epoch 1" and len(report["table"]) == 4
    rows = md_rows((lr_sweep / "summary.md").read_text())
    assert [r.split("|")[1].strip() for r in rows] == ["0.001", "0.01", "0.1", "2"]
    assert [i for i, r in enumerate(rows) if "★" in r] == [1]  # 0.01, test_acc 0.83
    assert "diverged: loss NaN/inf in epoch 1" in rows[3]
    assert left_out(report["table"]) == "\n1 job(s) left out: 1 diverged"


def test_lr_sweep_figures_are_written_atomically_as_pngs(lr_sweep):
    report = write_report([lr_sweep], lr_sweep / "report")
    out = lr_sweep / "report"
    names = {p.name for p in report["files"]}
    assert names == {"summary.csv", "summary.md", "acc_vs_optimizer.lr.png", "curves.png"}
    for name in ("acc_vs_optimizer.lr.png", "curves.png"):
        assert_png(out / name)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temp file left behind
    assert "![curves](curves.png)" in (out / "summary.md").read_text()


def test_seed_sweep_is_grouped_with_mean_and_sample_std(tmp_path):
    accs = {"0.01": [0.80, 0.82, 0.87], "0.1": [0.70, 0.74, None]}  # one failed seed at lr 0.1
    for lr, values in accs.items():
        for seed, acc in zip((1, 2, 3), values):
            make_run(tmp_path / f"lr={lr},seed={seed}", [f"optimizer.lr={lr}", f"seed={seed}"], test_acc=acc,
                     seed=seed, status="ok" if acc else "failed", error=None if acc else "RuntimeError: oom")
    report = write_report([tmp_path], tmp_path)
    grouped = pd.read_csv(tmp_path / "summary_grouped.csv")
    assert list(grouped["optimizer.lr"]) == [0.01, 0.1] and list(grouped.ok) == [3, 2]
    assert grouped.test_acc_mean.tolist() == pytest.approx([np.mean([0.80, 0.82, 0.87]), 0.72])
    assert grouped.test_acc_std.tolist() == pytest.approx([np.std([0.80, 0.82, 0.87], ddof=1),
                                                           np.std([0.70, 0.74], ddof=1)])
    assert list(report["table"].group) == [0, 0, 0, 1, 1, 1]  # a setting's seeds share one colour
    text = (tmp_path / "summary.md").read_text()
    assert "| 0.01 | 1 2 3 | 3 ok | 0.8300 ± 0.0361 ★ |" in text
    assert "failed: RuntimeError: oom" in text
    assert_png(tmp_path / "acc_vs_optimizer.lr.png")
    assert not (tmp_path / "acc_vs_seed.png").exists()


def test_optimizer_sweep_records_what_was_fixed_and_the_lr_each_job_used(tmp_path):
    """+experiment=optimizers: each option brings its own lr, so no job's overrides name one."""
    for name, lr in (("sgd", "0.03"), ("adam", "1e-3"), ("adagrad", "1e-2")):
        make_run(tmp_path / f"optimizer={name}", ["+experiment=optimizers", f"optimizer={name}", "dataset=digits",
                                                  "trainer.max_epochs=2", "model.base_width=16"],
                 config=f"seed: 42\noptimizer:\n  lr: {lr}\n  weight_decay: 0.0\n")
    write_report([tmp_path], tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns) == ["optimizer", "optimizer.lr"] + JOB_COLUMNS  # weight_decay is the same
    assert list(zip(summary.optimizer, summary["optimizer.lr"])) == [("adagrad", 0.01), ("adam", 0.001),
                                                                     ("sgd", 0.03)]
    text = (tmp_path / "summary.md").read_text()
    assert "Swept: optimizer." in text
    # As typed, so it pastes into a command (+experiment, not experiment).
    assert "\nFixed: +experiment=optimizers dataset=digits trainer.max_epochs=2 model.base_width=16\n" in text
    assert md_rows(text)[0].startswith("| adagrad | 0.01 | ok | 0.5000 ")


def test_fixed_lists_only_the_overrides_every_job_shares(lr_sweep):
    make_run(lr_sweep / "optimizer.lr=0.5", ["optimizer.lr=0.5", "dataset=digits", "trainer.max_epochs=2"])
    write_report([lr_sweep], lr_sweep)
    assert "\nFixed: dataset=digits\n" in (lr_sweep / "summary.md").read_text()


def test_categorical_sweep_gets_a_comparison_and_shows_the_failed_job(tmp_path):
    for name, acc in (("sgd", 0.9), ("adam", 0.85)):
        make_run(tmp_path / f"optimizer={name}", [f"optimizer={name}"], test_acc=acc)
    make_run(tmp_path / "optimizer=adamw", ["optimizer=adamw"], status="failed", test_acc=None,
             error="ValueError: lr | must be > 0")
    report = write_report([tmp_path], tmp_path)
    assert list(report["table"].optimizer) == ["adam", "adamw", "sgd"]
    assert {p.name for p in report["files"]} == {"summary.csv", "summary.md", "curves.png", "compare.png"}
    assert_png(tmp_path / "compare.png")
    rows = md_rows((tmp_path / "summary.md").read_text())
    assert "failed: ValueError: lr \\| must be > 0" in rows[1]  # the pipe is escaped, not a new cell
    assert "★" in rows[2] and "★" not in rows[0] + rows[1]


def test_no_finished_jobs_gives_placeholder_figures_and_no_best(tmp_path):
    make_run(tmp_path / "optimizer.lr=5", ["optimizer.lr=5"], status="diverged", test_acc=None)
    make_run(tmp_path / "optimizer.lr=9", ["optimizer.lr=9"], status="failed", test_acc=None, error="boom")
    (tmp_path / "optimizer.lr=7" / ".hydra").mkdir(parents=True)  # killed before results.json
    report = write_report([tmp_path], tmp_path)
    assert list(report["table"].status) == ["diverged", "failed", "missing"]  # nothing says its lr: last
    assert report["table"].job.iloc[-1] == "optimizer.lr=7"
    for name in ("acc_vs_optimizer.lr.png", "curves.png"):
        assert_png(tmp_path / name)
    assert "★" not in "".join(md_rows((tmp_path / "summary.md").read_text()))


def test_lr_axis_is_drawn_only_when_the_schedule_changes(tmp_path):
    from matplotlib.figure import Figure

    constant = make_run(tmp_path / "a", ["scheduler=none"])
    stepped = make_run(tmp_path / "b", ["scheduler=multistep"], epochs=4, lrs=[0.1, 0.1, 0.01, 0.001])
    table = write_report([tmp_path], tmp_path)["table"]
    runs = {job.scheduler: (job, read_metrics(job.run_dir)) for _, job in table.iterrows()}
    assert draw_lr(Figure().subplots(), list(runs.values()), ["r", "b"]) is True
    assert draw_lr(Figure().subplots(), [runs["none"]], ["r", "b"]) is False
    assert read_metrics(stepped).lr.tolist() == [0.1, 0.1, 0.01, 0.001]
    assert read_metrics(constant).train_distill.isna().all()  # empty cells read as NaN, not a crash
    assert_png(tmp_path / "curves.png")


def test_two_dirs_compared_fill_unswept_keys_from_the_config(tmp_path, capsys):
    make_run(tmp_path / "d1" / "optimizer.lr=0.1", ["optimizer.lr=0.1"], test_acc=0.7)
    make_run(tmp_path / "d1" / "optimizer.lr=0.3", ["optimizer.lr=0.3"], test_acc=0.6)
    make_run(tmp_path / "d2" / "run", [], test_acc=0.8, config="seed: 42\noptimizer:\n  lr: 0.03\n")
    assert main([str(tmp_path / "d1"), str(tmp_path / "d2"), "--out", str(tmp_path / "o")]) == 0
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert list(summary.columns[:2]) == ["source", "optimizer.lr"]
    assert list(zip(summary.source, summary["optimizer.lr"])) == [("d1", 0.1), ("d1", 0.3), ("d2", 0.03)]
    assert "compare.png" in capsys.readouterr().out  # source is a categorical key


def test_several_dirs_without_out_is_refused(tmp_path, capsys):
    make_run(tmp_path / "a", [])
    assert main([str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert "pass --out DIR" in capsys.readouterr().err
    assert not (tmp_path / "a" / "summary.csv").exists()


def test_dir_without_runs_raises_a_report_error(tmp_path):
    (tmp_path / "empty" / "notarun").mkdir(parents=True)
    with pytest.raises(ReportError, match="holds no runs"):
        write_report([tmp_path / "empty"], tmp_path)


def test_cli_names_the_missing_dir_in_one_line_and_exits_2(tmp_path):
    proc = run_module("lab.report", tmp_path / "nope", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "nope") in lines[0] and "pass a run dir" in lines[0]
