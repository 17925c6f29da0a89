"""The statistics behind a study's findings: two arms scored on the same test images, compared image by image.

One run per arm: McNemar's exact test on the images only one arm gets right, and Newcombe's interval for a
difference of paired proportions (Newcombe 1998, method 10: Wilson intervals of each accuracy, joined through the
correlation of the pairs). Several seeds: the difference is taken per seed; its interval is Student's t over the
seeds (training noise) joined with the interval of the test set's noise in the mean (the seeds share one test
set, so their spread alone would miss it), and its p-value is the larger of the two tests'. A claim that rests on
several comparisons corrects their p-values with Holm's step-down method. scipy (through scikit-learn) supplies the
binomial and t distributions."""
import math

from lab.noise import wilson_interval

LEVEL = 0.05  # two-sided; the intervals are 95%


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: of the images exactly one arm gets right, `only_a` go to A and `only_b` to
    B; under no difference each is a fair coin's toss."""
    from scipy.stats import binomtest

    discordant = only_a + only_b
    return 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5).pvalue)


def paired_interval(both: int, only_a: int, only_b: int, neither: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of accuracy(A) - accuracy(B) on the same n images (Newcombe's method 10; arms that agree on
    every image get the point 0: the sample shows no difference at all)."""
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


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high, p): Student's 95% interval of the mean and its two-sided p-value against 0."""
    from scipy.stats import t as student

    k, mean = len(values), sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    if sd == 0:  # every seed agrees exactly: no spread to scale by
        return mean, mean, mean, (1.0 if mean == 0 else 0.0)
    half = float(student.ppf(1 - LEVEL / 2, k - 1)) * sd / math.sqrt(k)
    p = 2 * float(student.sf(abs(mean) / (sd / math.sqrt(k)), k - 1))
    return mean, mean - half, mean + half, p


def compare_accuracy(pairs: list[tuple[list[bool], list[bool]]]) -> dict:
    """A minus B over matched runs (one (correct_a, correct_b) pair of per-image lists per seed): the difference,
    its 95% interval, its p-value, the correct counts and how many seeds."""
    n = len(pairs[0][0])
    per_seed = [counts(a, b) for a, b in pairs]
    diffs = [(only_a - only_b) / n for _, only_a, only_b, _ in per_seed]
    result = dict(seeds=len(pairs), n=n, correct_a=[sum(a) for a, _ in pairs], correct_b=[sum(b) for _, b in pairs])
    if len(pairs) == 1:
        both, only_a, only_b, neither = per_seed[0]
        low, high = paired_interval(both, only_a, only_b, neither)
        return dict(result, estimate=diffs[0], low=low, high=high, p=mcnemar_p(only_a, only_b))
    mean, seed_low, seed_high, seed_p = t_interval(diffs)
    # The test set's noise in the mean difference: per image, the difference averaged over the seeds.
    per_image = [sum(int(a[j]) - int(b[j]) for a, b in pairs) / len(pairs) for j in range(n)]
    sd = math.sqrt(sum((x - mean) ** 2 for x in per_image) / (n - 1))
    test_half = 1.96 * sd / math.sqrt(n)
    test_p = math.erfc(abs(mean) / (sd / math.sqrt(n)) / math.sqrt(2)) if sd else (1.0 if mean == 0 else 0.0)
    return dict(result, estimate=mean, low=min(seed_low, mean - test_half), high=max(seed_high, mean + test_half),
                p=max(seed_p, test_p))


def compare_ratio(pairs: list[tuple[float, float]]) -> dict | None:
    """A / B (times, loss oscillations) over matched runs, on a log scale: the geometric mean ratio and its 95%
    interval over the seeds. None with one run per arm: no spread to judge a ratio by."""
    if len(pairs) < 2 or any(a <= 0 or b <= 0 for a, b in pairs):
        return None
    mean, low, high, p = t_interval([math.log(a / b) for a, b in pairs])
    return dict(seeds=len(pairs), estimate=math.exp(mean), low=math.exp(low), high=math.exp(high), p=p)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the smallest p times m, the next times m - 1, ...,
    never below the one before it."""
    m, adjusted, running = len(p_values), [0.0] * len(p_values), 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
