"""lab.study's time probe: two works taking turns (A B, B A) keep their true ratio while the machine's speed
changes, where timing them one after the other does not; on real nets it times each pair once per study dir."""
import pytest
from omegaconf import OmegaConf

from lab.bench.alternate import alternate
from lab.study.stats import compare_ratio
from lab.study.timing import TimeProbe
from tests.conftest import compose


class SlowingMachine:
    """A clock on a machine that slows down while it works: a work of `cost` seconds takes cost x (1 + 0.8 x the
    share of `span` elapsed), x1.8 by the end (what the 2-core CPU did in 20 minutes)."""

    def __init__(self, span: float):
        self.now, self.span = 0.0, span

    def clock(self) -> float:
        return self.now

    def work(self, cost: float):
        def run() -> None:
            self.now += cost * (1 + 0.8 * min(self.now / self.span, 1.0))
        return run


def test_taking_turns_recovers_a_known_ratio_while_the_machine_slows_and_back_to_back_does_not():
    pairs, span = 6, 6 * 2 * 2.2  # the whole run's work: six pairs of turns of both works
    machine = SlowingMachine(span)
    seconds = alternate({"a": machine.work(1.2), "b": machine.work(1.0)}, pairs, warmup=0, clock=machine.clock)
    turns = compare_ratio(list(zip(seconds["a"], seconds["b"])))
    assert turns["estimate"] == pytest.approx(1.2, rel=0.01) and turns["low"] < 1.2 < turns["high"]
    assert turns["high"] / turns["low"] < 1.02  # the drift does not even widen the interval much

    machine = SlowingMachine(span)  # the same works, each one's turns back to back: A's all ran on a faster machine
    back_to_back = {"a": [0.0] * pairs, "b": [0.0] * pairs}
    for name, cost in (("a", 1.2), ("b", 1.0)):
        for pair in range(pairs):
            start = machine.clock()
            machine.work(cost)(), machine.work(cost)()
            back_to_back[name][pair] = machine.clock() - start
    sequential = compare_ratio(list(zip(back_to_back["a"], back_to_back["b"])))
    assert sequential["high"] < 1.0  # A, 20% more work, reads as the faster one


def results_of(*overrides) -> dict:
    """What a digits run's results.json says about its work: the resolved config, classes, image shape, where."""
    cfg = compose(["dataset=digits", *overrides])
    config = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "optimizer", "dataset")}
    return dict(config=dict(config, seed=cfg.seed), num_classes=10, image_shape=[1, 8, 8], precision="32-true",
                device="cpu")


def test_the_probe_times_real_nets_against_each_other_once_per_study_dir(tmp_path):
    wide, narrow = results_of("model.base_width=64"), results_of("model.base_width=8")
    path = tmp_path / "time_probe.json"
    measured = TimeProbe(path, pairs=3, steps=2)(wide, narrow)
    ratio = compare_ratio(list(zip(measured["seconds_a"], measured["seconds_b"])))
    assert ratio["estimate"] > 1.5  # 64x the convolution work at width 64: no drift hides that
    assert "cores" in measured["machine"] and path.is_file()
    again = TimeProbe(path, pairs=3, steps=2)(wide, narrow)  # a report rendered again reads, does not time
    assert again == measured
    seeded = dict(wide, config=dict(wide["config"], seed=7))  # the seed is not work: the same pair
    assert TimeProbe(path, pairs=3, steps=2)(seeded, narrow) == measured
    old = dict(wide)
    old.pop("image_shape")
    assert "no image_shape" in TimeProbe(path)(old, narrow)
    broken = dict(wide, config=dict(wide["config"], model=dict(wide["config"]["model"], _target_="no.such.builder")))
    why = TimeProbe(path)(broken, narrow)  # a net this machine cannot build: the row says why, the report stands
    assert isinstance(why, str) and "could not time these arms" in why and "no.such.builder" in why
