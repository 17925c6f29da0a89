"""Timing pieces of work against each other on a machine whose speed drifts (a shared 2-core CPU slowed x1.8 in
20 minutes, measured): the works take turns in mirrored rounds, A B then B A, so a drift that is linear over a
pair of rounds slows both works alike and cancels in the pair's ratio; the ratios' spread over the pairs gives the
interval. Timing each work in its own run, minutes apart, puts the drift into the ratio instead."""
import time
from typing import Callable


def alternate(works: dict[str, Callable[[], None]], pairs: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """{name: seconds per pair of rounds}: each pair runs every work twice, in the given order and then in reverse
    (A B C, C B A). `warmup` calls of each work come first, untimed (allocation, oneDNN's kernel choice)."""
    names = list(works)
    for _ in range(warmup):
        for name in names:
            works[name]()
    seconds = {name: [0.0] * pairs for name in names}
    for pair in range(pairs):
        for order in (names, names[::-1]):
            for name in order:
                start = clock()
                works[name]()
                seconds[name][pair] += clock() - start
    return seconds
