"""What lab's trackers share: a logger whose failures cost the tracker and not the run, the statuses they count, and
how a job's run is named and grouped. Imports neither tracker package."""
import logging
from pathlib import Path

from lab.errors import first_line

log = logging.getLogger("lab")
STATUSES = ("ok", "diverged", "pruned", "failed", "interrupted")  # lab's, as results.json says them


def run_name(run_dir: str, tags: dict | None) -> str:
    """A job's run: its dir's last part (a sweep job's overrides), after its step in a study (t3/optimizer.lr=0.1)."""
    return "/".join(filter(None, [(tags or {}).get("step"), Path(run_dir).name]))


def group_of(parent_dir: str | None, job: dict) -> str | None:
    """The dir of the group a job's run belongs to: the study's (logger.parent_dir, set by lab.study), else its -m
    sweep's; None for a single run."""
    return str(parent_dir or "") or job.get("sweep_dir")


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {first_line(err)}"


class Guarded:
    """Mixed into a tracker's Lightning logger: a store or server that fails mid-run costs the tracker, not the run.
    The first error is logged once and the logger goes quiet; metrics.csv and results.json are lab's own record."""

    broken = False
    recorded = False  # record_outcome() has put lab's status on the run

    def guarded(self, call, *args):
        if self.broken:
            return None
        try:
            return call(*args)
        except Exception as err:
            self.broken = True
            log.warning(f"{self.tracker_name()}: {describe(err)}; this run's tracking stops here, its metrics.csv "
                        f"and results.json are written as always")
            return None

    def tracker_name(self) -> str:
        return type(self).__name__
