"""A study's plan: the study config (conf/study.yaml + conf/study/NAME.yaml), the steps to run in order with
their needs, the study dir named by the command, and each step's lab.train command line."""
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from lab.config import CONF
from lab.errors import ConfigError, first_line
from lab.keys import override_key
from lab.study.judging import check_comparison

STUDY_KEYS = {"name", "title", "steps", "signs_root", "jobs_per_gpu", "parallel_steps", "root", "dir",
              "published", "plan", "claims", "time_reference", "planned"}
STEP_KEYS = {"title", "args", "needs", "match", "published", "note", "overrides", "keep_groups", "skip_unless",
             "skip_reason", "args_by_dataset", "report_in", "borrow", "setup", "synthetic"}
CLAIM_KEYS = {"id", "text", "steps", "lab_report", "compare"}
# Overrides that say where or how a job runs, not what it is: they do not name the study dir.
NOT_NAMING = ("hydra", "gpu_pool", "cpu_threads", "progress_every_s", "resume")


@dataclass
class Step:
    name: str
    spec: dict
    command: list[str] = field(default_factory=list)  # lab.train's arguments; empty when skipped
    skipped: str | None = None  # the reason
    jobs: list | None = None    # its PlannedJobs; None when they cannot be known before it runs


def split_argv(argv: list[str]) -> tuple[list[str], list[str], str | None]:
    """(study overrides, overrides for every step, --config-dir). -m is dropped: every step runs with -m."""
    study, steps, config_dir = [], [], None
    args = iter(argv)
    for arg in args:
        if arg in ("--config-dir", "-cd"):
            config_dir = next(args, None)
        elif arg.startswith("--config-dir="):
            config_dir = arg.split("=", 1)[1]
        elif arg in ("-m", "--multirun"):
            continue
        elif re.match(r"^[+~]*study(\.|=|$)", arg):
            study.append(arg)
        else:
            steps.append(arg)
    return study, steps, config_dir


def compose_study(study_overrides: list[str], config_dir: str | None) -> dict:
    """The study config as a plain dict; an unknown study or key is a ConfigError (one line)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    # ++: a step key the study file leaves out (study.plan.t3.overrides=[...]) is added; check_study then
    # names any key that is not a study's or a step's.
    study_overrides = [f"++{o}" if o.startswith("study.") else o for o in study_overrides]
    extra = [f"hydra.searchpath=[file://{Path(config_dir).absolute()}]"] if config_dir else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("study", overrides=study_overrides + extra)
    except Exception as err:  # Hydra's errors name the key or option: keep their first line
        raise ConfigError(f"study config: {first_line(err)} (study keys: {', '.join(sorted(STUDY_KEYS))}; studies: "
                          f"{', '.join(study_names(config_dir))})") from None
    finally:
        GlobalHydra.instance().clear()
    study = OmegaConf.to_container(cfg.study, resolve=True)
    check_study(study)
    return study


def study_names(config_dir: str | None) -> list[str]:
    folders = [CONF / "study"] + ([Path(config_dir) / "study"] if config_dir else [])
    return sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})


def check_study(study: dict) -> None:
    unknown = set(study) - STUDY_KEYS
    if unknown:
        raise ConfigError(f"study: unknown key(s) {', '.join(sorted(unknown))}; the keys are "
                          f"{', '.join(sorted(STUDY_KEYS))}")
    plan = study.get("plan") or {}
    if not plan:
        raise ConfigError(f"study {study.get('name')}: plan is empty; give it steps (see conf/study/lab_report.yaml)")
    for name, spec in plan.items():
        wrong = set(spec or {}) - STEP_KEYS
        if wrong:
            raise ConfigError(f"study.plan.{name}: unknown key(s) {', '.join(sorted(wrong))}; a step's keys are "
                              f"{', '.join(sorted(STEP_KEYS))}")
        before = list(plan)[: list(plan).index(name)]
        for key, needed in ((spec or {}).get("needs") or {}).items():
            if needed not in before:
                raise ConfigError(f"study.plan.{name}.needs.{key}={needed}: no such earlier step; a step needs "
                                  f"one of the steps above it ({', '.join(before) or 'none'})")
    steps = study.get("steps")
    chosen = list(plan) if steps in (None, "all") else steps
    if not isinstance(chosen, list) or not chosen or any(s not in plan for s in chosen):
        bad = [s for s in chosen if s not in plan] if isinstance(chosen, list) else [chosen]
        raise ConfigError(f"study.steps={steps}: unknown step(s) {', '.join(map(str, bad)) or '(none given)'}; "
                          f"the steps of {study.get('name')} are {', '.join(plan)} (or all)")
    for key in ("jobs_per_gpu", "parallel_steps"):
        if not isinstance(study.get(key), int) or study[key] < 1:
            raise ConfigError(f"study.{key}={study.get(key)}: must be a whole number >= 1")
    for claim in study.get("claims") or []:
        check_claim(claim, plan)
    if study.get("time_reference") and study["time_reference"] not in plan:
        raise ConfigError(f"study.time_reference={study['time_reference']}: not a step of the plan ({', '.join(plan)})")


def check_claim(claim: dict, plan: dict) -> None:
    where = f"study.claims (claim {claim.get('id', '?')})"
    if set(claim) - CLAIM_KEYS or not {"id", "text", "steps", "compare"} <= set(claim):
        raise ConfigError(f"{where}: a claim has the keys {', '.join(sorted(CLAIM_KEYS))} (lab_report optional)")
    unknown = [s for s in claim["steps"] if s not in plan]
    if unknown:
        raise ConfigError(f"{where}: steps {unknown} are not in the plan ({', '.join(plan)})")
    if not isinstance(claim["compare"], list) or not claim["compare"]:
        raise ConfigError(f"{where}: compare is a list of one or more comparisons")
    for comparison in claim["compare"]:
        check_comparison(comparison, where)


def selected_steps(study: dict) -> list[str]:
    """The chosen steps and every step they need, in the plan's order."""
    plan = study["plan"]
    wanted = set(plan if study.get("steps") in (None, "all") else study["steps"])
    for name in reversed(list(plan)):
        if name in wanted:
            wanted.update(((plan[name] or {}).get("needs") or {}).values())
    return [name for name in plan if name in wanted]


