"""The statistics behind a study's findings: two arms scored on the same test images, compared image by image.

One run per arm: McNemar's exact test on the images only one arm gets right, and Newcombe's interval for a
difference of paired proportions (Newcombe 1998, method 10: Wilson intervals of each accuracy, joined through the
correlation of the pairs). Several seeds: the difference is taken per seed; its variance is the seeds' (training
noise, over k seeds) plus the test set's in the mean (the seeds share one test set, so their spread alone would
miss it: the per-image difference averaged over the seeds, over n images), and its interval and p-value are
Student's t with Welch-Satterthwaite's degrees of freedom. A claim that rests on several comparisons corrects their
p-values with Holm's step-down method. scipy (through scikit-learn) supplies the binomial and t distributions."""
import math
import statistics

from lab.noise import wilson_interval

LEVEL = 0.05  # two-sided; the intervals are 95%


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: of the images exactly one arm gets right, `only_a` go to A and `only_b` to
    B; under no difference each is a fair coin's toss."""
    from scipy.stats import binomtest

    discordant = only_a + only_b
    return 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)


def paired_interval(both: int, only_a: int, only_b: int, neither: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of accuracy(A) - accuracy(B) on the same n images (Newcombe's method 10)."""
    n = both + only_a + only_b + neither
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    low_a, high_a = wilson_interval(p_a, n, z)
    low_b, high_b = wilson_interval(p_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    below = (p_a - low_a) ** 2 - 2 * phi * (p_a - low_a) * (high_b - p_b) + (high_b - p_b) ** 2
    above = (high_a - p_a) ** 2 - 2 * phi * (high_a - p_a) * (p_b - low_b) + (p_b - low_b) ** 2
    return p_a - p_b - math.sqrt(max(below, 0.0)), p_a - p_b + math.sqrt(max(above, 0.0))


def counts(correct_a: list[bool], correct_b: list[bool]) -> tuple[int, int, int, int]:
    """(both right, only A, only B, neither) over the same images."""
    pairs = list(zip(correct_a, correct_b))
    only_a, only_b = sum(a and not b for a, b in pairs), sum(b and not a for a, b in pairs)
    both = sum(a and b for a, b in pairs)
    return both, only_a, only_b, len(pairs) - both - only_a - only_b


def quantile(prob: float, df: float | None) -> float:
    """Student's t quantile at df degrees of freedom; the normal's when df is None (one seed: McNemar's world)."""
    from scipy.stats import norm
    from scipy.stats import t as student

    return float(norm.ppf(prob) if df is None else student.ppf(prob, df))


def one_sided_p(estimate: float, bound: float, se: float, df: float | None, above: bool) -> float:
    """p of the hypothesis that the true value is on the wrong side of `bound`: at or below it when `above` (the
    claim: above the bound), at or above it otherwise. One half of a TOST."""
    from scipy.stats import norm
    from scipy.stats import t as student

    if se == 0:
        return 0.0 if (estimate > bound if above else estimate < bound) else 1.0
    z = (estimate - bound) / se if above else (bound - estimate) / se
    return float(norm.sf(z) if df is None else student.sf(z, df))


def detectable(se: float, df: float | None, power: float = 0.8) -> float:
    """The smallest true effect a two-sided test at LEVEL finds with this power, at this standard error."""
    return (quantile(1 - LEVEL / 2, df) + quantile(power, df)) * se


def t_test(mean: float, variance: float, df: float) -> tuple[float, float, float, float]:
    """(mean, low, high, p): the 95% interval of a mean with this variance, and its two-sided p against 0."""
    from scipy.stats import t as student

    if variance == 0:  # no spread at all to scale by
        return mean, mean, mean, (1.0 if mean == 0 else 0.0)
    se = math.sqrt(variance)
    half = float(student.ppf(1 - LEVEL / 2, df)) * se
    return mean, mean - half, mean + half, 2 * float(student.sf(abs(mean) / se, df))


def t_interval(values: list[float]) -> tuple[float, float, float, float]:
    """(mean, low, high, p): Student's 95% interval of the mean of `values` and its p-value against 0."""
    k = len(values)
    return t_test(statistics.fmean(values), statistics.variance(values) / k, k - 1)


def compare_accuracy(pairs: list[tuple[list[bool], list[bool]]]) -> dict:
    """A minus B over matched runs (one (correct_a, correct_b) pair of per-image lists per seed, all on the same
    images): the difference, its 95% interval, its p-value, the correct counts and how many seeds."""
    n, k = len(pairs[0][0]), len(pairs)
    per_seed = [counts(a, b) for a, b in pairs]
    diffs = [(only_a - only_b) / n for _, only_a, only_b, _ in per_seed]
    result = dict(seeds=k, n=n, correct_a=[sum(a) for a, _ in pairs], correct_b=[sum(b) for _, b in pairs])
    if k == 1:
        both, only_a, only_b, neither = per_seed[0]
        low, high = paired_interval(both, only_a, only_b, neither)
        se = (high - low) / (2 * quantile(1 - LEVEL / 2, None))  # the interval's, read back as a normal's
        return dict(result, estimate=diffs[0], low=low, high=high, p=mcnemar_p(only_a, only_b), se=se, df=None)
    per_image = [sum(int(a[j]) - int(b[j]) for a, b in pairs) / k for j in range(n)]
    one_seed_var, test_var = statistics.variance(diffs), statistics.variance(per_image) / n
    seed_var, df = one_seed_var / k, welch_df(one_seed_var / k, test_var, k, n)
    mean, low, high, p = t_test(statistics.fmean(diffs), seed_var + test_var, df)
    return dict(result, estimate=mean, low=low, high=high, p=p, se=math.sqrt(seed_var + test_var), df=df,
                one_seed_var=one_seed_var, test_var=test_var)


def welch_df(seed_var: float, test_var: float, k: int, n: int) -> float:
    """Welch-Satterthwaite's degrees of freedom of a mean whose variance is the seeds' part (k seeds) plus the
    test set's (n images)."""
    parts = (seed_var ** 2 / (k - 1) if seed_var else 0) + (test_var ** 2 / (n - 1) if test_var else 0)
    return (seed_var + test_var) ** 2 / parts if parts else n - 1


def compare_ratio(pairs: list[tuple[float, float]]) -> dict | None:
    """A / B (times, loss oscillations) over matched runs, on a log scale: the geometric mean ratio and its 95%
    interval over the seeds. None with one run per arm: no spread to judge a ratio by."""
    if len(pairs) < 2 or any(a <= 0 or b <= 0 for a, b in pairs):
        return None
    logs = [math.log(a / b) for a, b in pairs]
    mean, low, high, p = t_interval(logs)
    return dict(seeds=len(pairs), estimate=math.exp(mean), low=math.exp(low), high=math.exp(high), p=p,
                se=math.sqrt(statistics.variance(logs) / len(logs)), df=len(logs) - 1)  # se of the log ratio


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the smallest p times m, the next times m - 1, ...,
    never below the one before it."""
    m, adjusted, running = len(p_values), [0.0] * len(p_values), 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def seeds_interval(accuracies: list[float], n: int) -> tuple[float, float]:
    """95% interval of a setting's mean accuracy over its seeds that holds both noises: the seeds' spread (training
    noise) and the test set's (n images), Student's t at k - 1 degrees of freedom; Wilson's for one seed."""
    k, mean = len(accuracies), statistics.fmean(accuracies)
    if k < 2:
        return wilson_interval(mean, n)
    half = quantile(1 - LEVEL / 2, k - 1) * math.sqrt(statistics.variance(accuracies) / k + mean * (1 - mean) / n)
    return max(0.0, mean - half), min(1.0, mean + half)


MAX_SEEDS = 20


def seeds_needed(one_seed_var: float, test_var: float, n: int, effect: float, power: float = 0.8) -> int | None:
    """The fewest seeds whose paired test (compare_accuracy) would detect `effect` with this power at LEVEL, from a
    run's variance of one seed's difference and its test-set variance. Only the seeds' part shrinks with more
    seeds: the test set is the same images every time, so its part is kept as measured. None beyond MAX_SEEDS."""
    for k in range(2, MAX_SEEDS + 1):
        seed_var = one_seed_var / k
        if detectable(math.sqrt(seed_var + test_var), welch_df(seed_var, test_var, k, n), power) <= abs(effect):
            return k
    return None
