"""REPORT.md from a study's report dict (lab/report/study.py builds it), and the provenance block: commits,
versions, devices, wall time and compute hours. Plain markdown with relative links: no HTML."""
import platform

HEADER = ["job", "lab test acc [95% CI]", "vs best", "published", "vs published", "lab time (s)",
          "published time (s)", "epochs", "status"]


def provenance(report: dict, runs: list[dict]) -> dict:
    from lab.run_files import read_results

    results = [read_results(job["run_dir"]) or {} for step in report["steps"] for job in step["jobs"]
               if job.get("run_dir")]
    commits = sorted({r["git_commit"] for r in results if r.get("git_commit")})
    devices = sorted({str(r["device"]) for r in results if r.get("device")})
    hours = {"GPU-hours": 0.0, "CPU-hours": 0.0}
    for r in results:
        kind = "GPU-hours" if "cuda" in str(r.get("device")) else "CPU-hours"
        hours[kind] += (r.get("total_time_s") or 0) / 3600
    return dict(git_commits=commits, git_dirty=any(r.get("git_dirty") for r in results),
                devices=devices, **torch_facts(any("cuda" in d for d in devices)),
                python=platform.python_version(), host=platform.node(),
                wall_time_s=round(sum(r["ended_at"] - r["started_at"] for r in runs), 1), commands=len(runs),
                **{k: round(v, 3) for k, v in hours.items()})


def torch_facts(gpu: bool) -> dict:
    import torch

    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if gpu and torch.cuda.is_available() else []
    return dict(torch=torch.__version__, cuda=torch.version.cuda, gpu_names=sorted(set(names)),
                cpu=platform.processor() or platform.machine())


def fmt(value, spec: str = "{:.4f}") -> str:
    return "" if value is None else spec.format(value)


def acc_cell(row: dict) -> str:
    if row["test_acc"] is None:
        return ""
    text = fmt(row["test_acc"])
    if row.get("seeds"):
        std = row.get("test_acc_std")
        text += f" ± {std:.4f} ({row['seeds']} seeds)" if std is not None else f" ({row['seeds']} seed)"
    if row.get("interval"):
        text += " [{:.4f}, {:.4f}]".format(*row["interval"])
    return text


def row_cells(row: dict) -> list[str]:
    status = row["status"] + (f": {row['note']}" if row.get("note") else "")
    published = fmt(row.get("published_acc"))
    if published and row.get("published_label") not in (None, row["label"], str(row.get("match_value"))):
        published += f" ({row['published_label']})"
    return [row["label"], acc_cell(row), row.get("vs_best") or "", published,
            row.get("vs_published") or "", fmt(row.get("total_time_s"), "{:.1f}"),
            fmt(row.get("published_time_s"), "{:.0f}"), fmt(row.get("epochs"), "{}"), status]


def table(step: dict) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    cells = [row_cells(row) for row in step["jobs"]]
    cells += [[f"(published only) {p.get('label') or p.get('value')}", "", "", fmt(p.get("test_acc")), "", "",
               fmt(p.get("total_time_s"), "{:.0f}"), "", ""] for p in step["published_only"]]
    return lines + ["| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in row) + " |" for row in cells]


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


def step_section(step: dict, level: str = "##", inner: list[str] = ()) -> list[str]:
    """A step's heading, outcome, table, note, figures; `inner`: the sections of the steps it reports
    (a teacher), right under its heading."""
    lines = [f"{level} {step['name']}. {step['title']}", ""]
    said = outcome_line(step)
    if said:
        lines += [said, ""]
    lines += list(inner)
    if step["jobs"] or step["published_only"]:
        lines += table(step) + [""]
    if step.get("note"):
        lines += [step["note"], ""]
    lines += [f"![{step['name']}: {path.split('/')[-1]}]({path})" for path in step["figures"]]
    if step["figures"]:
        lines.append("")
    if step.get("summary"):
        lines += [f"lab's sweep report for this step: [{step['summary']}]({step['summary']})", ""]
    return lines


def teacher_line(teacher: dict, student: dict) -> str | None:
    """The teacher's test accuracy against the student trained alone (match value none)."""
    best = max((r for r in teacher["jobs"] if r["test_acc"] is not None), key=lambda r: r["test_acc"], default=None)
    alone = next((r for r in student["jobs"] if r["match_value"] == "none" and r["test_acc"] is not None), None)
    if best is None or alone is None:
        return None
    verdict = "at or above" if best["test_acc"] >= alone["test_acc"] else "**below**"
    return (f"Teacher ({teacher['name']}) test accuracy {best['test_acc']:.4f} vs the student alone (distill=none) "
            f"{alone['test_acc']:.4f}: the teacher is {verdict} the student.")


def study_markdown(report: dict) -> str:
    steps = {s["name"]: s for s in report["steps"]}
    about = report["published"].get("about")
    lines = [f"# {report['title']} (study {report['study']})", "", f"Command: `{report['command']}`", "",
             "Steps: " + ", ".join(f"{s['name']} {s['outcome']['status']}" for s in report["steps"]) + ".", "",
             f"Published numbers: {about}. Each lab accuracy carries its 95% Wilson interval from its test-set "
             "size; *within noise*: a two-proportion z-test at 5% cannot tell the job from the step's best "
             "(vs best) or from the published number (vs published, only on the published dataset).", "",
             data_line(report), ""]
    for step in report["steps"]:
        if step.get("report_in") in steps:
            continue
        inner = []
        for part in [s for s in report["steps"] if s.get("report_in") == step["name"]]:
            inner += step_section(part, "###")
            said = teacher_line(part, step)
            inner += [said, ""] if said else []
        lines += step_section(step, inner=inner + ([f"### {step['name']}: the runs", ""] if inner else []))
    return "\n".join(lines + provenance_lines(report["provenance"])) + "\n"


def data_line(report: dict) -> str:
    """What lab's numbers were measured on: each dataset and its test-set size."""
    seen = {}
    for step in report["steps"]:
        for row in step["jobs"]:
            if row.get("dataset") and row.get("test_images"):
                seen.setdefault(row["dataset"], set()).add(row.get("test_images"))
    sizes = [f"{name} ({', '.join(str(n) for n in sorted(v, key=str))} test images)" for name, v in seen.items()]
    return f"Lab's numbers: {'; '.join(sizes) or 'no finished jobs yet'}."


def provenance_lines(facts: dict) -> list[str]:
    commits = ", ".join(c[:12] for c in facts["git_commits"]) or "unknown"
    dirty = "yes (results from an edited tree)" if facts["git_dirty"] else "no"
    gpus = f" ({', '.join(facts['gpu_names'])})" if facts["gpu_names"] else ""
    return ["## Provenance", "",
            f"- code: git commit {commits}; uncommitted changes: {dirty}",
            f"- torch {facts['torch']}, CUDA {facts['cuda']}, Python {facts['python']}",
            f"- devices: {', '.join(facts['devices']) or 'none recorded'}{gpus}; CPU {facts['cpu']}; host "
            f"{facts['host']}",
            f"- study wall time: {facts['wall_time_s'] / 60:.1f} min over {facts['commands']} command(s); jobs' "
            f"total time: {facts['GPU-hours']:.3f} GPU-hours, {facts['CPU-hours']:.3f} CPU-hours"]
