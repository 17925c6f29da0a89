"""REPORT.md from a study's report dict (report.py builds it): the Findings first, then each step, then the
provenance block (commits, versions, devices, seeds, settings, wall time and compute hours). Plain markdown with
relative links: no HTML."""
import platform

from lab.machine import describe_cpu, torch_facts
from lab.noise import wilson_interval
from lab.run_files import git_state
from lab.study.deviations import deviation_lines

HEADER = ["setting", "lab: test acc [95%]", "correct / total", "the original report", "vs the original report",
          "train time (s)", "x ResNet10", "the original report: time (s)", "its x ResNet10", "epochs", "status"]
# Columns of the published report's numbers, and of the time reference's ratios: left out of a study without them.
PUBLISHED_COLUMNS = {"the original report", "vs the original report", "the original report: time (s)", "its x ResNet10"}
RATIO_COLUMN = "x ResNet10"


def has_published(report: dict) -> bool:
    """Whether the study compares with a published report (the original), or stands on its own runs."""
    return bool((report.get("published") or {}).get("about") or (report.get("published") or {}).get("dataset"))


def columns(report: dict) -> list[int]:
    """The indices of HEADER's columns this study's tables show."""
    return [i for i, name in enumerate(HEADER) if (name not in PUBLISHED_COLUMNS or has_published(report))
            and (name != RATIO_COLUMN or report.get("reference_time_s"))]


def fmt(value, spec: str = "{:.4f}") -> str:
    return "" if value is None else spec.format(value)


def numbers_first(text: str) -> tuple:
    """A sort key that puts seed 5 before seed 42 (as strings, "42" < "5")."""
    try:
        return 0, float(text), ""
    except ValueError:
        return 1, 0.0, text


def facts_of_runs(runs: list[dict]) -> dict:
    """The settings these runs were measured with, each as the sorted set of values it took."""
    from lab.report.table import config_value

    def values(get):
        return sorted({str(v) for r in runs if (v := get(r["results"])) is not None}, key=numbers_first)
    return dict(datasets=values(lambda r: r.get("dataset")), seeds=values(lambda r: r.get("seed")),
                models=values(model_words),
                precision=values(lambda r: r.get("precision")), epochs=values(lambda r: r.get("epochs")),
                batch_size=values(lambda r: config_value(r, "dataset.batch_size")),
                val_split=values(lambda r: config_value(r, "dataset.val_split")),
                train_subset=values(lambda r: config_value(r, "dataset.train_subset")),
                base_width=values(lambda r: config_value(r, "model.base_width")),
                scored=values(lambda r: r.get("scored_checkpoint")), test_images=values(lambda r: r.get("test_images")))


def model_words(results: dict) -> str | None:
    """The model option and the model keys the command set: 'wrn16_4 with model.widen_factor=2'."""
    from lab.keys import run_overrides

    keys = [typed for key, _, typed in run_overrides(results.get("overrides")) if key.startswith("model.")]
    choice = (results.get("choices") or {}).get("model")
    return f"{choice} with {', '.join(keys)}" if choice and keys else choice


def provenance(report: dict, runs_log: list[dict], runs: list[dict]) -> dict:
    originals = [r["results"] for r in runs if r["key"] == f"{r['step']}/{r['job']}"]
    commits = sorted({r["git_commit"] for r in originals if r.get("git_commit")})
    devices = sorted({str(r["device"]) for r in originals if r.get("device")})
    # The CPUs the jobs ran on; jobs from before results.json named its CPU: the one rendering the report.
    cpus = sorted({r["cpu"] for r in originals if r.get("cpu")}) or [describe_cpu()]
    hours = {"GPU-hours": 0.0, "CPU-hours": 0.0}
    for r in originals:
        hours["GPU-hours" if "cuda" in str(r.get("device")) else "CPU-hours"] += (r.get("total_time_s") or 0) / 3600
    return dict(git_commits=commits, git_dirty=any(r.get("git_dirty") for r in originals), devices=devices,
                **torch_facts(any("cuda" in d for d in devices)), python=platform.python_version(),
                cpu="; ".join(cpus), host=platform.node(), rendered_by=git_state(),
                wall_time_s=round(sum(r["ended_at"] - r["started_at"] for r in runs_log), 1),
                commands=len(runs_log), jobs_trained=len(originals), jobs_copied=len(runs) - len(originals),
                settings=facts_of_runs(runs), **{k: round(v, 3) for k, v in hours.items()})


