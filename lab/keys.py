"""Config key paths and override strings, read the same way everywhere (config checks, resume, job dirs,
reports). A leaf module: it imports nothing from lab."""


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
