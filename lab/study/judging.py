"""A sub-claim's verdict from its measured comparison, a claim's from its sub-claims', and whether the original
report's own numbers pass the same test.

Every sub-claim is a test with a p-value for what it asserts: a_better and a_steadier two-sided against no
difference; a margin (a_not_worse, a_close) or a factor (a_slower, a_similar_time) by one-sided tests against the
bound, two of them for "within" (TOST, the larger p). A claim's p-values are corrected together with Holm's method,
and a sub-claim is supported when its corrected p is under LEVEL; it is contradicted when its 95% interval lies on
the wrong side (for a_better and a_steadier: significant the other way)."""
import math

from lab.errors import ConfigError
from lab.study.stats import LEVEL, detectable, holm, one_sided_p

SUPPORTED, CONTRADICTED, UNRESOLVED, UNTESTABLE = ("supported", "contradicted", "not resolved at this noise",
                                                   "not testable with these steps")
ACCURACY, RATIOS = ("a_better", "a_close", "a_not_worse"), ("a_slower", "a_similar_time", "a_steadier")
ASSERTS = ACCURACY + RATIOS


def check_comparison(comparison: dict, where: str) -> None:
    """A comparison of a study's claim, as the plan gives it: arms, what it asserts, its bound and the bound's
    source, the original's numbers. A ConfigError names what is wrong."""
    kind = comparison.get("asserts")
    if kind not in ASSERTS or not isinstance(comparison.get("a"), dict) or not isinstance(comparison.get("b"), dict):
        raise ConfigError(f"{where}: each comparison is {{a: {{key: value}}, b: {{key: value}}, asserts: one "
                          f"of {', '.join(ASSERTS)}}}, not {comparison}")
    if kind in ("a_close", "a_not_worse") and not comparison.get("margin"):
        raise ConfigError(f"{where}: {kind} needs a margin (accuracy, e.g. 0.02)")
    if kind == "a_similar_time" and not (comparison.get("factor") or 0) > 1:
        raise ConfigError(f"{where}: a_similar_time needs a factor > 1 (a time ratio, e.g. 1.1)")
    bounded = kind in ("a_close", "a_not_worse", "a_similar_time") or \
        (kind == "a_slower" and (comparison.get("factor") or 1) != 1)
    if bounded and not comparison.get("margin_from"):
        raise ConfigError(f"{where}: {kind} needs margin_from: where its margin or factor comes from (a number in "
                          f"the original); where the original gives none, test the direction only (a_better)")
    original = comparison.get("original")
    if original is not None and not (isinstance(original, dict) and all(
            isinstance(original.get(arm), (int, float)) and (0 <= original[arm] <= 1 if kind in ACCURACY
                                                             else original[arm] > 0) for arm in ("a", "b"))):
        raise ConfigError(f"{where}: a comparison's original is the original report's numbers for its arms, "
                          f"{{a: 0.649, b: 0.6629}} (accuracies in [0, 1], or times in s > 0), not {original}")


def bounds(row: dict) -> tuple[float, float]:
    """(estimate, bound) on the scale the test is run on: accuracy differences as they are, ratios as logs."""
    if row["asserts"] in ACCURACY:
        return row["estimate"], row.get("margin") or 0.0
    return math.log(row["estimate"]), math.log(row.get("factor") or 1.0)


def hypothesis_p(row: dict) -> float:
    """The p-value of the sub-claim's own test (before Holm)."""
    kind = row["asserts"]
    if kind in ("a_better", "a_steadier"):
        return row["p"]
    estimate, bound = bounds(row)
    se, df = row["se"], row["df"]
    if kind == "a_not_worse":
        return one_sided_p(estimate, -bound, se, df, above=True)
    if kind == "a_slower":
        return one_sided_p(estimate, bound, se, df, above=True)
    return max(one_sided_p(estimate, -bound, se, df, above=True), one_sided_p(estimate, bound, se, df, above=False))


def judge(row: dict) -> str:
    """A measured sub-claim's verdict from its Holm-corrected p (p_holm) and its 95% interval."""
    kind, low, high, estimate = row["asserts"], row["low"], row["high"], row["estimate"]
    if kind in ("a_better", "a_steadier"):
        toward = estimate > 0 if kind == "a_better" else estimate < 1
        return UNRESOLVED if row["p_holm"] >= LEVEL else SUPPORTED if toward else CONTRADICTED
    if row["p_holm"] < LEVEL:
        return SUPPORTED
    m = row.get("margin") or 0.0
    f = row.get("factor") or 1.0
    outside = {"a_not_worse": high < -m, "a_close": high < -m or low > m, "a_slower": high < f,
               "a_similar_time": high < 1 / f or low > f}[kind]
    return CONTRADICTED if outside else UNRESOLVED


def detectable_effect(row: dict) -> float:
    """The smallest true difference (accuracy) or ratio (times, oscillation) these seeds or pairs detect with 80%
    power at LEVEL, two-sided."""
    effect = detectable(row["se"], row["df"])
    return effect if row["asserts"] in ACCURACY else math.exp(effect)


def judge_claim(rows: list[dict]) -> tuple[str, dict]:
    """Corrects the measured rows' p-values together (Holm), gives each row its verdict; -> (the claim's verdict,
    {verdict: count}). A claim is contradicted when any sub-claim is, else not testable when one lacks its runs,
    else supported when every one is, else not resolved; the counts show what it summarises."""
    tested = [r for r in rows if "verdict" not in r]
    for row in tested:
        row["p_test"] = hypothesis_p(row)
    for row, adjusted in zip(tested, holm([r["p_test"] for r in tested])):
        row["p_holm"] = adjusted
        row["verdict"], row["detectable"] = judge(row), detectable_effect(row)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (SUPPORTED, CONTRADICTED, UNRESOLVED, UNTESTABLE)}
    if counts[CONTRADICTED]:
        return CONTRADICTED, counts
    if counts[UNTESTABLE]:
        return UNTESTABLE, counts
    return (SUPPORTED if counts[SUPPORTED] == len(rows) else UNRESOLVED), counts


def original_passes(comparison: dict, test_images: int | None) -> bool | None:
    """Whether the original report's numbers for the two arms (comparison["original"]: {a, b}, accuracies or
    times) pass the sub-claim's test: accuracies as two independent proportions on `test_images` images, times as
    the bare ratio (the original gives one run each, no spread). None without the numbers."""
    numbers, kind = comparison.get("original"), comparison["asserts"]
    if not numbers or numbers.get("a") is None or numbers.get("b") is None or kind == "a_steadier":
        return None
    a, b = float(numbers["a"]), float(numbers["b"])
    if kind in ("a_slower", "a_similar_time"):
        f = comparison.get("factor") or 1.0
        return a / b > f if kind == "a_slower" else 1 / f < a / b < f
    if not test_images:
        return None
    se = math.sqrt(a * (1 - a) / test_images + b * (1 - b) / test_images)
    row = dict(asserts=kind, estimate=a - b, margin=comparison.get("margin"), se=se, df=None,
               p=2 * one_sided_p(abs(a - b), 0.0, se, None, above=True))
    return hypothesis_p(row) < LEVEL and (kind != "a_better" or a > b)