def dataset_note(report: dict) -> str:
    """Where the numbers were measured, against where the original report's were (a step on its own dataset, t6's
    traffic signs, aside)."""
    published = report["published"]
    datasets = sorted({d for step in report["steps"] if not step["own_dataset"] for d in step["settings"]["datasets"]})
    if not has_published(report):
        return f"Measured on {', '.join(datasets) or 'no dataset yet'}."
    about = published.get("about") or published.get("dataset") or "the original report's dataset"
    if not datasets or datasets == [published.get("dataset")]:
        return f"Measured on {about}, as the original report was."
    return (f"On {', '.join(datasets)}, not the original's setting ({about}): a test of each claim's direction, "
            f"not of the original's numbers.")


SYNTHETIC = ("Synthetic images: this step's folder was drawn (study.plan.<step>.synthetic=true), not photographed: "
             "what its runs show is about that drawing, not about the images the original used.")


def findings_lines(report: dict) -> list[str]:
    from lab.study.claims import RULES
    from lab.study.subclaims import findings_table, seeds_lines

    lines = ["## Findings", "", dataset_note(report), ""]
    lines += [f"![Every sub-claim's difference and verdict]({report['findings_figure']})", ""] \
        if report.get("findings_figure") else []
    lines += findings_table(report["findings"], has_published(report),
                            {s["name"] for s in report["steps"] if s.get("synthetic")})
    lines += ["", "How each verdict is reached:", ""] + [f"- {rule}" for rule in RULES] + [""]
    return lines + seeds_lines(report["findings"])


def setup_line(step: dict, report: dict) -> str:
    """Every way this step's runs differ from the original's: its runs' settings, then what its config says (a study of
    its own: the settings)."""
    s, parts = step["settings"], []
    if not has_published(report):
        return own_setup_line(step)
    if s["datasets"] and s["datasets"] != [report["published"].get("dataset")] and not step["own_dataset"]:
        parts.append(f"{', '.join(s['datasets'])} ({', '.join(s['test_images'])} test images), not "
                     f"{report['published'].get('dataset')}")
    if s["epochs"] and s["epochs"] != ["50"]:
        parts.append(f"{', '.join(s['epochs'])} epochs, not 50")
    if s["base_width"] and s["base_width"] != ["64"]:
        parts.append(f"base width {', '.join(s['base_width'])}, not 64")
    if any(v != "None" for v in s["train_subset"]):
        parts.append(f"a {', '.join(s['train_subset'])}-image training subset")
    parts.append(f"{', '.join(s['val_split'])} of train held out to pick the {'/'.join(s['scored'])} checkpoint "
                 f"that is scored (the original trained on all of train and scored its last epoch)")
    parts.append(f"precision {', '.join(s['precision'])} (the original report does not say)")
    if s["batch_size"] and s["batch_size"] != ["256"]:
        parts.append(f"batch {', '.join(s['batch_size'])} where the original ran 256")
    if step.get("setup"):
        parts.append(step["setup"])
    return "Setup vs the original: " + "; ".join(parts) + "."


def own_setup_line(step: dict) -> str:
    s = step["settings"]
    parts = [f"{', '.join(s['datasets'])} ({', '.join(s['test_images'])} test images)",
             f"model {', '.join(s['models'])}", f"{', '.join(s['epochs'])} epochs",
             f"batch {', '.join(s['batch_size'])}", f"precision {', '.join(s['precision'])}"]
    if any(v != "None" for v in s["train_subset"]):
        parts.append(f"a {', '.join(s['train_subset'])}-image training subset")
    parts.append(f"{', '.join(s['val_split'])} of train held out to pick the {'/'.join(s['scored'])} checkpoint "
                 f"that is scored")
    return "Setup: " + "; ".join(parts + ([step["setup"]] if step.get("setup") else [])) + "."


