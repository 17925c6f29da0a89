"""The report's tables: one row per job read from its run dir, the seed groups, and how a cell reads.

A DIR is a run dir (results.json, metrics.csv, .hydra/) or a sweep dir whose subdirectories are run dirs. A job
is read from its results.json alone (its numbers, overrides, group choices and resolved config) and metrics.csv.
The shared vocabulary of lab.report (column names, cells): figures.py and markdown.py import it from here.
pandas is imported inside functions so that --help is instant."""
from pathlib import Path

from lab.errors import ReportError
from lab.keys import run_overrides
from lab.noise import noise_columns, wilson_interval
from lab.run_files import read_results

RESULT_COLUMNS = ["status", "test_acc", "test_acc_top5", "best_val_acc", "teacher_val_acc", "train_time_s",
                  "total_time_s", "epochs", "params", "images_per_s"]
NUMERIC_COLUMNS = RESULT_COLUMNS[1:]
# What each job's data was: its class count (top-5 is 1 with 5 classes or fewer) and its test-set size.
DATA_COLUMNS = ["num_classes", "test_images"]
SEED, SOURCE = "seed", "source"
FORMATS = {"test_acc": "{:.4f}", "test_acc_top5": "{:.4f}", "best_val_acc": "{:.4f}", "teacher_val_acc": "{:.4f}",
           "train_time_s": "{:.1f}", "total_time_s": "{:.1f}", "epochs": "{:.0f}", "params": "{:,.0f}",
           "images_per_s": "{:.0f}"}
# Values a group option sets without an override (each optimizer option has its own lr, adamw its own weight
# decay, each dataset its batch size): a column of the tables when they differ between jobs.
CONFIG_COLUMNS = ["optimizer.lr", "optimizer.weight_decay", "dataset.batch_size"]
# The weights of a distilling job's loss terms: columns whenever some job distills (distill=none has none).
DISTILL_COLUMNS = ["distill.alpha", "distill.beta"]


def is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("results.json", "metrics.csv", ".hydra"))


def find_run_dirs(path: Path) -> list[Path]:
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path} is not a directory; pass a run dir (outputs/<date>/<time>) or a sweep dir "
                          "(multirun/<date>/<time>)")
    if is_run_dir(path):
        return [path]
    runs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and is_run_dir(p))
    if not runs:
        raise ReportError(f"{path} holds no runs (no results.json, metrics.csv or .hydra/ in it or in its "
                          "subdirectories); pass a run dir or a sweep dir (multirun/<date>/<time>)")
    return runs


