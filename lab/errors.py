"""Every error a user can cause, as one line that names the input, the problem and the fix.

A leaf module: it imports nothing from lab, so any module can raise these without an import circle.
lab.outcome turns a USER_ERRORS exception into that one line and exit status 2; anything else is a bug
(one line too, with the traceback in the run's log, exit 1). The exit statuses of every lab command are here."""
import sys
from typing import NoReturn


class ConfigError(Exception):
    """A config value outside its allowed range, an unknown key, or an option that does not exist."""


class ResumeRefused(ConfigError):
    """resume=true that cannot start (other settings than the run's, or a bad value): nothing is trained and
    the run's record is kept."""


class DataError(Exception):
    """Bad or missing data: a folder, a file, or a dataset that does not match the checkpoint."""


class CheckpointError(Exception):
    """A checkpoint that is missing, unsafe (pickled code) or from another setup."""


class ReportError(Exception):
    """A report input that is missing or holds no runs."""


USER_ERRORS = (ConfigError, DataError, CheckpointError, ReportError)


def first_line(err: BaseException, limit: int = 300) -> str:
    """An error's message as one line, at most `limit` characters: its first line (Hydra and torch put the detail
    below), joined to the next where it ends in a colon (Hydra's "Error in call to target 'X':", torch's "Error(s) in
    loading state_dict for Classifier:" put the reason there); its class name when it has no message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


EXIT_USER_ERROR = 2
EXIT_STOPPED = {"Ctrl-C": 130, "SIGTERM": 143}  # 128 + the signal's number, as a shell reports it


def say_user_error(err, prefix: str = "error") -> int:
    """The one line a user's mistake gets, on stderr (no traceback); returns exit status 2 for a main() to return."""
    print(f"{prefix}: {err}", file=sys.stderr)
    return EXIT_USER_ERROR


def exit_for_user_error(err, prefix: str = "error") -> NoReturn:
    sys.exit(say_user_error(err, prefix))