def row_cells(row: dict, reference_s: float | None, lab_reference_s: float | None) -> list[str]:
    acc = fmt(row["test_acc"])
    if row.get("test_acc_std") is not None:
        acc += f" ± {row['test_acc_std']:.4f}"
    if row.get("interval"):
        acc += " [{:.3f}, {:.3f}]".format(*row["interval"])
    counted = [c for c in row.get("correct") or [] if c is not None]
    correct = f"{', '.join(map(str, counted))} / {row['test_images']}" if counted and row["test_images"] else ""
    time = fmt(row.get("train_time_s"), "{:.1f}") + ("" if row.get("time_comparable", True) else " †")
    ratio = fmt(row["train_time_s"] / reference_s, "{:.2f}x") if row.get("train_time_s") and reference_s else ""
    lab_time = row.get("lab_report_time_s")
    lab_ratio = lab_time / lab_reference_s if lab_time and lab_reference_s else None
    status = row["status"] + (f": {row['note']}" if row.get("note") else "")
    label = row["label"] + (f" (from {', '.join(row['borrowed'])})" if row.get("borrowed") else "")
    return [label, acc, correct, fmt(row.get("lab_report_acc")), row.get("vs_lab_report") or "", time, ratio,
            fmt(lab_time, "{:.0f}"), fmt(lab_ratio, "{:.2f}x"),
            fmt(row.get("epochs"), "{:.0f}"), status]


def table(step: dict, report: dict) -> list[str]:
    cells = [row_cells(row, report.get("reference_time_s"), report.get("lab_reference_time_s")) for row in step["jobs"]]
    cells += [[f"(the original report only) {p.get('label') or p.get('value')}", "", "", fmt(p.get("test_acc")), "",
               "", "", fmt(p.get("total_time_s"), "{:.0f}"), "", "", ""] for p in step["published_only"]]
    shown = [i for i in columns(report) if any(row[i] for row in cells)]  # a column empty in every row: left out
    lines = ["| " + " | ".join(HEADER[i] for i in shown) + " |", "|" + "---|" * len(shown)]
    return lines + ["| " + " | ".join(row[i].replace("|", "/").replace("\n", " ") for i in shown) + " |"
                    for row in cells]


def outcome_line(step: dict) -> str | None:
    outcome = step["outcome"]
    status = outcome["status"]
    if status == "skipped":
        return f"**Skipped**: {outcome['reason']}."
    if status == "failed":
        return f"**Failed** (exit {outcome.get('exit_code')}): {outcome.get('error') or 'see the log'} " \
               f"([log]({outcome.get('log')}))."
    if status in ("stopped", "not run"):
        return f"**{status.capitalize()}**{': ' + outcome['reason'] if outcome.get('reason') else ''}; rerun the " \
               "command to continue."
    return None


def step_section(step: dict, report: dict, level: str = "##", inner: list[str] = ()) -> list[str]:
    """A step's heading, outcome, setup line, table, note, figures; `inner`: the sections of the steps it reports
    (a teacher), right under its heading."""
    synthetic = " (synthetic images)" if step.get("synthetic") else ""
    lines = [f"{level} {step['name']}. {step['title']}{synthetic}", ""]
    if synthetic:
        lines += [SYNTHETIC, ""]
    said = outcome_line(step)
    lines += [said, ""] if said else []
    lines += list(inner)
    if step["jobs"] or step["published_only"]:
        lines += [setup_line(step, report), ""] + table(step, report) + [""]
    if step.get("note"):
        lines += [step["note"], ""]
    lines += [f"![{step['name']}: {path.split('/')[-1]}]({path})" for path in step["figures"]]
    return lines + ([""] if step["figures"] else [])


