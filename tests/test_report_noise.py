"""lab.report's noise: Wilson intervals and the two-proportion test against hand computations and published
values, and how summary.md and summary.csv carry them."""
import math

import pandas as pd
import pytest

from lab.noise import two_proportion_p, wilson_interval
from lab.report import write_report
from tests.test_report import make_run
from tests.test_report_tables import md_table

DIGITS_TEST_IMAGES = 359  # a 20% test split of scikit-learn's 1,797 digits


def test_wilson_interval_of_0_9666_on_359_images():
    # By hand, z = 1.96: z^2/n = 3.8416/359 = 0.0107008; centre = (0.9666 + 0.0053504) / 1.0107008 = 0.9616599;
    # half = 1.96 / 1.0107008 * sqrt(0.9666 * 0.0334 / 359 + 3.8416 / (4 * 359^2))
    #      = 1.9392482 * sqrt(8.99288e-5 + 7.4518e-6) = 1.9392482 * 0.0098681 = 0.0191368;
    # so [0.9425231, 0.9807967], not centred on 0.9666 (the normal approximation would give [0.9480, 0.9852]).
    low, high = wilson_interval(0.9666, DIGITS_TEST_IMAGES)
    assert (low, high) == pytest.approx((0.9425231, 0.9807967), abs=1e-6)


@pytest.mark.parametrize("correct, n, expected", [
    (81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)), (1, 29, (0.0061, 0.1718))])
def test_wilson_interval_matches_newcombe_1998_table_ii(correct, n, expected):
    """Newcombe, Statistics in Medicine 17:857-872, Table II, method 3 (score interval without correction)."""
    assert wilson_interval(correct / n, n) == pytest.approx(expected, abs=1e-4)


def test_wilson_interval_at_a_perfect_score_stays_inside_0_1():
    low, high = wilson_interval(1.0, 100)
    assert high == pytest.approx(1.0) and low == pytest.approx(100 / (100 + 1.96**2))  # p = 1: n / (n + z^2)
    with pytest.raises(ValueError, match="no samples"):
        wilson_interval(0.5, 0)


def test_two_proportion_p_against_a_hand_computation():
    # 0.9 vs 0.8 on 100 each: pooled 0.85, se = sqrt(0.85 * 0.15 * (1/100 + 1/100)) = 0.0504975,
    # z = 0.1 / 0.0504975 = 1.980295, two-sided p = erfc(1.980295 / sqrt 2) = 0.047670.
    assert two_proportion_p(0.9, 100, 0.8, 100) == pytest.approx(0.047670, abs=1e-6)
    assert two_proportion_p(0.8, 100, 0.9, 100) == two_proportion_p(0.9, 100, 0.8, 100)
    assert two_proportion_p(0.7, 50, 0.7, 5000) == 1.0 and two_proportion_p(1.0, 10, 1.0, 20) == 1.0
    assert two_proportion_p(0.9, 10_000, 0.89, 10_000) < 0.05 < two_proportion_p(0.9, 359, 0.89, 359)


def lr_runs(root, accs: dict, **extra):
    for lr, acc in accs.items():
        make_run(root / f"optimizer.lr={lr}", [f"optimizer.lr={lr}"], test_acc=acc, **extra)
    return root


def test_jobs_within_noise_of_the_best_are_marked_and_the_csv_keeps_the_numbers(tmp_path):
    # 348/359 best; 345/359 is 0.8 points below (p = 0.54); 300/359 is 13.4 points below (p = 1.6e-9).
    lr_runs(tmp_path, {"0.01": 348 / 359, "0.1": 345 / 359, "1": 300 / 359}, test_images=DIGITS_TEST_IMAGES)
    make_run(tmp_path / "optimizer.lr=5", ["optimizer.lr=5"], status="diverged", test_acc=None)
    write_report([tmp_path], tmp_path)
    text = (tmp_path / "summary.md").read_text()
    rows = md_table(text, "| optimizer.lr")
    assert [row["vs best"] for row in rows] == ["best", "within noise", "-13.4 pts", ""]
    low, high = wilson_interval(348 / 359, DIGITS_TEST_IMAGES)
    assert rows[0]["test_acc"] == f"0.9694 [{low:.3f}, {high:.3f}] ★"
    assert "from the test set of 359 images" in text and text.count("Wilson interval") == 1
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.columns[:7]) == ["optimizer.lr", "status", "test_acc", "test_acc_low", "test_acc_high",
                                         "vs_best", "vs_best_p"]
    assert (summary.test_acc_low[0], summary.test_acc_high[0]) == pytest.approx((low, high))
    assert summary.vs_best_p[1] == pytest.approx(two_proportion_p(345 / 359, 359, 348 / 359, 359))
    assert summary.vs_best_p[2] < 1e-8 and math.isnan(summary.test_acc_low[3])


def test_without_test_images_the_report_says_once_that_it_cannot_know_the_noise(tmp_path):
    lr_runs(tmp_path, {"0.01": 0.97, "0.1": 0.96})  # a results.json from before test_images
    write_report([tmp_path], tmp_path)
    text = (tmp_path / "summary.md").read_text()
    rows = md_table(text, "| optimizer.lr")
    assert text.count("cannot know the test-set size") == 1 and "[" not in "".join(rows[0].values())
    assert [row["vs best"] for row in rows] == ["best", "-1.0 pts"]
    assert pd.read_csv(tmp_path / "summary.csv").test_acc_low.isna().all()


def test_seed_groups_carry_the_interval_of_their_mean(tmp_path):
    for seed, acc in ((1, 0.95), (2, 0.97)):
        make_run(tmp_path / f"seed={seed}", [f"seed={seed}"], test_acc=acc, seed=seed, test_images=1000)
    write_report([tmp_path], tmp_path)
    [group] = md_table((tmp_path / "summary.md").read_text(), "## Mean")
    low, high = wilson_interval(0.96, 1000)  # the seeds share one test set: n stays 1,000, not 2,000
    assert group["test_acc"] == f"0.9600 ± 0.0141 [{low:.3f}, {high:.3f}] ★"
    grouped = pd.read_csv(tmp_path / "summary_grouped.csv")
    assert (grouped.test_acc_mean_low[0], grouped.test_acc_mean_high[0]) == pytest.approx((low, high))
