"""How much of a test accuracy is chance: the test set is a sample of n images, and a different sample of the
same size would score differently by about sqrt(acc * (1 - acc) / n).

wilson_interval is the 95% Wilson score interval (Wilson 1927; Newcombe 1998 compares it with six others): it
stays inside [0, 1] and keeps its coverage near 0 and 1, where acc ± 1.96 * sqrt(acc * (1 - acc) / n) does not.
two_proportion_p is the pooled two-proportion z-test. It treats two jobs' test sets as independent samples;
jobs scored on the same images agree on most of them, so the test is cautious: it says "within noise" more
often than a paired McNemar test on per-image predictions would (results.json does not hold those).
A leaf module: it imports nothing from lab."""
import math

NOISE_LEVEL = 0.05  # two accuracies whose z-test p-value is at least this cannot be told apart
NOISE_COLUMNS = ["test_acc_low", "test_acc_high", "vs_best", "vs_best_p"]
BEST, WITHIN_NOISE = "best", "within noise"


def wilson_interval(correct_fraction: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """(low, high) of the Wilson score interval of a fraction measured on n samples; z=1.96: 95%."""
    if n <= 0:
        raise ValueError(f"n={n}: a fraction of no samples has no interval")
    z2_n = z * z / n
    centre = (correct_fraction + z2_n / 2) / (1 + z2_n)
    half = z / (1 + z2_n) * math.sqrt(correct_fraction * (1 - correct_fraction) / n + z2_n / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(acc_a: float, n_a: int, acc_b: float, n_b: int) -> float:
    """Two-sided p-value that acc_a (of n_a samples) and acc_b (of n_b) are one accuracy measured twice."""
    pooled = (acc_a * n_a + acc_b * n_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:  # both 0 or both 1
        return 1.0
    return math.erfc(abs(acc_a - acc_b) / se / math.sqrt(2))


def versus(acc: float, n: int | None, best_acc: float, best_n: int | None) -> tuple[str, float]:
    """("best" | "within noise" | "-x.x pts", p-value; NaN where a test-set size is not known)."""
    if acc >= best_acc:
        return BEST, math.nan
    p = two_proportion_p(acc, n, best_acc, best_n) if n and best_n else math.nan
    return (WITHIN_NOISE if p >= NOISE_LEVEL else f"{100 * (acc - best_acc):.1f} pts"), p


def noise_columns(table):
    """NOISE_COLUMNS for each job of a table with status, test_acc and test_images columns: the interval of
    its test_acc, and how it stands against the best ok job's (every job tied for the best is "best")."""
    import pandas as pd

    ok = table.test_acc.where(table.status == "ok")
    best = ok.idxmax() if ok.notna().any() else None
    sizes = [None if pd.isna(n) else int(n) for n in table.test_images]
    rows = []
    for (i, job), n in zip(table.iterrows(), sizes):
        low, high = wilson_interval(job.test_acc, n) if n and pd.notna(job.test_acc) else (math.nan, math.nan)
        label, p = "", math.nan
        if best is not None and pd.notna(ok[i]):
            label, p = versus(ok[i], n, ok[best], sizes[table.index.get_loc(best)])
        rows.append(dict(zip(NOISE_COLUMNS, (low, high, label, p))))
    return pd.DataFrame(rows, index=table.index, columns=NOISE_COLUMNS)
