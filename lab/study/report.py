"""A study's REPORT.md and report.json: one section per task in the study's order, lab's jobs beside the
published numbers (matched by the step's `match` key), each accuracy with its 95% Wilson interval, a "within
noise" mark where a two-proportion test cannot tell a job from the step's best, the figures lab.sweep drew in
each step's dir (relative links: it renders on a code host), and the provenance of every number."""
import math
from pathlib import Path

from lab.errors import ReportError
from lab.noise import NOISE_LEVEL, two_proportion_p, versus, wilson_interval
from lab.report.table import build_table, cell, config_value, group_over_seeds, parse_value
from lab.run_files import read_results, write_atomic, write_json
from lab.study.markdown import provenance, study_markdown

SEED = "seed"


def step_jobs(out: Path, step, match: str | None) -> tuple[list[dict], bool]:
    """The step's jobs as report rows (per seed group when seeds are swept) -> (rows, seeds swept)."""
    import pandas as pd

    try:
        table, swept, _ = build_table([out / step], [step])
    except ReportError:
        return [], False
    keys = [k for k in swept if k != SEED]
    for i, job in table.iterrows():
        table.loc[i, "match_value"] = str(config_value(read_results(Path(job.run_dir)), match)) if match else ""
        table.loc[i, "label"] = job_label(job, keys, match)
        table.loc[i, "dataset"] = (read_results(Path(job.run_dir)) or {}).get("dataset")
    if SEED not in swept:
        return [job_row(job) for _, job in table.iterrows()], False
    grouped = group_over_seeds(table, swept)
    rows = []
    for group, jobs in table.groupby("group", sort=True):
        mean = grouped[grouped.group == group].iloc[0]
        first = jobs.iloc[0]
        rows.append(dict(job_row(first), job=" ".join(jobs.job), status=str(mean.status),
                         test_acc=none_if_nan(mean.test_acc_mean), test_acc_std=none_if_nan(mean.test_acc_std),
                         seeds=int(mean.ok), total_time_s=none_if_nan(mean.total_time_s_mean),
                         test_images=None if pd.isna(mean.test_images) else int(mean.test_images), note=""))
    return rows, True


def job_label(job, keys: list[str], match: str | None) -> str:
    if keys:
        return ", ".join(f"{k}={cell(k, job[k])}" for k in keys)
    if match:
        return f"{match}={job.match_value}"
    # A single run's dir name (0) says nothing: its model does (a published label replaces it, add_published).
    model = (read_results(Path(job.run_dir)) or {}).get("model")
    return f"{model}, one run" if model else str(job.job)


def none_if_nan(value):
    try:
        return None if value is None or math.isnan(float(value)) else float(value)
    except (TypeError, ValueError):
        return None


def job_row(job) -> dict:
    import pandas as pd

    n = None if pd.isna(job.test_images) else int(job.test_images)
    return dict(label=job.label, job=job.job, match_value=job.match_value, status=job.status,
                test_acc=none_if_nan(job.test_acc), test_images=n, total_time_s=none_if_nan(job.total_time_s),
                epochs=None if pd.isna(job.epochs) else int(job.epochs), dataset=job.dataset,
                note=str(job.note or ""), run_dir=str(job.run_dir))


def add_noise(rows: list[dict]) -> None:
    """Each row's interval, and how it stands against the step's best ok row."""
    ok = [r for r in rows if r["test_acc"] is not None and (r["status"] == "ok" or r.get("seeds"))]
    best = max(ok, key=lambda r: r["test_acc"], default=None)
    for row in rows:
        acc, n = row["test_acc"], row["test_images"]
        row["interval"] = list(wilson_interval(acc, n)) if acc is not None and n else None
        row["vs_best"] = versus(acc, n, best["test_acc"], best["test_images"])[0] if best and row in ok else ""


def add_published(rows: list[dict], published: list[dict], about: dict) -> list[dict]:
    """Sets each row's published numbers (by match value; a step without match: its one row) -> the published
    rows no job matched."""
    unmatched = list(published)
    for row in rows:
        found = next((p for p in unmatched if same_value(p.get("value"), row["match_value"])
                      or ("value" not in p and len(rows) == 1 and len(published) == 1)), None)
        if found is None:
            continue
        unmatched.remove(found)
        row["published_acc"], row["published_time_s"] = found.get("test_acc"), found.get("total_time_s")
        row["published_label"] = found.get("label") or str(found.get("value"))
        if (str(row["label"]).endswith(", one run") or str(row["label"]).isdigit()) and found.get("label"):
            row["label"] = found["label"]
        same_data = row["dataset"] == about.get("dataset") and about.get("test_images")
        if same_data and row["test_acc"] is not None and row["test_images"] and found.get("test_acc") is not None:
            p = two_proportion_p(row["test_acc"], row["test_images"], found["test_acc"], about["test_images"])
            row["vs_published"] = "within noise" if p >= NOISE_LEVEL else \
                f"{100 * (row['test_acc'] - found['test_acc']):+.1f} pts"
    return unmatched


def same_value(a, b) -> bool:
    if a is None or b in (None, ""):
        return False
    a, b = parse_value(str(a)), parse_value(str(b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9)
    return str(a) == str(b)


def step_report(study: dict, out: Path, name: str, outcome: dict | None) -> dict:
    spec = study["plan"][name] or {}
    rows, seeds = step_jobs(out, name, spec.get("match"))
    add_noise(rows)
    unmatched = add_published(rows, spec.get("published") or [], study.get("published") or {})
    step_dir = out / name
    figures = sorted(p.name for p in step_dir.glob("*.png")) if step_dir.is_dir() else []
    outcome = outcome or dict(status="not run" if not rows else "earlier")
    return dict(name=name, title=spec.get("title") or name, note=spec.get("note"), outcome=outcome,
                jobs=rows, seeds=seeds, published_only=unmatched, report_in=spec.get("report_in"),
                figures=[f"{name}/{f}" for f in figures],
                summary=f"{name}/summary.md" if (step_dir / "summary.md").is_file() else None)


def failed_jobs(report: dict) -> list[str]:
    """'step/job' for each failed job, 'step' for a step that failed without a failed job to name."""
    failed = []
    for step in report["steps"]:
        jobs = [f"{step['name']}/{r['job']}" for r in step["jobs"] if "failed" in str(r["status"])]
        failed += jobs or ([step["name"]] if step["outcome"]["status"] == "failed" else [])
    return failed


def write_study_report(study: dict, out: Path, steps, outcomes: dict, runs: list[dict], command: str) -> dict:
    names = [s.name for s in steps]
    names += [n for n in study["plan"] if n not in names and (out / n).is_dir()]  # run by an earlier command
    names = [n for n in study["plan"] if n in names]
    report = dict(study=study["name"], title=study.get("title") or study["name"], dir=str(out), command=command,
                  published=study.get("published") or {},
                  steps=[step_report(study, out, n, outcomes.get(n)) for n in names])
    report["provenance"] = provenance(report, runs)
    write_json(out / "report.json", report)
    write_atomic(out / "REPORT.md", study_markdown(report))
    return report
