"""A study's plan, frozen before its data, and what the study did differently.

The plan is the study's yaml (conf/study/<name>.yaml, or the user's config dir): its claims, margins, steps and
`planned`, the command-line overrides it was designed for (scale, seeds, a step's overrides). REPORT.md names the
plan's commit, the last that changed the file before the study's first job started, and lists as deviations every
override a command gave against `planned` and every commit that changed the plan after the first job started: a
choice made after seeing results can then never read as planned."""
import datetime
import subprocess
from pathlib import Path

from lab.config import CONF
from lab.keys import override_key

# Where and how a study runs, not what it tests: no deviation.
WHERE = ("study.dir", "study.root", "study.signs_root", "study.steps", "study.jobs_per_gpu",
         "study.parallel_steps", "dataset.root", "cpu_threads", "gpu_pool", "progress_every_s", "hydra")


def plan_file(study: dict) -> Path | None:
    """The yaml the study was composed from: the user's config dir first, as Hydra searches it."""
    places = ([Path(study["config_dir"]) / "study"] if study.get("config_dir") else []) + [CONF / "study"]
    return next((p / f"{study['name']}.yaml" for p in places if (p / f"{study['name']}.yaml").is_file()), None)


def git_log(path: Path, *args: str) -> list[str]:
    try:
        out = subprocess.run(["git", "log", "--format=%H %ct %s", *args, "--", path.name], capture_output=True,
                             text=True, timeout=10, cwd=path.parent)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def plan_history(path: Path | None, first_start: float | None) -> tuple[str | None, list[str]]:
    """(the plan's commit before the first job started, 'commit (date): subject' of each later change)."""
    if path is None or first_start is None:
        return None, []
    commits = [line.split(" ", 2) for line in git_log(path)]
    before = [c for c in commits if float(c[1]) <= first_start]
    after = [c for c in commits if float(c[1]) > first_start]
    return (before[0][0] if before else None), [change_line(c) for c in reversed(after)]


def change_line(commit: list[str]) -> str:
    """'hash (date): subject' of a `git log --format=%H %ct %s` line split in three, the subject cut at 100."""
    when = datetime.datetime.fromtimestamp(float(commit[1])).strftime("%Y-%m-%d %H:%M")
    subject = commit[2] if len(commit) > 2 else ""
    return f"{commit[0][:12]} ({when}): {subject[:100] + '...' if len(subject) > 100 else subject}"


def given_overrides(argv: list[str]) -> dict:
    """{key: override as typed} of a command's overrides that say what the study tests (the last one wins)."""
    found = {}
    for arg in argv:
        key = override_key(arg)
        if "=" in arg and not arg.startswith("-") and key != "study" and not key.startswith(WHERE):  # study=: the plan
            found[key] = arg.lstrip("+~")
    return found


def command_deviations(planned: list[str] | None, commands: list[list[str]]) -> list[str]:
    """One line per override a command gave that the plan did not, gave otherwise, or left out."""
    if planned is None:
        return ["the plan fixes no command line (`planned` in its yaml): scale, seeds and step overrides are the "
                "commands' own, not a plan's"]
    plan = given_overrides(planned)
    said = {}  # each change once, with the commands that made it (a resumed study repeats its command)
    for number, argv in enumerate(commands, 1):
        given = given_overrides(argv)
        changes = [f"{given[k]} (the plan: {plan[k]})" for k in given if k in plan and given[k] != plan[k]]
        changes += [f"{given[k]} (not in the plan)" for k in given if k not in plan]
        changes += [f"left out the plan's {plan[k]}" for k in plan if k not in given]
        for change in changes:
            said.setdefault(change, []).append(number)
    return [f"{change}: command{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))} of {len(commands)}"
            for change, numbers in said.items()]


def deviations(study: dict, commands: list[list[str]], first_start: float | None) -> dict:
    """{plan, commit, lines}: the plan file, its commit when the first job started, and every deviation."""
    path = plan_file(study)
    commit, later = plan_history(path, first_start)
    lines = command_deviations(study.get("planned"), commands)
    lines += [f"the plan was changed after the first job started: {change}" for change in later]
    if path is not None and uncommitted(path):
        lines.append(f"{path.name} has uncommitted changes: the plan this report read is not a committed one")
    return dict(plan=str(path) if path else None, commit=commit, lines=lines)


def uncommitted(path: Path) -> bool:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", path.name], capture_output=True, text=True,
                             timeout=10, cwd=path.parent)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def deviation_lines(facts: dict) -> list[str]:
    where = Path(facts["plan"]).name if facts.get("plan") else "the study's yaml"
    frozen = (f"Plan: {where} at git commit {facts['commit'][:12]}, its last change before the first job started."
              if facts.get("commit") else f"Plan: {where}, with no git commit from before the first job started (a "
              f"file outside git, or one committed only later): nothing shows it was fixed before the data.")
    lines = ["## Deviations from the plan", "", frozen, ""]
    return lines + ([f"- {line}" for line in facts["lines"]] or ["None."]) + [""]
