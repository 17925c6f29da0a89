"""Config key paths and override strings, read the same way everywhere (config checks, resume, job dirs,
reports, trackers). A leaf module: it imports nothing from lab."""
from pathlib import Path


def flatten(node: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; an empty dict is a leaf value."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def key_paths(node: dict) -> set[str]:
    """Every key path of a nested dict, inner nodes included: {"a": {"b": 1}} -> {"a", "a.b"}."""
    paths = set()
    for leaf in flatten(node):
        parts = leaf.split(".")
        paths.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return paths


def override_key(item) -> str:
    """The key of an override as typed: '+'/'++' (add) and '~' (delete) stripped, the value dropped."""
    return str(item).split("=", 1)[0].lstrip("+~")


def without_prefix(item) -> str:
    """An override as typed without its '+'/'++'/'~' prefix: '+experiment=teacher' -> 'experiment=teacher'."""
    return str(item).lstrip("+~")


def run_overrides(items) -> list[tuple[str, str, str]]:
    """(key, value, override as typed) for each override that describes the run itself: '+'/'~'/'++'
    stripped from the key, hydra.* and resume left out (they say where and how a run goes, not what it is)."""
    kept = []
    for item in items or []:
        _, sep, value = str(item).partition("=")
        key = override_key(item)
        if sep and key != "resume" and not key.startswith("hydra."):
            kept.append((key, value, str(item)))
    return kept


def swept_keys(config) -> list[str]:
    """Keys that take several values: `key=a,b` on the command line, or an experiment's sweeper.params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return keys + [k for k in params if k not in keys]


def swept_overrides(sweep_dir: Path, overrides) -> dict:
    """{key: value as typed} of a job's overrides that its sweep varies (the swept keys of its multirun.yaml), the
    seed last as in job dir names."""
    from omegaconf import OmegaConf

    master = Path(sweep_dir) / "multirun.yaml"
    if not master.is_file():
        return {}
    swept = {override_key(k) for k in swept_keys(OmegaConf.load(master))}
    found = [(key, value) for key, value, _ in run_overrides(list(overrides)) if key in swept]
    return dict(sorted(found, key=lambda kv: kv[0] == "seed"))