def study_dir(study: dict, study_overrides: list[str], step_overrides: list[str]) -> Path:
    """<root>/<name>/<overrides>-<hash>: the same command maps to the same dir (what resume relies on).
    Step choices and where things run do not name it; study.plan.* overrides do (they change what runs)."""
    if study.get("dir"):
        return Path(study["dir"])
    naming = [o for o in step_overrides if not override_key(o).startswith(NOT_NAMING)]
    naming += [o for o in study_overrides if override_key(o).startswith("study.plan.")]
    # No = or , in the name: it goes into overrides (hydra.sweep.dir=..., distill.teacher_ckpt=...).
    readable = re.sub(r"[\[\]{}'\" +~]", "", "_".join(o.replace("=", "-") for o in naming))
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable)[:80] or "defaults"
    digest = hashlib.sha1("\n".join(naming).encode()).hexdigest()[:8]
    return Path(study["root"]) / study["name"] / f"{readable}-{digest}"


def dataset_choice(step_overrides: list[str]) -> str | None:
    chosen = [o.split("=", 1)[1] for o in step_overrides if "=" in o and override_key(o) == "dataset"]
    return chosen[-1] if chosen else None


def step_command(step: Step, study: dict, step_overrides: list[str], out: Path, run_dir_of) -> None:
    """Fill step.command (lab.train's arguments) or step.skipped. run_dir_of(step name) -> an earlier step's
    finished run dir or None."""
    spec = step.spec
    by_dataset = spec.get("args_by_dataset") or {}
    chosen = dataset_choice(step_overrides)
    args = list(by_dataset.get(chosen) or spec.get("args") or [])
    if chosen not in by_dataset and spec.get("skip_unless") and study.get(spec["skip_unless"]) is None:
        step.skipped = spec.get("skip_reason") or f"needs study.{spec['skip_unless']}"
        return
    # The step's own group choice (and its keys: a dataset.root meant for the user's dataset) is not replaced.
    kept = tuple(spec.get("keep_groups") or [])
    given = [o for o in step_overrides if not any(override_key(o) == g or override_key(o).startswith(g + ".")
                                                  for g in kept)]
    needs = []
    for key, needed in (spec.get("needs") or {}).items():
        run_dir = run_dir_of(needed)
        if run_dir is None:
            step.skipped = f"needs step {needed}'s run dir for {key}, and {needed} has no finished job"
            return
        needs.append(f"{key}={quoted(run_dir)}")
    search = ["--config-dir", str(Path(study["config_dir"]).absolute())] if study.get("config_dir") else []
    tracking = step_tracking(study, out, step.name)
    step.command = [*search, "-m", *args, *given, *(spec.get("overrides") or []), *needs, *tracking, "resume=true",
                    f"hydra.sweep.dir={quoted(out / step.name)}"]