def study_markdown(report: dict) -> str:
    steps = {s["name"]: s for s in report["steps"]}
    lines = [f"# {report['title']} (study {report['study']})", "", f"Command: `{report['command']}`", "",
             "Steps: " + ", ".join(f"{s['name']} {s['outcome']['status']}" for s in report["steps"]) + ".", ""]
    lines += deviation_lines(report["deviations"]) if report.get("deviations") else []
    lines += findings_lines(report)
    ratio = (" and x ResNet10 its ratio to the ResNet10 SGD lr 0.03 run's" if RATIO_COLUMN in
             [HEADER[i] for i in columns(report)] else "")
    published = (" The original report's times are its whole runs' (almost all training)."
                 if has_published(report) else "")
    lines += ["Tables: each setting's accuracy is the mean over its seeds (± their std) with the 95% Wilson interval "
              f"of the test set's noise; train time is the time in training steps (mean over seeds){ratio}. † marks "
              f"a time measured while another job ran at the same time: not comparable.{published}", ""]
    for step in report["steps"]:
        if step.get("report_in") in steps:
            continue
        inner, notes = [], [step.get("note")]
        for part in [s for s in report["steps"] if s.get("report_in") == step["name"]]:
            inner += step_section(part, report, "###")
            notes.append(weaker_teacher(part, step))
        step = dict(step, note=" ".join(n for n in notes if n) or None)
        lines += step_section(step, report, inner=inner + ([f"### {step['name']}: the runs", ""] if inner else []))
    return "\n".join(lines + provenance_lines(report["provenance"])) + "\n"


def weaker_teacher(teacher: dict, step: dict) -> str | None:
    """A line when the teacher step's run scores below runs of the step it teaches: a weak teacher's targets say
    less than the labels, so the step then compares the losses, not what distillation adds. Within the teacher's
    test-set noise it is only no stronger than its students, and the line says that instead."""
    run = next((r for r in teacher["jobs"] if r.get("test_acc") is not None), None)
    above = [r for r in step["jobs"] if run is not None and (r.get("test_acc") or 0) > run["test_acc"]]
    if not above:
        return None
    beaten = ", ".join(f"{r['label']} {r['test_acc']:.4f}" for r in sorted(above, key=lambda r: -r["test_acc"]))
    longer = f"a longer teacher: study.plan.{teacher['name']}.overrides='[\"trainer.max_epochs=N\"]'"
    _, high = wilson_interval(run["test_acc"], run["test_images"]) if run.get("test_images") else (0, 0)
    if max(r["test_acc"] for r in above) <= high:
        return (f"The teacher ({run['test_acc']:.4f}) scores below {beaten}, within its test set's noise (its 95% "
                f"interval reaches {high:.4f}): a teacher no stronger than its students, so this step compares the "
                f"two losses, not what a stronger teacher adds ({longer}).")
    return (f"The teacher ({run['test_acc']:.4f}) scores below {beaten}: its targets are worse than the labels, so "
            f"this step compares the two losses under a weak teacher, not what a good teacher adds ({longer}).")


def rendered_by(facts: dict) -> str:
    commit = (facts.get("rendered_by") or {}).get("git_commit")
    edited = " (with uncommitted changes)" if (facts.get("rendered_by") or {}).get("git_dirty") else ""
    return f"{commit[:12]}{edited}" if commit else "unknown (not a git checkout)"


def provenance_lines(facts: dict) -> list[str]:
    commits = ", ".join(c[:12] for c in facts["git_commits"]) or "unknown"
    dirty = "yes (results from an edited tree)" if facts["git_dirty"] else "no"
    gpus = f" ({', '.join(facts['gpu_names'])})" if facts["gpu_names"] else ""
    s = facts["settings"]
    return ["## Provenance", "",
            f"- code: the jobs trained at git commit {commits}; uncommitted changes: {dirty}",
            f"- this report rendered at git commit {rendered_by(facts)}",
            f"- torch {facts['torch']}, CUDA {facts['cuda']}, Python {facts['python']}",
            f"- devices: {', '.join(facts['devices']) or 'none recorded'}{gpus}; CPU {facts['cpu']}; host "
            f"{facts['host']}",
            f"- seeds {', '.join(s['seeds']) or '-'}; precision {', '.join(s['precision']) or '-'}; batch size "
            f"{', '.join(s['batch_size']) or '-'}; validation split {', '.join(s['val_split']) or '-'}; scored "
            f"checkpoint {', '.join(s['scored']) or '-'}; epochs {', '.join(s['epochs']) or '-'}",
            f"- {facts['jobs_trained']} jobs trained, {facts['jobs_copied']} copied from an identical job of another "
            f"step",
            f"- study wall time: {facts['wall_time_s'] / 60:.1f} min over {facts['commands']} command(s); jobs' "
            f"total time: {facts['GPU-hours']:.3f} GPU-hours, {facts['CPU-hours']:.3f} CPU-hours"]
