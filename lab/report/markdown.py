"""summary.md for lab.report: what was swept and what was held fixed, the per-job table, the seed groups."""
import math

from lab.report.table import NUMERIC_COLUMNS, SEED, cell, key_columns, status_counts

BEST = " ★"


def markdown_table(header: list[str], rows: list[list[str]], right: set[str]) -> str:
    """GitHub markdown, written here so the report needs no tabulate; `right` columns are right-aligned."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
    rule = "|" + "|".join("---:" if h in right else "---" for h in header) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows]) + "\n"


def best_index(values):
    return None if values.dropna().empty else values.idxmax()


def jobs_markdown(table, columns: list[str]) -> str:
    best = best_index(table.test_acc.where(table.status == "ok"))
    rows = []
    for i, job in table.iterrows():
        status = job.status + (f": {job.note[:120]}" if job.note else "")
        values = [cell(c, job[c]) for c in NUMERIC_COLUMNS]
        values[0] += BEST if i == best else ""
        rows.append([cell(k, job[k]) for k in columns] + [status] + values + [job.job])
    return markdown_table(columns + ["status"] + NUMERIC_COLUMNS + ["job"], rows, set(NUMERIC_COLUMNS))


def grouped_markdown(grouped, columns: list[str]) -> str:
    keys = [k for k in columns if k != SEED]
    best = best_index(grouped.test_acc_mean)
    rows = []
    for i, group in grouped.iterrows():
        values = [cell(c, group[f"{c}_mean"]) + ("" if math.isnan(group[f"{c}_std"]) else
                  " ± " + cell(c, group[f"{c}_std"])) for c in NUMERIC_COLUMNS]
        values[0] += BEST if i == best else ""
        rows.append([cell(k, group[k]) for k in keys] + [group.seeds, group.status] + values)
    return markdown_table(keys + ["seeds", "jobs"] + NUMERIC_COLUMNS, rows, set(NUMERIC_COLUMNS))


def summary_markdown(table, grouped, swept: list[str], fixed: list[str], dirs, figures: list) -> str:
    """`fixed`: the overrides every job shares, so the report says what the sweep held constant as well."""
    columns = key_columns(table, swept)
    fixed_text = " ".join(fixed) or "no override common to every job"
    text = [f"# Report: {', '.join(str(d) for d in dirs)}\n",
            f"{len(table)} jobs: {status_counts(table.status)}. Swept: {', '.join(swept) or 'nothing'}. "
            f"{BEST.strip()} marks the best test_acc.\n", f"Fixed: {fixed_text}\n"]
    if grouped is not None:
        text += ["## Mean ± std over seeds (ok jobs only; sample std)\n", grouped_markdown(grouped, columns)]
        text.append("## Jobs\n")
    text.append(jobs_markdown(table, columns))
    text += [f"\n![{path.stem}]({path.name})" for path in figures]
    return "\n".join(text) + "\n"
