"""A study's findings: the statistics against hand-computed cases, and every kind of verdict on a study dir whose
runs have known per-image predictions, times and loss curves."""
import json
import math
from pathlib import Path

import pytest

from lab.study.claims import findings as claim_findings
from lab.study.claims import study_runs
from lab.study.judging import CONTRADICTED, SUPPORTED, UNRESOLVED, UNTESTABLE, detectable_effect, original_passes
from lab.study.stats import compare_accuracy, compare_ratio, holm, mcnemar_p, paired_interval, t_interval


def test_mcnemar_is_the_exact_binomial_on_the_discordant_images():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 0) == pytest.approx(2 * 0.5 ** 5)  # 0.0625
    assert mcnemar_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # P(X <= 2 | 12, 1/2), both tails
    assert mcnemar_p(3, 3) == 1.0


def test_newcombes_paired_interval_matches_a_hand_computation():
    # n = 100: both right 40, only A 10, only B 5, neither 45 -> A 0.50, B 0.45. By hand: Wilson(0.50) =
    # [0.4038, 0.5962], Wilson(0.45) = [0.3561, 0.5476], phi = (40*45 - 10*5) / sqrt(50*50*45*55) = 0.7035.
    low, high = paired_interval(40, 10, 5, 45)
    assert low == pytest.approx(-0.0246, abs=5e-4) and high == pytest.approx(0.1232, abs=5e-4)
    low, high = paired_interval(90, 0, 0, 10)  # the arms agree on every image: a narrow interval around 0
    assert -0.05 < low < 0 < high < 0.05


def test_holm_steps_down_and_never_decreases():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3 x 0.01, 2 x 0.03, then max(.., 0.04)
    assert holm([0.5]) == [0.5] and holm([0.4, 0.6]) == [0.8, 0.8]


def test_students_interval_over_two_seeds():
    mean, low, high, p = t_interval([0.1, 0.2])
    half = 12.7062 * math.sqrt(0.005) / math.sqrt(2)  # t(0.975, 1) x sd / sqrt(2)
    assert mean == pytest.approx(0.15) and low == pytest.approx(0.15 - half, abs=1e-4) and p > 0.05


def test_with_seeds_the_seeds_and_the_test_sets_noise_add_up():
    """Per seed 0.05 and 0.07 on 100 images. By hand: seed variance ((0.01^2 + 0.01^2) / 1) / 2 = 1e-4; per image
    the seed-averaged difference is 1 on 5 images, 0.5 on 2 and 0 on 93 (mean 0.06), variance 0.0448... / 100;
    Welch-Satterthwaite's degrees of freedom from the two; the t interval of the sum."""
    from scipy.stats import t as student

    a = [True] * 60 + [False] * 40
    b1, b2 = [True] * 55 + [False] * 45, [True] * 53 + [False] * 47
    result = compare_accuracy([(a, b1), (a, b2)])
    per_image = [1.0] * 5 + [0.5] * 2 + [0.0] * 93
    test_var = sum((x - 0.06) ** 2 for x in per_image) / 99 / 100
    seed_var = 1e-4
    df = (seed_var + test_var) ** 2 / (seed_var ** 2 / 1 + test_var ** 2 / 99)
    half = student.ppf(0.975, df) * math.sqrt(seed_var + test_var)
    assert result["estimate"] == pytest.approx(0.06) and result["seeds"] == 2
    assert result["low"] == pytest.approx(0.06 - half) and result["high"] == pytest.approx(0.06 + half)
    assert result["correct_a"] == [60, 60] and result["correct_b"] == [55, 53]


def test_a_ratio_needs_two_seeds():
    assert compare_ratio([(2.0, 1.0)]) is None
    ratio = compare_ratio([(2.0, 1.0), (2.2, 1.0)])
    assert ratio["estimate"] == pytest.approx(math.sqrt(2.0 * 2.2)) and ratio["low"] < 2.0 < ratio["high"]


N = 400


