"""summary.md for lab.report: what was swept and what was held fixed, the per-job table, the seed groups."""
from lab.report.table import NUMERIC_COLUMNS, SEED, cell, key_columns, status_counts

BEST = " ★"
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


def jobs_markdown(table, columns: list[str], numeric: list[str]) -> str:
    best = best_rows(table.test_acc.where(table.status == "ok"))
    rows = []
    for i, job in table.iterrows():
        status = job.status + (f": {job.note[:120]}" if job.note else "")
        values = [cell(c, job[c]) + (BEST if c == "test_acc" and i in best else "") for c in numeric]
        rows.append([cell(k, job[k]) for k in columns] + [status] + values + [job.job])
    return markdown_table(columns + ["status"] + numeric + ["job"], rows, set(numeric))


def mean_cell(group, column: str) -> str:
    """The mean, and its std only where the seeds differ (the std is NaN for one ok job, 0 for equal values)."""
    std = group[f"{column}_std"]
    return cell(column, group[f"{column}_mean"]) + (" ± " + cell(column, std) if std > 0 else "")


def grouped_markdown(grouped, columns: list[str], numeric: list[str]) -> str:
    keys = [k for k in columns if k != SEED]
    best = best_rows(grouped.test_acc_mean)
    rows = []
    for i, group in grouped.iterrows():
        values = [mean_cell(group, c) + (BEST if c == "test_acc" and i in best else "") for c in numeric]
        rows.append([cell(k, group[k]) for k in keys] + [group.seeds, group.status] + values)
    return markdown_table(keys + ["seeds", "jobs"] + numeric, rows, set(numeric))


def summary_markdown(table, grouped, swept: list[str], fixed: list[str], sources: dict, figures: list) -> str:
    """`fixed`: the overrides every job shares, so the report says what the sweep held constant as well.
    `sources`: {source name: DIR}."""
    columns, numeric = key_columns(table, swept), shown_columns(table)
    fixed_text = " ".join(fixed) or "no override common to every job"
    text = [f"# Report: {', '.join(str(d) for d in sources.values())}\n"]
    if len(sources) > 1:
        text.append("Sources: " + "; ".join(f"{name}: {path}" for name, path in sources.items()) + "\n")
    text += [f"{len(table)} jobs: {status_counts(table.status)}. Swept: {', '.join(swept) or 'nothing'}. "
             f"{BEST.strip()} marks the best test_acc (every job tied for it).\n", f"Fixed: {fixed_text}\n"]
    if grouped is not None:
        text += ["## Mean ± std over seeds (ok jobs only; sample std)\n",
                 grouped_markdown(grouped, columns, numeric) + TIME_NOTE, "## Jobs\n"]
    text.append(jobs_markdown(table, columns, numeric) + TIME_NOTE)
    text += [f"\n![{path.stem}]({path.name})" for path in figures]
    return "\n".join(text) + "\n"
