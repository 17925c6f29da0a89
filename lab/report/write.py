"""python -m lab.report DIR [DIR ...] [--out OUT]: tables and figures for finished sweeps and runs.

Written to OUT: summary.csv and summary.md (one row per job; markdown.py), summary_grouped.csv when seed is
swept, per_class_acc.csv, and the figures of figures.py. lab.sweeps calls write_report at the end of every
multirun. pandas and matplotlib are imported inside functions so that --help is instant."""
import argparse
import logging
from pathlib import Path

from lab.errors import ReportError, say_user_error
from lab.report.figures import write_figures
from lab.report.markdown import summary_markdown
from lab.report.table import SEED, build_table, group_over_seeds, per_class_table, source_names, status_counts
from lab.run_files import write_atomic
from lab.tuning.report import write_tuning_report

log = logging.getLogger("lab")


def write_report(dirs, out, names=None) -> dict:
    """Tables and figures for the runs under `dirs`, written to `out`. `names`: each DIR's name in the source
    column (None, or None for a DIR: its dir name).

    Returns {"table": per-job DataFrame, "grouped": DataFrame over seeds or None, "swept": keys, "files": paths}."""
    dirs, out = [Path(d) for d in dirs], Path(out)
    names = source_names(dirs, names)
    table, swept, fixed = build_table(dirs, names)
    grouped = group_over_seeds(table, swept) if SEED in swept else None
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "summary.csv"]
    write_atomic(files[0], table.drop(columns=["run_dir", "group"]).to_csv(index=False))
    per_class = per_class_table(table)
    if per_class is not None:
        files.append(out / "per_class_acc.csv")
        write_atomic(files[-1], per_class.to_csv())
    if grouped is not None:
        files.append(out / "summary_grouped.csv")
        write_atomic(files[-1], grouped.drop(columns=["group"]).to_csv(index=False))
    # Tables first: lab.sweeps logs a failing figure and goes on, and the numbers should be there by then.
    figures = write_figures(table, swept, out)
    figures += write_tuning_report(dirs, out)  # a hydra/sweeper=tune study's figures; it writes tuning.md too
    files.append(out / "summary.md")
    write_atomic(files[-1], summary_markdown(table, grouped, swept, fixed, dict(zip(names, dirs)), figures))
    log.info(f"report: {len(table)} jobs ({status_counts(table.status)}) -> {out}")
    return {"table": table, "grouped": grouped, "swept": swept, "files": files + figures}


def named_dirs(arguments: list[str], labels: list[str] | None) -> tuple[list[Path], list[str | None]]:
    """DIR and NAME=DIR arguments, and the --label NAMEs -> (dirs, names; None for a DIR without a name).
    An argument that exists as a path is a DIR, = or not: job dirs are named like optimizer.lr=0.1."""
    dirs, names = [], []
    for argument in arguments:
        name, named, path = argument.partition("=")
        named = named and name and "/" not in name and not Path(argument).exists()
        dirs.append(Path(path if named else argument))
        names.append(name if named else None)
    if labels is not None:
        if len(labels) != len(dirs):
            raise ReportError(f"{len(labels)} --label for {len(dirs)} DIRs; give one --label per DIR, in the "
                              "DIRs' order")
        if any(names):
            raise ReportError("names given as --label and as NAME=DIR; name the DIRs one way or the other")
        names = labels
    return dirs, names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.report", description="Tables and figures for finished sweeps and runs.",
        epilog="Writes summary.csv, summary.md, summary_grouped.csv (seed sweeps), acc_vs_<key>.png, "
               "curves.png and compare.png (categorical sweeps).")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="a run dir (with results.json) or a sweep dir "
                        "whose subdirectories are run dirs; NAME=DIR names its jobs NAME in the source column")
    parser.add_argument("--label", action="append", metavar="NAME", help="the source name of each DIR, once "
                        "per DIR in their order (default: the dir's name)")
    parser.add_argument("--out", type=Path, help="where the report is written; default: DIR itself when one "
                        "DIR is given; required when several are compared")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.out is None and len(args.dirs) > 1:
        return say_user_error(f"{len(args.dirs)} DIRs given; pass --out DIR for the combined report",
                              "lab.report: error")
    try:
        dirs, names = named_dirs(args.dirs, args.label)
        report = write_report(dirs, args.out or dirs[0], names)
    except ReportError as err:
        return say_user_error(err, "lab.report: error")
    print("\n".join(str(path) for path in report["files"]))
    return 0