def job(out: Path, step: str, name: str, right: int, seed: int, *, model="resnet10", lr=0.03, status="ok",
        train_time_s=10.0, started_at=0.0, losses=None, milestones=None, offset=0):
    """A finished run with `right` of N test images right (images offset .. offset + right - 1) and a steps.csv."""
    run_dir = out / step / name
    run_dir.mkdir(parents=True)
    config = {"optimizer": {"lr": lr}, "seed": seed, "scheduler": {"milestones": milestones} if milestones else {}}
    record = dict(status=status, test_acc=right / N if status == "ok" else None, test_images=N, seed=seed,
                  train_time_s=train_time_s, started_at=started_at, finished_at=started_at + train_time_s,
                  overrides=[f"model={model}", f"optimizer.lr={lr}", f"seed={seed}"], dataset="digits",
                  choices={"model": model, "optimizer": "sgd"}, config=config)
    (run_dir / "results.json").write_text(json.dumps(record))
    if status == "ok":
        (run_dir / "test_predictions.json").write_text(json.dumps(dict(
            checkpoint="best", label=[0] * N, predicted=[int(not offset <= i < offset + right) for i in range(N)])))
    rows = [f"{step},{step // 5},{loss}" for step, loss in enumerate(losses or [1.0, 0.9, 1.1, 0.8, 1.0, 0.7])]
    (run_dir / "steps.csv").write_text("step,epoch,train_loss\n" + "\n".join(rows) + "\n")


def findings(study_cfg: dict, out: Path, probe=None) -> list[dict]:
    return claim_findings(study_cfg, study_runs(out, ["s"]), probe)


def probe_of(seconds: dict):
    """A time probe that read these seconds per pair of turns for each model: the claims' arithmetic on known
    times (tests/test_time_probe.py times real nets)."""
    def probe(a: dict, b: dict) -> dict:
        return dict(seconds_a=seconds[a["choices"]["model"]], seconds_b=seconds[b["choices"]["model"]],
                    machine="the test's machine")
    return probe


def study(claims: list) -> dict:
    return dict(claims=[dict(id=i + 1, text="a claim", steps=["s"], **c) for i, c in enumerate(claims)])


def verdicts(out, *claims, probe=None) -> list[str]:
    return [f["verdict"] for f in findings(study(list(claims)), out, probe)]


def better(a, b, **extra):
    return dict(compare=[dict(a=a, b=b, asserts="a_better", **extra)])


def test_accuracy_verdicts_on_known_predictions(tmp_path):
    for seed in (1, 2):
        job(tmp_path, "s", f"big,{seed}", 300, seed, model="resnet50", started_at=100 * seed)
        job(tmp_path, "s", f"mid,{seed}", 294 + seed, seed, model="resnet18", started_at=100 * seed + 20, offset=10)
        job(tmp_path, "s", f"small,{seed}", 200, seed, model="resnet10", started_at=100 * seed + 40)
    r50, r18, r10 = {"model": "resnet50"}, {"model": "resnet18"}, {"model": "resnet10"}
    assert verdicts(tmp_path, better(r50, r10), better(r10, r50), better(r50, r18)) == \
        [SUPPORTED, CONTRADICTED, UNRESOLVED]  # 300 vs 200 of 400 either way; 300 vs 295-296, shifted: noise
    close = dict(compare=[dict(a=r50, b=r18, asserts="a_close", margin=0.1)])
    far = dict(compare=[dict(a=r10, b=r50, asserts="a_close", margin=0.1)])
    not_worse = dict(compare=[dict(a=r18, b=r50, asserts="a_not_worse", margin=0.005)])
    assert verdicts(tmp_path, close, far, not_worse) == [SUPPORTED, CONTRADICTED, UNRESOLVED]
    mixed = dict(compare=better(r10, r50)["compare"] + better(r50, {"model": "resnet34"})["compare"])
    assert verdicts(tmp_path, mixed) == [CONTRADICTED]  # a contradiction stands whatever else lacks runs
    loose = findings(study([better({"optimizer": "sgd"}, r10)]), tmp_path)[0]  # every job of the seed matches
    assert loose["verdict"] == UNTESTABLE and "several jobs" in loose["why"]
    missing = better(r50, {"model": "resnet34"})
    result = findings(study([missing]), tmp_path)[0]
    assert result["verdict"] == UNTESTABLE and "no seed has a finished run of both arms" in result["why"]


