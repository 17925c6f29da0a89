"""Checks that need only the command line, so they run before Hydra composes anything: Hydra would answer a
group option that does not exist with a 17-line composition error, and an output dir it cannot create with
a 12-line traceback. (DDP typed under -m is refused by the sweep's check of every job, lab.sweeps.jobs, before
the first job starts.)"""
import difflib
import os
from pathlib import Path

from lab.config import CONF
from lab.errors import ConfigError
from lab.keys import override_key


def check_command_line(argv: list[str]) -> None:
    check_group_options(argv)
    check_output_dir(argv)


def check_group_options(argv: list[str]) -> None:
    """`dataset=digts`, `+experiment=lr_sweeep`, `model=resnet10,resnet19`: one line with the choices and the
    closest one, where Hydra would print a 17-line composition error. Only conf/ groups are checked
    (hydra/launcher options come from plugins); what does not parse is left to Hydra's own message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.startswith(("-cd", "--config-dir", "-cp", "--config-path")) or "hydra.searchpath" in a for a in argv):
        return  # options may come from the user's own config dirs
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in argv if "=" in a and a[0] != "-"])
    except Exception:
        return
    for override in overrides:
        group = override_key(override.key_or_group)
        if override.is_delete() or group.split("/")[0] == "hydra" or not (CONF / group).is_dir():
            continue
        try:
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        except Exception:  # glob() needs Hydra's config loader: leave it to Hydra
            continue
        choices = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        for value in values:
            if isinstance(value, str) and value not in choices:
                key = ("+" if override.is_add() else "") + group
                close = difflib.get_close_matches(value, choices, n=1)
                hint = f"did you mean {key}={close[0]}? " if close else ""
                raise ConfigError(f"{key}={value} is not an option of conf/{group}/ ({hint}choices: "
                                  f"{', '.join(choices)})")


def check_output_dir(argv: list[str]) -> None:
    """The run or sweep dir must be creatable: Hydra makes it before lab starts and reports a failure as a
    12-line traceback. Without hydra.run.dir / hydra.sweep.dir the dir goes under the current folder."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in argv if "=" in a and override_key(a) == key]
    target = Path(given[-1]).expanduser().absolute() if given else Path.cwd() / ("multirun" if multirun else "outputs")
    existing = next(p for p in [target, *target.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not a folder" if not existing.is_dir() else "is not writable"
        raise ConfigError(f"cannot create the output dir {target}: {existing} {problem}; pass {key}=<a folder "
                          f"you can write>")
