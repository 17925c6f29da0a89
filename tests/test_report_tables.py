"""lab.report's tables as a user reads them: seed groups of one, ties, constant columns, named sources,
distillation, top-5 on small datasets, and the two time columns."""
import pandas as pd
import pytest

from lab.report import main, write_report
from tests.test_report import lr_sweep, make_run, md_rows  # noqa: F401 (lr_sweep: a fixture)

SOFT_TARGET = "seed: 42\ndistill:\n  kind: soft_target\n  alpha: 0.1\n  beta: 0.9\n  temperature: 4.0\n"
NO_DISTILL = "seed: 42\ndistill:\n  kind: none\n  teacher_ckpt: null\n"


def md_table(text, title) -> list[dict]:
    """The first table from `title` on, as {header: cell} rows."""
    lines = text[text.index(title):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    header, *rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[start:start + 1] +
                     lines[start + 2:end]]
    return [dict(zip(header, row)) for row in rows] or [dict.fromkeys(header)]


def md_header(text, title):
    return list(md_table(text, title)[0])


def seed_sweep(root, accs, lr="0.1"):
    """One job per seed; acc None: that seed's job failed."""
    for seed, acc in enumerate(accs, start=1):
        make_run(root / f"seed={seed}", [f"optimizer.lr={lr}", f"seed={seed}"], test_acc=acc, seed=seed,
                 status="ok" if acc else "failed", error=None if acc else "RuntimeError: oom")
    return root


def test_a_seed_group_with_one_finished_job_is_a_mean_without_std(tmp_path):
    sweep = seed_sweep(tmp_path / "sweep", [0.8, None])
    report = write_report([sweep], sweep)
    text = (sweep / "summary.md").read_text()
    [group] = md_table(text, "## Mean")
    assert (group["seeds"], group["jobs"], group["test_acc"]) == ("1 2", "1 ok, 1 failed", "0.8000 ★")
    assert "±" not in "".join(group.values())
    assert list(report["table"].status) == ["ok", "failed"]  # the failed job stays in the tables
    assert "failed: RuntimeError: oom" in text


def test_a_seed_sweep_compared_with_a_single_run_writes_its_report(tmp_path):
    seeds = seed_sweep(tmp_path / "seeds", [0.8, 0.9])
    make_run(tmp_path / "other" / "run", ["optimizer.lr=0.3"], test_acc=0.7)
    assert main([str(seeds), str(tmp_path / "other"), "--out", str(tmp_path / "out")]) == 0
    grouped = pd.read_csv(tmp_path / "out" / "summary_grouped.csv")
    assert list(grouped.source) == ["seeds", "other"] and list(grouped.ok) == [2, 1]
    assert grouped.test_acc_mean.tolist() == pytest.approx([0.85, 0.7])
    assert "| other | 0.3 | 42 | 1 ok | 0.7000 " in (tmp_path / "out" / "summary.md").read_text()


def test_a_tie_for_the_best_accuracy_stars_every_tied_job(tmp_path):
    for lr, acc in (("0.01", 0.9), ("0.1", 0.9), ("1", 0.7)):
        make_run(tmp_path / f"optimizer.lr={lr}", [f"optimizer.lr={lr}"], test_acc=acc)
    write_report([tmp_path], tmp_path)
    rows = md_rows((tmp_path / "summary.md").read_text())
    assert ["★" in row for row in rows] == [True, True, False]


def test_grouped_tables_show_a_std_only_where_the_seeds_differ(tmp_path):
    seed_sweep(tmp_path, [0.8, 0.9])  # same epochs, params and time in both seeds
    write_report([tmp_path], tmp_path)
    text = (tmp_path / "summary.md").read_text()
    [cells] = md_table(text, "## Mean")
    assert "±" in cells["test_acc"] and cells["epochs"] == "3" and cells["params"] == "1,234"
    assert "±" not in cells["train_time_s"] + cells["images_per_s"]
    grouped = pd.read_csv(tmp_path / "summary_grouped.csv")
    assert grouped.epochs_std.tolist() == [0]  # the CSV keeps the number


def test_sources_are_named_by_label_or_name_equals_dir(tmp_path):
    for name, acc in (("10-15-14-763332", 0.8), ("10-20-01-000001", 0.7)):
        make_run(tmp_path / name / "run", [], test_acc=acc)
    dirs = [str(tmp_path / "10-15-14-763332"), str(tmp_path / "10-20-01-000001")]
    assert main([*dirs, "--label", "sgd", "--label", "adam", "--out", str(tmp_path / "a")]) == 0
    assert list(pd.read_csv(tmp_path / "a" / "summary.csv").source) == ["sgd", "adam"]
    assert main([f"sgd={dirs[0]}", f"adam={dirs[1]}", "--out", str(tmp_path / "b")]) == 0
    summary = pd.read_csv(tmp_path / "b" / "summary.csv")
    assert list(summary.source) == ["sgd", "adam"]
    assert f"adam: {dirs[1]}" in (tmp_path / "b" / "summary.md").read_text()  # what each name stands for