def parse_value(text):
    """'0.03' -> 0.03, '10' -> 10, 'adam' -> 'adam' (YAML reads 1e-4 as a string, so config values go here too)."""
    if not isinstance(text, str):
        return text
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def same_value(a, b) -> bool:
    """Two config values as a person means them: 0.001 == 1e-3 == '0.001', False == 'false'; None matches nothing."""
    import math

    if a is None or b in (None, ""):
        return False
    a, b = parse_value(str(a)), parse_value(str(b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9)
    return str(a).lower() == str(b).lower()


def config_value(results: dict | None, key: str):
    """The value a job ran with for a key it did not override: its group choice or resolved config value, as its
    results.json records them."""
    results = results or {}
    if key in (results.get("choices") or {}):
        return results["choices"][key]
    node = results.get("config")
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return parse_value(node) if isinstance(node, (str, int, float)) else None


def job_note(results: dict | None, run_dir: Path) -> str:
    if results is None:
        exists = (run_dir / "results.json").exists()
        return "results.json unreadable" if exists else "no results.json: still running, or killed"
    if results.get("status") == "failed":
        return str(results.get("error") or "")
    if results.get("status") == "diverged":
        return f"loss NaN/inf in epoch {results.get('diverged_epoch')}"
    return ""


def class_count(results: dict | None) -> int | None:
    """results.json's num_classes, else the length of its per_class_acc (written for <= 100 classes)."""
    results = results or {}
    return results.get("num_classes") or len(results.get("per_class_acc") or ()) or None


def load_job(run_dir: Path, source: str) -> dict:
    results = read_results(run_dir)
    kept = run_overrides((results or {}).get("overrides"))
    job = {SOURCE: source, "overrides": {key: parse_value(value) for key, value, _ in kept},
           "override_items": [typed for _, _, typed in kept]}  # as typed (+experiment=...): they paste into a command
    job.update({k: (results or {}).get(k) for k in RESULT_COLUMNS})
    job["status"] = job["status"] or "missing"
    job.update(num_classes=class_count(results), test_images=(results or {}).get("test_images"))
    job.update(job=run_dir.name, note=job_note(results, run_dir), run_dir=str(run_dir), results=results)
    return job


def source_names(dirs: list[Path], given=None) -> list[str]:
    """Each DIR's name in the source column: the one given (None: none), else the dir's own name, or its
    path where two dirs share a name."""
    own = [Path(d).name or str(d) for d in dirs]
    own = own if len(set(own)) == len(own) else [str(d) for d in dirs]
    names = [name or default for name, default in zip(given or [None] * len(dirs), own)]
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            raise ReportError(f"source name {name!r} is given to {names.count(name)} DIRs; give each DIR its own "
                              "name (--label NAME once per DIR, or NAME=DIR)")
    return names


def is_numeric(column) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return is_numeric_dtype(column) and not is_bool_dtype(column) and column.notna().any()


def sort_key(column):
    import pandas as pd

    return pd.to_numeric(column) if is_numeric(column) else column.fillna("").astype(str)


def common_overrides(jobs: list[dict]) -> list[str]:
    """The overrides every job has, as typed: what a sweep held fixed."""
    first, *rest = [job["override_items"] for job in jobs]
    return [item for item in first if all(item in other for other in rest)]


def key_columns(table, swept: list[str]) -> list[str]:
    """The swept keys, then the CONFIG_COLUMNS and DISTILL_COLUMNS that build_table kept: the columns that
    tell jobs apart."""
    return swept + [k for k in CONFIG_COLUMNS + DISTILL_COLUMNS if k in table and k not in swept]


def build_table(dirs: list[Path], names: list[str]):
    """One row per job: swept keys, config values that differ, results, job name; sorted by the swept values.
    `names`: each DIR's source name. -> (table, swept keys, the overrides common to every job)."""
    import pandas as pd

    run_dirs = [find_run_dirs(path) for path in dirs]  # every DIR checked before anything is read
    jobs = [load_job(run_dir, source) for runs, source in zip(run_dirs, names) for run_dir in runs]
    keys = list(dict.fromkeys(k for job in jobs for k in job["overrides"]))
    configured = [k for k in CONFIG_COLUMNS + DISTILL_COLUMNS if k not in keys]
    for job in jobs:  # a key one job overrides and another does not: the other ran the config's value
        job.update({k: job["overrides"].get(k, None) for k in keys})
        job.update({k: config_value(job["results"], k) for k in keys + configured if k not in job["overrides"]})
    table = pd.DataFrame([{k: v for k, v in job.items() if k not in ("overrides", "override_items", "results")}
                          for job in jobs])
    swept = [k for k in keys if table[k].nunique(dropna=False) > 1]
    configured = [k for k in configured if table[k].nunique(dropna=False) > 1 or
                  (k in DISTILL_COLUMNS and table[k].notna().any())]
    if len(dirs) > 1:
        swept.insert(0, SOURCE)
    for column in NUMERIC_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    counts = ["epochs", "params"] + DATA_COLUMNS
    table[counts] = table[counts].apply(pd.to_numeric, errors="coerce").round().astype("Int64")  # not 2.0 by NaN
    table = table[swept + configured + RESULT_COLUMNS + DATA_COLUMNS + ["job", "note", "run_dir"]]
    table = sort_jobs(table, swept, names)
    at = table.columns.get_loc("test_acc") + 1  # each test_acc's interval and comparison next to it
    table = pd.concat([table.iloc[:, :at], noise_columns(table), table.iloc[:, at:]], axis=1)
    table["group"] = group_ids(table, swept)
    return table, swept, common_overrides(jobs)


def sort_jobs(table, swept: list[str], names: list[str]):
    """By the swept values; the sources in the order the DIRs were given (a baseline first)."""
    if not swept:
        return table
    order = {name: i for i, name in enumerate(names)}
    return table.sort_values(swept, key=lambda c: c.map(order) if c.name == SOURCE else sort_key(c),
                             kind="stable").reset_index(drop=True)


def group_ids(table, swept: list[str]) -> list[int]:
    """Jobs that differ only in seed share a group (and a colour); without a seed sweep each job is its own."""
    keys = [k for k in swept if k != SEED]
    if SEED not in swept:
        return list(range(len(table)))
    if not keys:
        return [0] * len(table)
    return list(table.groupby(keys, sort=False, dropna=False).ngroup())


def status_counts(statuses) -> str:
    return ", ".join(f"{n} {status}" for status, n in statuses.value_counts().items())


def group_over_seeds(table, swept: list[str]):
    """Mean and sample std (n-1) of the numeric columns over each group's ok jobs. The std is NaN for a group
    of one ok job and exactly 0 where its jobs agree (epochs, params), not a float residue."""
    import pandas as pd

    rows = []
    for group, jobs in table.groupby("group", sort=True):
        ok = jobs[jobs.status == "ok"]
        row = {k: jobs[k].iloc[0] for k in key_columns(table, swept) if k != SEED}
        row.update(group=group, jobs=len(jobs), ok=len(ok), status=status_counts(jobs.status),
                   seeds=" ".join(cell(SEED, s) for s in jobs[SEED]))
        row.update(num_classes=ok.num_classes.max(), test_images=ok.test_images.max())
        for column in NUMERIC_COLUMNS:
            values = ok[column].astype(float)
            row[f"{column}_mean"] = values.mean()
            row[f"{column}_std"] = 0.0 if values.count() > 1 and values.nunique() == 1 else values.std()
        n, acc = row["test_images"], row["test_acc_mean"]
        # The test set's noise in the mean: the seeds share one test set, so more seeds do not narrow it.
        interval = wilson_interval(acc, int(n)) if pd.notna(n) and pd.notna(acc) else (None, None)
        row["test_acc_mean_low"], row["test_acc_mean_high"] = interval
        rows.append(row)
    return pd.DataFrame(rows)


def cell(column: str, value) -> str:
    import pandas as pd

    if pd.isna(value):
        return ""
    if column in FORMATS:
        return FORMATS[column].format(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def per_class_table(table):
    """Per-class test accuracy, one column per job (results.json has it for datasets of <= 100 classes)."""
    import pandas as pd

    # Named by source too when several dirs are compared: two sweeps may both have optimizer.lr=0.03.
    names = [f"{source}/{job}" if SOURCE in table else job
             for source, job in zip(table.get(SOURCE, table.job), table.job)]
    columns = {name: (read_results(run_dir) or {}).get("per_class_acc") for name, run_dir in zip(names, table.run_dir)}
    columns = {job: acc for job, acc in columns.items() if acc}
    return pd.DataFrame(columns).rename_axis("class") if columns else None
