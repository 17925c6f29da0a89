"""A study's REPORT.md and report.json: the Findings (each claim tested, claims.py), then one section per task in the
study's order: lab's runs grouped by setting over seeds (plain labels, accuracy with its interval and as correct /
total, training time and its ratio to the ResNet10 run), the original report's numbers beside them, the study's own
figures (figures.py), how the setup differs from the original's, and the provenance of every number."""
import statistics
from pathlib import Path

from lab.noise import NOISE_LEVEL, two_proportion_p, wilson_interval
from lab.report.table import config_value, same_value
from lab.run_files import save_png, write_atomic, write_json
from lab.study.claims import findings, matches, overlapping, scored, study_runs
from lab.study.labels import arm_label
from lab.study.markdown import facts_of_runs, provenance, study_markdown
from lab.study.stats import seeds_interval

# Keys that do not tell settings apart: the seed, paths, and where or how a job ran (a resumed job may have
# continued with other threads).
NOT_LABELS = {"seed", "experiment", "resume", "distill.teacher_ckpt", "dataset.root", "cpu_threads", "gpu_pool",
              "progress_every_s", "step_loss_every"}


def label_keys(records: list[dict]) -> list[str]:
    """The overridden keys whose values differ between these runs: what tells their settings apart."""
    from lab.keys import run_overrides

    keys = dict.fromkeys(k for r in records for k, _, _ in run_overrides(r.get("overrides")) if k not in NOT_LABELS)
    return [k for k in keys if len({str(config_value(r, k)) for r in records}) > 1]


