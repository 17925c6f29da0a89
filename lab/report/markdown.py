"""summary.md for lab.report: what was swept and what was held fixed, how noisy the accuracies are, the seed
groups, the per-job table."""
from lab.noise import WITHIN_NOISE, wilson_interval
from lab.report.table import NUMERIC_COLUMNS, SEED, cell, key_columns, status_counts

BEST = " ★"
TEST_ACCURACIES = ("test_acc", "test_acc_top5")  # measured on the test set, whose size results.json holds
VS_BEST = "vs best"
TIME_NOTE = ("\ntrain_time_s: time in training steps; total_time_s: the whole job, data loading, validation and "
             "testing included\n")


def markdown_table(header: list[str], rows: list[list[str]], right: set[str]) -> str:
    """GitHub markdown, written here so the report needs no tabulate; `right` columns are right-aligned."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
    rule = "|" + "|".join("---:" if h in right else "---" for h in header) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows]) + "\n"


def best_rows(values) -> set:
    """The rows tied for the highest value; none when every value is NaN."""
    return set(values.index[values == values.max()])


def shown_columns(table) -> list[str]:
    """The numeric columns that say something here: top-5 is left out where every job that has one ran on
    5 classes or fewer (it is 1 there), the teacher's accuracy where no job distills."""
    classes = table.num_classes[table.test_acc_top5.notna()].astype(float)  # NaN: not known, maybe > 5
    hidden = {"test_acc_top5"} if len(classes) and (classes <= 5).all() else set()
    hidden |= {"teacher_val_acc"} if table.teacher_val_acc.isna().all() else set()
    return [c for c in NUMERIC_COLUMNS if c not in hidden]


def interval(column: str, value, n) -> str:
    """' [low, high]': the 95% Wilson interval of a test accuracy from its n test images; '' for other values
    and where n is not known."""
    import pandas as pd

    if column not in TEST_ACCURACIES or pd.isna(value) or pd.isna(n):
        return ""
    low, high = wilson_interval(value, int(n))
    return f" [{low:.3f}, {high:.3f}]"


def jobs_markdown(table, columns: list[str], numeric: list[str]) -> str:
    """One row per job; `vs best` after test_acc."""
    best = best_rows(table.test_acc.where(table.status == "ok"))
    rows = []
    for i, job in table.iterrows():
        status = job.status + (f": {job.note[:120]}" if job.note else "")
        values = [cell(c, job[c]) + interval(c, job[c], job.test_images) +
                  (BEST if c == "test_acc" and i in best else "") for c in numeric]
        rows.append([cell(k, job[k]) for k in columns] + [status] + values[:1] + [job.vs_best] + values[1:] +
                    [job.job])
    header = columns + ["status"] + numeric[:1] + [VS_BEST] + numeric[1:] + ["job"]
    return markdown_table(header, rows, set(numeric))


def mean_cell(group, column: str) -> str:
    """The mean, and its std only where the seeds differ (the std is NaN for one ok job, 0 for equal values)."""
    mean, std = group[f"{column}_mean"], group[f"{column}_std"]
    spread = " ± " + cell(column, std) if std > 0 else ""
    return cell(column, mean) + spread + interval(column, mean, group.test_images)


def grouped_markdown(grouped, columns: list[str], numeric: list[str]) -> str:
    keys = [k for k in columns if k != SEED]
    best = best_rows(grouped.test_acc_mean)
    rows = []
    for i, group in grouped.iterrows():
        values = [mean_cell(group, c) + (BEST if c == "test_acc" and i in best else "") for c in numeric]
        rows.append([cell(k, group[k]) for k in keys] + [group.seeds, group.status] + values)
    return markdown_table(keys + ["seeds", "jobs"] + numeric, rows, set(numeric))


def noise_note(table, grouped) -> str:
    """Said once: what the intervals and `vs best` mean, or why there are none."""
    measured = table[table.test_acc.notna()]
    if measured.empty:
        return ""
    sizes = [f"{n:,}" for n in sorted(measured.test_images.dropna().unique())]
    unknown = "the report cannot know the test-set size: no interval, and vs best gives the difference only"
    if not sizes:
        return f"Noise: results.json holds no test_images, so {unknown}.\n"
    test_sets = f"the test set of {sizes[0]}" if len(sizes) == 1 else f"test sets of {', '.join(sizes)}"
    lines = [f"Noise (95%, from {test_sets} images):", "- [low, high]: the Wilson interval of a test accuracy.",
             f"- {VS_BEST}: `{WITHIN_NOISE}` where a two-proportion z-test at 5% cannot tell the job from the "
             f"best; it takes the two as independent samples, so it errs towards `{WITHIN_NOISE}`."]
    if grouped is not None:
        lines.append("- Over seeds, ± is the std between seeds, and the interval the test set's noise in the "
                     "mean: more seeds on one test set do not narrow it.")
    lines.append("- best_val_acc, teacher_val_acc: results.json holds no validation-set size, so no interval.")
    missing = int(measured.test_images.isna().sum())
    if missing:
        lines.append(f"- {missing} job(s) without test_images in results.json: for those {unknown}.")
    return "\n".join(lines) + "\n"


def summary_markdown(table, grouped, swept: list[str], fixed: list[str], sources: dict, figures: list) -> str:
    """`fixed`: the overrides every job shares, so the report says what the sweep held constant as well.
    `sources`: {source name: DIR}."""
    columns, numeric = key_columns(table, swept), shown_columns(table)
    fixed_text = " ".join(fixed) or "no override common to every job"
    text = [f"# Report: {', '.join(str(d) for d in sources.values())}\n"]
    if len(sources) > 1:
        text.append("Sources: " + "; ".join(f"{name}: {path}" for name, path in sources.items()) + "\n")
    text += [f"{len(table)} jobs: {status_counts(table.status)}. Swept: {', '.join(swept) or 'nothing'}. "
             f"{BEST.strip()} marks the best test_acc (each job that ties for it).\n", f"Fixed: {fixed_text}\n"]
    note = noise_note(table, grouped)
    text += [note] if note else []
    if grouped is not None:
        text += ["## Mean ± std over seeds (ok jobs only; sample std)\n",
                 grouped_markdown(grouped, columns, numeric) + TIME_NOTE, "## Jobs\n"]
    text.append(jobs_markdown(table, columns, numeric) + TIME_NOTE)
    text += [f"\n![{path.stem}]({path.name})" for path in figures]
    return "\n".join(text) + "\n"