def test_holm_counts_every_test_of_a_claim_margin_tests_included(tmp_path):
    """Alone, 207 vs 200 of 400 (discordant 7:0, p 0.016) is significant; with 9 others its Holm p is not."""
    job(tmp_path, "s", "a", 207, 1, model="resnet18")
    job(tmp_path, "s", "b", 200, 1, model="resnet10")
    one = better({"model": "resnet18"}, {"model": "resnet10"})
    ten = dict(compare=one["compare"] * 10)
    assert verdicts(tmp_path, one, ten) == [SUPPORTED, UNRESOLVED]
    assert findings(study([ten]), tmp_path)[0]["comparisons"][0]["p_holm"] == pytest.approx(
        min(1, 10 * mcnemar_p(7, 0)))
    # a margin test is a test too (one-sided against -m): with it beside the "higher?" test, both are corrected
    mixed = dict(compare=one["compare"] + [dict(a={"model": "resnet18"}, b={"model": "resnet10"},
                                               asserts="a_not_worse", margin=0.01)])
    higher, not_worse = findings(study([mixed]), tmp_path)[0]["comparisons"]
    assert higher["p_holm"] == pytest.approx(holm([higher["p_test"], not_worse["p_test"]])[0])
    assert not_worse["p_holm"] == pytest.approx(holm([higher["p_test"], not_worse["p_test"]])[1])
    assert not_worse["p_test"] < higher["p_test"]  # +1.75 pts is further from -1 than from 0


def test_time_and_oscillation_verdicts(tmp_path):
    steady, shaky = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.49, 0.48, 0.47, 0.46], [1.0, 0.9, 0.8, 0.7, 0.6, 0.9, 0.3, 0.9,
                                                                                0.2, 0.8]
    for seed in (1, 2):
        job(tmp_path, "s", f"slow,{seed}", 200, seed, model="resnet50", losses=steady, milestones=[1])
        job(tmp_path, "s", f"fast,{seed}", 200, seed, model="resnet10", losses=shaky)
    r50, r10 = {"model": "resnet50"}, {"model": "resnet10"}
    probe = probe_of({"resnet50": [4.0, 4.1, 3.9, 4.2], "resnet10": [1.0, 1.0, 1.1, 1.0]})
    assert verdicts(tmp_path, dict(compare=[dict(a=r50, b=r10, asserts="a_slower", factor=2.0)]),
                    dict(compare=[dict(a=r50, b=r10, asserts="a_similar_time", factor=1.1)]),
                    dict(compare=[dict(a=r50, b=r10, asserts="a_steadier")]), probe=probe) == \
        [SUPPORTED, CONTRADICTED, SUPPORTED]


def test_a_time_ratio_comes_from_the_probes_pairs_not_from_the_runs_times(tmp_path):
    """The runs' own times (40 s against 10 s) say x4; the probe's alternating pairs say about x1.2, and are what
    the claim is judged by, with an interval over the pairs and the machine they were measured on."""
    for seed in (1, 2):
        job(tmp_path, "s", f"slow,{seed}", 200, seed, model="resnet50", train_time_s=40.0)
        job(tmp_path, "s", f"fast,{seed}", 200, seed, model="resnet10", train_time_s=10.0)
    a_s, b_s = [1.2, 1.26, 1.14, 1.2], [1.0, 1.05, 0.95, 1.0]
    slower = study([dict(compare=[dict(a={"model": "resnet50"}, b={"model": "resnet10"}, asserts="a_slower",
                                       factor=2.0)])])
    row = findings(slower, tmp_path, probe_of({"resnet50": a_s, "resnet10": b_s}))[0]["comparisons"][0]
    expected = compare_ratio(list(zip(a_s, b_s)))
    assert row["estimate"] == pytest.approx(1.2) and (row["low"], row["high"]) == pytest.approx(
        (expected["low"], expected["high"]))
    assert row["pairs"] == 4 and row["machine"] == "the test's machine" and row["verdict"] == CONTRADICTED
    without = findings(slower, tmp_path)[0]  # a report with no probe: no time verdict from the runs' times
    assert without["verdict"] == UNTESTABLE and "time probe" in without["why"]


def test_a_diverged_run_counts_as_wrong_on_every_image_and_a_copy_counts_once(tmp_path):
    job(tmp_path, "s", "ok", 300, 1, model="resnet10")
    job(tmp_path, "s", "nan", 0, 1, model="resnet50", status="diverged")
    copy = tmp_path / "s" / "copy"
    copy.mkdir()
    record = json.loads((tmp_path / "s" / "ok" / "results.json").read_text())
    (copy / "results.json").write_text(json.dumps(dict(record, same_as="s/ok")))
    (copy / "test_predictions.json").write_text((tmp_path / "s" / "ok" / "test_predictions.json").read_text())
    result = findings(study([better({"model": "resnet10"}, {"model": "resnet50"})]), tmp_path)[0]
    assert result["verdict"] == SUPPORTED and result["comparisons"][0]["estimate"] == pytest.approx(0.75)
    assert result["comparisons"][0]["seeds"] == 1  # the copy is the same run, not a second seed