def correct_count(run: dict) -> int | None:
    found = scored(run)
    return None if found is None else sum(found[0])


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def std(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else None


def group_row(label: str, values: dict, runs: list[dict], match: str | None, busy: set) -> dict:
    """One setting (`values`: its config values that tell it apart): its runs over seeds as one row."""
    ok = [r for r in runs if r["results"].get("status") == "ok"]
    records = [r["results"] for r in ok]
    n = records[0].get("test_images") if records else None
    acc = mean([r.get("test_acc") for r in records])
    statuses = sorted(r["results"].get("status", "missing") for r in runs)
    notes = [f"{r['job']}: {r['results'].get('error') or r['results'].get('status')}" for r in runs
             if r["results"].get("status") != "ok"]
    return dict(label=label, values=values, jobs=[f"{r['step']}/{r['job']}" for r in runs], status=", ".join(statuses),
                seeds=len(ok), test_acc=acc, test_acc_std=std([r.get("test_acc") for r in records]), test_images=n,
                correct=[correct_count(r) for r in ok], interval=list(wilson_interval(acc, n)) if acc and n else None,
                accuracies=[r.get("test_acc") for r in records],  # per seed, for the figures' points
                seeds_interval=list(seeds_interval([r["test_acc"] for r in records], n)) if acc and n else None,
                train_time_s=mean([r.get("train_time_s") for r in records]),
                epochs=mean([r.get("epochs") for r in records]), time_comparable=not any(r["key"] in busy for r in ok),
                note="; ".join(notes), match_value=str(config_value(runs[0]["results"], match)) if match else "",
                dataset=runs[0]["results"].get("dataset"),
                borrowed=sorted({r["step"] for r in runs if r.get("borrowed")} |  # rows another step ran
                                {r["results"]["same_as"].split("/")[0] for r in runs if r["results"].get("same_as")}),
                run_dirs=[str(r["run_dir"]) for r in runs])


def step_rows(spec: dict, name: str, runs: list[dict], busy: set) -> list[dict]:
    own = [r for r in runs if r["step"] == name]
    borrowed = [dict(r, borrowed=True) for b in spec.get("borrow") or [] for r in runs
                if r["step"] == b["step"] and matches(r["results"], b["arm"])]
    members = own + borrowed
    keys = label_keys([r["results"] for r in members])
    groups = {}
    for run in members:
        values = {k: config_value(run["results"], k) for k in keys or ["model"]}
        groups.setdefault(arm_label(values), (values, []))[1].append(run)
    return [group_row(label, values, group, spec.get("match"), busy) for label, (values, group) in groups.items()]


def add_published(rows: list[dict], published: list[dict], about: dict) -> list[dict]:
    """Each row's numbers in the original report (by the step's match value, else by its label; a step of one row
    and one published row: those two) -> the published rows no row matched."""
    unmatched = list(published)
    for row in rows:
        found = next((p for p in unmatched if same_value(p.get("value"), row["match_value"] or row["label"])
                      or ("value" not in p and len(rows) == 1 and len(published) == 1)), None)
        if found is None:
            continue
        unmatched.remove(found)
        row["lab_report_acc"], row["lab_report_time_s"] = found.get("test_acc"), found.get("total_time_s")
        row["lab_report_label"] = found.get("label")
        same_data = row["dataset"] == about.get("dataset") and about.get("test_images")
        if same_data and row["test_acc"] is not None and row["test_images"] and found.get("test_acc") is not None:
            p = two_proportion_p(row["test_acc"], row["test_images"], found["test_acc"], about["test_images"])
            row["vs_lab_report"] = "within noise" if p >= NOISE_LEVEL else \
                f"{100 * (row['test_acc'] - found['test_acc']):+.1f} pts"
    return unmatched


def reference_times(study: dict, runs: list[dict]) -> tuple[float | None, float | None]:
    """(lab's, the original report's) time of the study's time_reference step (lab_report: t1, ResNet10): the base
    of the "x ResNet10" columns. Lab's is the mean training time of that step's finished runs."""
    step = study.get("time_reference")
    if not step:
        return None, None
    times = [r["results"].get("train_time_s") for r in runs if r["step"] == step and r["results"].get("status") == "ok"]
    published = [p.get("total_time_s") for p in (study["plan"].get(step) or {}).get("published") or []]
    return mean(times), next((t for t in published if t), None)


def step_report(study: dict, out: Path, name: str, outcome: dict | None, runs: list[dict], busy: set) -> dict:
    spec = study["plan"][name] or {}
    rows = step_rows(spec, name, runs, busy)
    unmatched = add_published(rows, spec.get("published") or [], study.get("published") or {})
    outcome = outcome or dict(status="not run" if not rows else "earlier")
    settings = facts_of_runs([r for r in runs if r["step"] == name or any(
        r["step"] == b["step"] and matches(r["results"], b["arm"]) for b in spec.get("borrow") or [])])
    return dict(name=name, title=spec.get("title") or name, note=spec.get("note"), setup=spec.get("setup"),
                outcome=outcome, jobs=rows, published_only=unmatched, report_in=spec.get("report_in"), figures=[],
                settings=settings, own_dataset="dataset" in (spec.get("keep_groups") or []),
                synthetic=bool(spec.get("synthetic")))


def failed_jobs(report: dict) -> list[str]:
    """'step/job' for each failed job, 'step' for a step that failed without a failed job to name."""
    failed = []
    for step in report["steps"]:
        jobs = [job for r in step["jobs"] if "failed" in str(r["status"]) for job in r["jobs"]
                if job.startswith(f"{step['name']}/")]
        failed += jobs or ([step["name"]] if step["outcome"]["status"] == "failed" else [])
    return failed


def write_study_report(study: dict, out: Path, steps, outcomes: dict, runs_log: list[dict], command: str) -> dict:
    from lab.study.deviations import deviations
    from lab.study.figures import draw_step_figures, findings_figure
    from lab.study.timing import TimeProbe  # torch: only when a report is written

    names = [s.name for s in steps]
    names += [n for n in study["plan"] if n not in names and (out / n).is_dir()]  # run by an earlier command
    names = [n for n in study["plan"] if n in names]
    runs = study_runs(out, list(study["plan"]))
    busy = overlapping(runs)
    reference_s, lab_reference_s = reference_times(study, runs)
    report = dict(study=study["name"], title=study.get("title") or study["name"], dir=str(out), command=command,
                  published=study.get("published") or {}, reference_time_s=reference_s,
                  lab_reference_time_s=lab_reference_s,
                  steps=[step_report(study, out, n, outcomes.get(n), runs, busy) for n in names],
                  findings=findings(study, runs, TimeProbe(out / "time_probe.json")))
    for step in report["steps"]:
        step["figures"] = draw_step_figures(step, report, study, out, runs)
    summary = findings_figure(report["findings"])
    report["findings_figure"] = str(save_png(summary, out / "findings.png").relative_to(out)) if summary else None
    report["provenance"] = provenance(report, runs_log, runs)
    # A resumed job rewrites its started_at: the commands' own start times keep the first one.
    starts = [r["results"]["started_at"] for r in runs if r["results"].get("started_at")] + \
        [r["started_at"] for r in runs_log if r.get("started_at")]
    report["deviations"] = deviations(study, [r.get("argv") or [] for r in runs_log], min(starts, default=None))
    write_json(out / "report.json", report)
    write_atomic(out / "REPORT.md", study_markdown(report))
    return report