def step_tracking(study: dict, out: Path, step: str) -> list[str]:
    """The overrides that put a step's jobs into the study's group, tagged with the study and the step."""
    if not study.get("tracker"):
        return []
    return [f"logger.experiment_name={study['name']}", f"logger.parent_dir={quoted(out)}",
            f"+logger.tags.study={study['name']}", f"+logger.tags.step={step}"]


def quoted(path) -> str:
    """A path as an override value: quoted where Hydra's grammar would read it as more than a string."""
    text = str(path)
    return f"'{text}'" if re.search(r"[=,\s'\"\[\]{}()*?:$\\]", text) else text


@dataclass
class PlannedJob:
    name: str                   # its dir in the step's sweep dir
    identity: str               # what it trains: its resolved config but where and how it runs
    same_as: str | None = None  # "step/job" of an identical job of an earlier step: run once, copied here


# What does not change what a job trains: where files go, how it logs, the threads it gets.
NOT_IDENTITY = ("paths", "logger", "resume", "gpu_pool", "cpu_threads", "progress_every_s", "step_loss_every")


def identity(cfg) -> str:
    config = OmegaConf.to_container(cfg, resolve=False)
    kept = {k: v for k, v in config.items() if k not in NOT_IDENTITY and k != "hydra"}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def inspect_step(command: list[str]) -> tuple[list[PlannedJob] | None, str | None]:
    """(the jobs a step's sweep launches, the first problem in any job's config) for a step's lab.train command,
    from its experiment's grid and the command line, before anything runs. (None, the problem) when the command
    does not compose; (None, None) when the jobs cannot be known here (a glob)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from lab.config import check_job
    from lab.keys import swept_keys
    from lab.sweeps.jobs import job_name, job_overrides

    config_dir = command[command.index("--config-dir") + 1] if "--config-dir" in command else None
    overrides = [o for o in command if o not in ("-m", "--multirun", "--config-dir", config_dir)]
    search = [f"hydra.searchpath=[file://{config_dir}]"] if config_dir else []
    GlobalHydra.instance().clear()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        plain = [item for item, o in zip(overrides, parsed)
                 if not o.is_sweep_override() and not o.key_or_group.startswith("hydra.")]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            master = compose("train", overrides=plain + search, return_hydra_config=True)
            sweep = OmegaConf.create({"hydra": {"overrides": {"task": overrides}, "sweeper": {
                "_target_": master.hydra.sweeper._target_, "params": master.hydra.sweeper.get("params") or {}}}})
            swept, jobs = {override_key(k) for k in swept_keys(sweep)}, job_overrides(sweep)
            planned = None if jobs is None else []
            for number, job in enumerate(jobs or []):
                cfg = compose("train", overrides=job + search)
                check_job(cfg)
                planned.append(PlannedJob(job_name(job, swept) or str(number), identity(cfg)))
    except Exception as err:  # a ConfigError, or Hydra's composition error: its first line names the override
        return None, first_line(err)
    finally:
        GlobalHydra.instance().clear()
    return planned, None


def mark_identical_jobs(steps: list) -> None:
    """Each job identical to one of an earlier step points at it (same_as): the later step copies it."""
    first = {}
    for step in steps:
        for job in step.jobs or []:
            original = first.get(job.identity)
            job.same_as = original if original and not original.startswith(f"{step.name}/") else None
        for job in step.jobs or []:
            first.setdefault(job.identity, f"{step.name}/{job.name}")


def gpu_overrides(study: dict, step_overrides: list[str]) -> list[str]:
    """jobs_per_gpu=N on G GPUs: a joblib launcher with G*N workers and gpu_pool listing each GPU N times
    (lab.context.claim_gpu gives each worker one entry). Nothing when the user chose a launcher or a pool,
    or when one job at a time on one GPU is all there is."""
    if any(override_key(o).startswith(("hydra/launcher", "hydra.launcher", "gpu_pool")) for o in step_overrides):
        return []
    gpus = visible_gpus()
    if not gpus or (len(gpus) == 1 and study["jobs_per_gpu"] == 1):
        return []
    pool = [gpu for gpu in gpus for _ in range(study["jobs_per_gpu"])]
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={len(pool)}", f"gpu_pool=[{','.join(map(str, pool))}]"]


def visible_gpus() -> list:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES when set (gpu_pool entries replace it), else
    every GPU nvidia-smi lists."""
    import os
    import subprocess

    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in out.stdout.split() if line.strip().isdigit()] if out.returncode == 0 else []


def python_command() -> list[str]:
    return [sys.executable, "-m", "lab.train"]