def test_the_findings_table_opens_the_report_with_its_rules(tmp_path):
    from lab.study.main import plan_study
    from lab.study.plan import Step
    from lab.study.report import write_study_report

    study_cfg, _, _, _ = plan_study(["study.steps=[t4]"])
    for name, model, right in (("model=resnet10", "resnet10", 200), ("model=resnet18", "resnet18", 300),
                               ("model=resnet50", "resnet50", 250)):
        job(tmp_path, "t4", name, right, 42, model=model)
    report = write_study_report(study_cfg, tmp_path, [Step("t4", study_cfg["plan"]["t4"])], {}, [], "cmd")
    claim5 = next(f for f in report["findings"] if f["id"] == 5)
    assert [c["verdict"] for c in claim5["comparisons"]] == [SUPPORTED, CONTRADICTED, UNTESTABLE]
    text = (tmp_path / "REPORT.md").read_text()
    assert text.index("## Findings") < text.index("## t4.") and "How each verdict is reached" in text
    assert "On digits, not the original's setting (CIFAR-100" in text
    assert "| **5** | **ResNet50 > ResNet18 > ResNet10" in text
    # the claim's row counts its parts; each sub-claim has a row of its own that says what it asserts
    assert "**contradicted** (1 supported, 1 contradicted, 1 not testable)" in text
    assert "| 5a | ResNet18 vs ResNet10 (higher?) | 0.6828 vs 0.6629 | +25.0 pts [+20.7, +29.2], 1 seed |" in text
    assert "| 5c | ResNet50 vs ResNet10 (time over x2?); bound: lab's reading of 'far more time': over 2x (the " \
        "original's is 32x) | 58943 s vs 1829 s (x32.23) |" in text  # each bound says where it comes from
    # the summary figure of every measured sub-claim opens the Findings
    assert "![Every sub-claim's difference and verdict](findings.png)" in text
    assert (tmp_path / "findings.png").read_bytes().startswith(b"\x89PNG")
    # the seeds the original's differences would need: one seed of these runs has no spread to scale from
    assert "| 5a | 2.0 pts | 6.0 pts at 1 seed | a pilot of one seed cannot tell (no seed spread) |" in text
    # on digits no row is on the original's test set: its "vs" column would be empty in every row, so it is left out
    assert "vs the original report" not in text and "| the original report |" in text
    # these runs predate results.json's image_shape: the probe cannot rebuild their batch, and says so
    assert "no image_shape" in claim5["comparisons"][2]["why"] and "Speed drift" not in text


def test_the_originals_own_numbers_face_the_same_test():
    """The original report: Adagrad 0.6237 against SGD's 0.6629 is 3.9 points apart, so "within 2 points" fails on its
    own numbers; ResNet18's +2.0 points on 10,000 images passes "higher" (z ~ 3); its times pass as bare ratios."""
    def passes(a, b, asserts, **bound):
        return original_passes(dict(a={}, b={}, asserts=asserts, original=dict(a=a, b=b), **bound), 10000)
    assert passes(0.6237, 0.6629, "a_close", margin=0.02) is False
    assert passes(0.6828, 0.6629, "a_better") is True and passes(0.6629, 0.6828, "a_better") is False
    assert passes(0.6500, 0.6490, "a_better") is False  # 0.1 points on 10,000 images is noise
    assert passes(58943, 1829, "a_slower", factor=2.0) is True
    assert passes(1995, 1829, "a_similar_time", factor=1.1) is True and passes(2100, 1829, "a_similar_time",
                                                                               factor=1.1) is False
    assert original_passes(dict(a={}, b={}, asserts="a_better"), 10000) is None  # the original gave no numbers


