"""A study's plan, frozen before its runs: REPORT.md names the plan's commit and lists every command-line change
against the plan and every change to the plan made after the first job started."""
import os
import subprocess
import time

import pytest

from lab.study.deviations import command_deviations, plan_history
from tests.test_study_claims import job

STUDY = """name: mine
title: A study of the user's own
planned: [dataset=digits, trainer.max_epochs=3, "seed=1,2"]
plan:
  s:
    title: "two lrs"
    args: ["optimizer.lr=0.01,0.1"]
claims:
  - id: 1
    text: "lr 0.1 beats lr 0.01"
    steps: [s]
    compare:
      - {{a: {{optimizer.lr: 0.1}}, b: {{optimizer.lr: 0.01}}, asserts: {asserts}}}
"""


def commit(repo, message: str, when: float) -> None:
    stamp = f"@{int(when)} +0000"
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", message], cwd=repo, check=True, env=env)


def test_a_command_line_against_the_plan_is_listed_change_by_change():
    planned = ["dataset=fashion_mnist", "trainer.max_epochs=5", "seed=1,2,3"]
    first = ["study.dir=/x", "dataset=fashion_mnist", "dataset.root=/data", "trainer.max_epochs=5", "seed=1,2,3"]
    later = ["study.dir=/x", "dataset=fashion_mnist", "trainer.max_epochs=5", "seed=1,2,3,4,5",
             "dataset.batch_size=64"]
    assert command_deviations(planned, [first, first]) == []  # where it ran (dirs, roots) is no deviation
    lines = command_deviations(planned, [first, later])
    assert lines == ["seed=1,2,3,4,5 (the plan: seed=1,2,3): command 2 of 2",
                     "dataset.batch_size=64 (not in the plan): command 2 of 2"]
    assert command_deviations(planned, [later, later]) == ["seed=1,2,3,4,5 (the plan: seed=1,2,3): commands 1, 2 of 2",
                                                         "dataset.batch_size=64 (not in the plan): commands 1, 2 of 2"]
    assert command_deviations(planned, [["trainer.max_epochs=5", "seed=1,2,3"]]) == [
        "left out the plan's dataset=fashion_mnist: command 1 of 1"]
    assert "fixes no command line" in command_deviations(None, [first])[0]


def test_a_plan_changed_after_the_runs_began_is_a_deviation_in_the_report(tmp_path):
    from lab.study.main import plan_study
    from lab.study.plan import Step
    from lab.study.report import write_study_report

    repo = tmp_path / "conf"
    (repo / "study").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "study" / "mine.yaml").write_text(STUDY.format(asserts="a_better"))
    frozen_at = time.time() - 3600
    commit(repo, "the plan", frozen_at)
    out = tmp_path / "study"
    for seed in (1, 2):  # the runs start ten minutes after the plan was committed
        job(out, "s", f"optimizer.lr=0.1,seed={seed}", 300, seed, lr=0.1, started_at=frozen_at + 600 + seed)
        job(out, "s", f"optimizer.lr=0.01,seed={seed}", 250, seed, lr=0.01, started_at=frozen_at + 700 + seed)
    assert plan_history(repo / "study" / "mine.yaml", frozen_at + 601)[1] == []

    (repo / "study" / "mine.yaml").write_text(STUDY.format(asserts="a_not_worse, margin: 0.5, margin_from: mine"))
    commit(repo, "a wider margin, after seeing the runs", frozen_at + 1800)
    argv = ["--config-dir", str(repo), "study=mine", "dataset=digits", "trainer.max_epochs=3", "seed=1,2,3"]
    study, _, _, _ = plan_study(argv)
    command_log = [dict(argv=argv, started_at=0.0, ended_at=1.0)]
    write_study_report(study, out, [Step("s", study["plan"]["s"])], {}, command_log, "cmd")
    text = (out / "REPORT.md").read_text()
    section = text[text.index("## Deviations from the plan"):text.index("## Findings")]
    frozen = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=repo, capture_output=True,
                            text=True).stdout.strip()
    assert f"Plan: mine.yaml at git commit {frozen[:12]}" in section  # the plan as it was when the runs began
    assert "the plan was changed after the first job started" in section and "a wider margin" in section
    assert "seed=1,2,3 (the plan: seed=1,2): command 1 of 1" in section and "study=mine" not in section


def test_a_margin_needs_its_source_and_without_one_the_sub_claim_tests_a_direction(tmp_path):
    """A margin or time factor the original never gave is refused unless the plan says where it comes from; the
    lab's report's 'close' (no number) is tested for its direction only, and the Findings row says so."""
    from lab.errors import ConfigError
    from lab.study.main import plan_study
    from lab.study.plan import check_claim

    plan = {"s": {}}
    claim = dict(id=1, text="t", steps=["s"], compare=[dict(a={"x": 1}, b={"x": 2}, asserts="a_close", margin=0.01)])
    with pytest.raises(ConfigError, match="margin_from: where its margin or factor comes from"):
        check_claim(claim, plan)
    claim["compare"][0]["margin_from"] = "the original's 1.4-point gap"
    check_claim(claim, plan)
    study, _, _, _ = plan_study([])
    close = next(c for c in study["claims"] if c["id"] == 6)["compare"]
    assert [c["asserts"] for c in close] == ["a_better"] and "no number" in close[0]["margin_from"]