def test_a_dir_whose_name_holds_an_equals_sign_is_still_a_dir(tmp_path):
    run = make_run(tmp_path / "optimizer.lr=0.1", ["optimizer.lr=0.1"])
    assert main([str(run), "--out", str(tmp_path / "out")]) == 0


@pytest.mark.parametrize("extra, message", [
    (["--label", "only_one"], "1 --label for 2 DIRs"),
    (["--label", "x", "--label", "x"], "name 'x' is given to 2 DIRs"),
])
def test_bad_source_names_are_one_line_and_exit_2(tmp_path, capsys, extra, message):
    for name in ("a", "b"):
        make_run(tmp_path / name / "run", [])
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_name_equals_dir_twice_with_one_name_is_refused(tmp_path, capsys):
    for name in ("a", "b"):
        make_run(tmp_path / name / "run", [])
    assert main([f"x={tmp_path / 'a'}", f"x={tmp_path / 'b'}", "--out", str(tmp_path / "o")]) == 2
    assert "name 'x' is given to 2 DIRs" in capsys.readouterr().err


def test_distillation_tables_show_the_teacher_and_each_jobs_alpha_and_beta(tmp_path):
    make_run(tmp_path / "distill=soft_target", ["distill=soft_target"], test_acc=0.9, teacher_val_acc=0.95,
             config=SOFT_TARGET)
    make_run(tmp_path / "distill=none", ["distill=none"], test_acc=0.85, config=NO_DISTILL)
    write_report([tmp_path], tmp_path)
    text = (tmp_path / "summary.md").read_text()
    by_kind = {row["distill"]: row for row in md_table(text, "| distill")}
    assert {"teacher_val_acc", "distill.alpha", "distill.beta"} <= set(by_kind["none"])
    assert (by_kind["soft_target"]["distill.alpha"], by_kind["soft_target"]["distill.beta"]) == ("0.1", "0.9")
    assert by_kind["soft_target"]["teacher_val_acc"] == "0.9500"
    assert by_kind["none"]["distill.alpha"] == by_kind["none"]["teacher_val_acc"] == ""


def test_tables_without_distillation_have_no_teacher_column(lr_sweep):
    write_report([lr_sweep], lr_sweep)
    assert not {"teacher_val_acc", "distill.alpha"} & set(md_header((lr_sweep / "summary.md").read_text(),
                                                                    "| optimizer.lr"))


@pytest.mark.parametrize("classes, extra, shown", [
    (4, {}, False), (10, {}, True), (4, {"num_classes": 40}, True)])  # num_classes wins over per_class_acc
def test_top5_is_left_out_where_the_dataset_has_five_classes_or_fewer(tmp_path, classes, extra, shown):
    for lr in ("0.01", "0.1"):
        make_run(tmp_path / f"optimizer.lr={lr}", [f"optimizer.lr={lr}"],
                 per_class_acc={f"c{i}": 0.5 for i in range(classes)}, **extra)
    make_run(tmp_path / "optimizer.lr=9", ["optimizer.lr=9"], status="failed", test_acc=None)  # no class count
    write_report([tmp_path], tmp_path)
    assert ("test_acc_top5" in md_header((tmp_path / "summary.md").read_text(), "| optimizer.lr")) is shown
    assert "test_acc_top5" in pd.read_csv(tmp_path / "summary.csv")  # the CSV keeps every column


def test_top5_stays_where_a_job_of_unknown_class_count_has_one(tmp_path):
    make_run(tmp_path / "a", ["dataset=digits"], per_class_acc={f"c{i}": 0.5 for i in range(4)})
    make_run(tmp_path / "b", ["dataset=cifar100"])  # an older results.json: no num_classes, no per_class_acc
    write_report([tmp_path], tmp_path)
    assert "test_acc_top5" in md_header((tmp_path / "summary.md").read_text(), "| dataset")


def test_tables_show_train_and_total_time_and_say_how_they_differ(tmp_path):
    make_run(tmp_path / "optimizer.lr=0.1", ["optimizer.lr=0.1"], total_time_s=21.5)
    make_run(tmp_path / "optimizer.lr=0.2", ["optimizer.lr=0.2"], total_time_s=19.0)
    write_report([tmp_path], tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary.train_time_s.tolist() == [13.0, 13.0] and summary.total_time_s.tolist() == [21.5, 19.0]
    text = (tmp_path / "summary.md").read_text()
    assert {"train_time_s", "total_time_s"} <= set(md_header(text, "| optimizer.lr"))
    assert "train_time_s: time in training steps" in text and "total_time_s: the whole job" in text