def test_the_detectable_effect_grows_with_the_noise():
    """80% power at 5%, two-sided: (t(0.975, df) + t(0.8, df)) x se; one seed uses the normal's 1.96 + 0.84."""
    from scipy.stats import t as student

    row = dict(asserts="a_better", se=0.01, df=4.0)
    assert detectable_effect(row) == pytest.approx((student.ppf(0.975, 4) + student.ppf(0.8, 4)) * 0.01)
    assert detectable_effect(dict(row, df=None)) == pytest.approx(2.8016 * 0.01, abs=1e-5)
    assert detectable_effect(dict(asserts="a_slower", se=0.05, df=5.0)) > 1  # a ratio: exp of the log effect


def test_a_settings_interval_holds_its_seeds_spread_as_well_as_the_test_sets_noise():
    """Seeds at 0.70 and 0.80 on 10,000 images: Wilson's interval of the mean (±0.8 points) would hide a 10-point
    spread; the seeds' interval (t at 1 degree of freedom) holds both seeds. The figures draw this one."""
    from lab.noise import wilson_interval
    from lab.study.figures import interval_of
    from lab.study.stats import seeds_interval

    low, high = seeds_interval([0.70, 0.80], 10000)
    assert low < 0.70 and high > 0.80
    w_low, w_high = wilson_interval(0.75, 10000)
    assert w_low > 0.74 and w_high < 0.76  # the test set's noise alone
    assert seeds_interval([0.75], 10000) == pytest.approx(wilson_interval(0.75, 10000))  # one seed: Wilson's
    row = dict(test_acc=0.75, interval=[w_low, w_high], seeds_interval=[low, high])
    assert interval_of(row) == pytest.approx((0.75 - low, high - 0.75))


def test_a_step_on_drawn_images_says_synthetic_in_its_section_and_its_claims_row(tmp_path):
    from lab.study.main import plan_study
    from lab.study.plan import Step
    from lab.study.report import write_study_report

    study_cfg, _, _, _ = plan_study(["study.steps=[t6]", "study.signs_root=/signs", "study.plan.t6.synthetic=true"])
    job(tmp_path, "t6", "augment.flip=false", 300, 42)
    write_study_report(study_cfg, tmp_path, [Step("t6", study_cfg["plan"]["t6"])], {}, [], "cmd")
    text = (tmp_path / "REPORT.md").read_text()
    assert "## t6. Task 6: traffic signs (an ImageFolder, 32x32), random flip and crop on and off (synthetic images)" \
        in text and "Synthetic images: this step's folder was drawn" in text
    assert "raises accuracy on the traffic signs** (tested on synthetic images: t6)" in text
    assert "synthetic" not in text[text.index("| **8**"):text.index("| **9**")]  # digits are real images


def test_a_lower_loss_does_not_read_as_steadier(tmp_path):
    """The oscillation is of relative changes: the same curve at a tenth of the loss oscillates as much."""
    from lab.study.claims import oscillation

    shaky = [1.0, 0.9, 1.1, 0.8, 1.0, 0.7] * 2
    job(tmp_path, "s", "high", 200, 1, losses=shaky)
    job(tmp_path, "s", "low", 200, 2, losses=[v / 10 for v in shaky])
    high, low = (oscillation(run, 0) for run in sorted(study_runs(tmp_path, ["s"]), key=lambda r: r["job"]))
    assert high == pytest.approx(low) and high > 0.1


def test_the_seeds_an_effect_needs_scale_the_seeds_noise_and_keep_the_test_sets():
    """One seed's difference varies by 1.5 points (variance 2.25e-4) and the test set adds 0.3 points (9e-6) that
    more seeds do not remove: 2 points need 7 seeds, 5 points 3, and a tenth of a point is below the test set's own
    noise at any number of seeds. An effect the run already detects needs no more seeds than it had."""
    from lab.study.stats import detectable, seeds_needed, welch_df

    assert seeds_needed(2.25e-4, 9e-6, 10000, 0.02) == 7 and seeds_needed(2.25e-4, 9e-6, 10000, -0.05) == 3
    assert seeds_needed(2.25e-4, 9e-6, 10000, 0.001) is None
    seed_var, k = 2.25e-4 / 7, 7
    assert detectable((seed_var + 9e-6) ** 0.5, welch_df(seed_var, 9e-6, k, 10000)) <= 0.02  # what 7 means
    at_three = detectable((2.25e-4 / 3 + 9e-6) ** 0.5, welch_df(2.25e-4 / 3, 9e-6, 3, 10000))
    assert seeds_needed(2.25e-4, 9e-6, 10000, at_three) <= 3  # the "detectable here" column and this one agree
