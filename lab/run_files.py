"""The run directory contract: metrics.csv (one row per epoch), results.json, checkpoints/.

Every file is written to a temp file in the same dir and renamed over the target, so a killed run leaves
either the old file or the new one, never half of one (a sweep's resume trusts results.json)."""
import fcntl
import functools
import json
import logging
import math
import os
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from lab.saved_config import todays_config

log = logging.getLogger("lab")

PREDICTIONS = "test_predictions.json"
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s"]
FINISHED = ("ok", "diverged")  # statuses that resume=true skips
ENDED = ("ok", "diverged", "pruned", "failed")  # a job that ended: nothing happens to it until it is run again


@contextmanager
def atomic_path(path: Path):
    """Yields a temp path in path's dir; on success it becomes `path` in one rename, on error it is removed.
    Every lab output (JSON, CSV, PNG, caches) goes through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def trained_alone(run_dir: Path, rank_zero: bool = True):
    """One process at a time trains a run dir. A job can outlive the command that launched it (kill -9 of a sweeper:
    its joblib workers finish the job they hold), and the same command run again relaunches the job's dir with
    resume=true: that second process waits here for the first to end, then finds its results.json. The kernel drops
    the lock when its holder dies, however it dies. A file system without flock (Lustre mounted without it) gets a
    warning and no lock; on one whose locks are per node (some NFS, Lustre's localflock) two nodes are not kept apart.
    Ctrl-C while waiting exits 130 without touching the dir: it is the other process's."""
    if not rank_zero:  # a DDP run's other ranks share rank 0's dir (and its lock)
        yield
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"{run_dir}: another process is training this run (left by an earlier command): waiting for it")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
            except KeyboardInterrupt:
                log.error(f"stopped by Ctrl-C while waiting for the other process training {run_dir}")
                raise SystemExit(130) from None
        except OSError as err:
            log.warning(f"{run_dir}: no lock on this file system ({err.strerror}): make sure no other process "
                        f"trains this dir at the same time")
        yield


def write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_results(run_dir: Path) -> dict | None:
    """results.json, its config in today's layout (lab.saved_config), or None when there is none or it is damaged."""
    try:
        record = json.loads((Path(run_dir) / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(record, dict) and isinstance(record.get("config"), dict):
        record["config"] = todays_config(record["config"])
    return record


@functools.cache
def git_state(checkout: Path = Path(__file__).parent) -> dict:
    """{"git_commit": HEAD, "git_dirty": True when tracked files differ from it}: a result from an edited tree
    names the commit it started from, and says so. docs/ and markdown do not count: a study copies its report
    into docs/ while its later runs train. None for both outside a git checkout. Read once a process,
    at a run's start (its first results.json): the code in memory is that commit's, whatever is committed or
    edited while it trains."""
    def git(*args):
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=checkout)
        return out.stdout.strip() if out.returncode == 0 else None
    try:
        commit = git("rev-parse", "HEAD") or None
        dirty = None if commit is None else bool(git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                                                     ":(top,exclude)docs", ":(top,exclude)*.md"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"git_commit": commit, "git_dirty": dirty}


def save_results(cfg, ctx, results: dict) -> None:
    """results.json: the run's numbers plus what identifies it: seed, the overrides as typed, Hydra's group
    choices, the resolved config and the commit. Reports, the study and resume read a run from here alone."""
    from omegaconf import OmegaConf

    results = dict(results, seed=cfg.seed, overrides=list(ctx.overrides), model=ctx.choices.get("model"),
                   dataset=ctx.choices.get("dataset"), **git_state(), choices=dict(ctx.choices),
                   config=OmegaConf.to_container(cfg, resolve=True))
    write_json(ctx.run_dir / "results.json", results)


def save_predictions(run_dir: Path, predicted, labels, checkpoint: str) -> None:
    """test_predictions.json: each test image's predicted class and label, in test-set order, from the checkpoint
    results.json's test_acc was scored with: two runs on the same test set compare image by image (lab.study)."""
    if predicted is None or len(predicted) != len(labels):
        return
    write_json(Path(run_dir) / PREDICTIONS, dict(checkpoint=checkpoint, predicted=predicted.tolist(),
                                                 label=labels.cpu().tolist()))


def read_predictions(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / PREDICTIONS).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def save_png(fig, path: Path) -> Path:
    """A matplotlib figure rendered to a temp file in the same dir and renamed: a reader never sees half a PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def print_results(results: dict) -> None:
    """stdout carries these two lines only (the lab's Task 1 output); logs go to stderr."""
    accuracy = results["test_acc"] if results.get("test_acc") is not None else math.nan
    print(f"Model Accuracy: {accuracy:.4f}")
    print(f"Total time: {results.get('total_time_s') or math.nan:.2f}")
