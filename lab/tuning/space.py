"""The search space of hydra/sweeper=tune: Hydra's override grammar (interval, range, choice, tag(log, ...))
as Optuna distributions, and the checks that turn bad input into one line before anything trains."""
import itertools
from pathlib import Path

from lab.errors import ConfigError, first_line
from lab.keys import override_key

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("asha", "median", "hyperband", "none")


def distribution(override):
    """The Optuna distribution of one sweep override, checked: (distribution, grid values or None)."""
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key, value, log_scale = override.get_key_element(), override.value(), "log" in override.value().tags
    if override.is_interval_sweep():
        low, high = value.start, value.end
        if low >= high:
            raise ConfigError(f"{key}: interval({low}, {high}) is empty: low must be below high")
        if log_scale and low <= 0:
            raise ConfigError(f"{key}: a log scale needs values > 0, not interval({low}, {high}); "
                              f"e.g. {key}='tag(log, interval(0.001, 1))'")
        return FloatDistribution(low, high, log=log_scale), None  # Hydra's interval is float; range() for ints
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if not values:
        raise ConfigError(f"{key}: {override.input_line} holds no values")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if log_scale and (not numbers or min(values) <= 0):
        raise ConfigError(f"{key}: a log scale needs numbers > 0, not {values}")
    if override.is_range_sweep() and not value.shuffle and len(values) > 1:
        step = values[1] - values[0]
        if all(isinstance(v, int) for v in values) and not log_scale:
            return IntDistribution(values[0], values[-1], step=step), values
        if not log_scale:
            return FloatDistribution(values[0], values[-1], step=step), values
    return CategoricalDistribution(values), values


def search_space(params: dict, arguments: list[str], config_loader=None):
    """The sweeper's params (an experiment's hydra.sweeper.params) and the command line's overrides ->
    ({key: distribution}, {key: grid values}, fixed overrides as typed). The command line wins."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = {override_key(a) for a in arguments}
    items = [f"{k}={v}" for k, v in (params or {}).items() if override_key(k) not in given] + list(arguments)
    try:
        overrides = OverridesParser.create(config_loader=config_loader).parse_overrides(items)
    except Exception as err:
        raise ConfigError(f"cannot parse the search space {items}: {first_line(err)}") from None
    space, grid, fixed = {}, {}, []
    for override in overrides:
        if override.is_sweep_override():
            space[override.get_key_element()], grid[override.get_key_element()] = distribution(override)
        else:
            fixed.append(f"{override.get_key_element()}={override.get_value_element_as_str()}")
    if not space:
        raise ConfigError("the search space is empty: give a key to tune, e.g. 'optimizer.lr=tag(log, "
                          "interval(0.001, 1))' or 'optimizer=choice(sgd,adam)' (or hydra.sweeper.params)")
    return space, grid, fixed


def check_settings(settings, grid: dict) -> None:
    if settings.sampler not in SAMPLERS:
        raise ConfigError(f"hydra.sweeper.sampler={settings.sampler} is not a sampler: choose {', '.join(SAMPLERS)}")
    if settings.pruner not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.pruner={settings.pruner} is not a pruner: choose {', '.join(PRUNERS)}")
    if settings.direction not in ("maximize", "minimize"):
        raise ConfigError(f"hydra.sweeper.direction={settings.direction}: choose maximize or minimize")
    for key, low in (("n_trials", 1), ("n_jobs", 1), ("min_epochs", 1), ("reduction_factor", 2)):
        if not isinstance(settings[key], int) or settings[key] < low:
            raise ConfigError(f"hydra.sweeper.{key}={settings[key]} is not allowed: must be an integer >= {low}")
    if settings.sampler == "grid" and any(values is None for values in grid.values()):
        intervals = [k for k, values in grid.items() if values is None]
        raise ConfigError(f"hydra.sweeper.sampler=grid needs choice() or range() values, not an interval for "
                          f"{', '.join(intervals)}")


def check_same_space(study, space: dict, sweep_dir: Path) -> None:
    """Optuna keeps one distribution per parameter in a study: a changed search space needs a new study."""
    for trial in study.get_trials(deepcopy=False):
        for key, before in trial.distributions.items():
            if key in space and space[key] != before:
                raise ConfigError(f"{key}: the study in {sweep_dir} tunes it over {before}, this command over "
                                  f"{space[key]}: keep the search space to continue, or pass a new hydra.sweep.dir")


def grid_left(study, grid: dict) -> int:
    """Grid points no trial of the study has taken yet (the grid sampler runs each once)."""
    taken = {tuple(t.params.get(k) for k in grid) for t in study.get_trials(deepcopy=False)}
    return sum(point not in taken for point in itertools.product(*grid.values()))
