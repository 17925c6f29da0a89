"""Figures for lab.report: test accuracy vs each numeric swept key, a bar comparison, and (curves.py) the
training curves; write_figures picks which to draw and saves them.

Only ok jobs are drawn and each title counts the jobs left out. One group (a job, or the seeds of one setting)
keeps one colour in every figure. Figures are matplotlib.figure.Figure objects, not pyplot ones: no global
backend switch and no figure left open when the report runs at the end of a sweep. Constrained layout keeps
two-line titles, the lr axis and the outside legend from overlapping."""
from pathlib import Path

from lab.report.curves import curves
from lab.report.figure_parts import LINESTYLES, MARKERS, empty_figure, label, left_out, seeded, wrap
from lab.report.table import SEED, SOURCE, cell, is_numeric
from lab.run_files import save_png

# A key held fixed within each source but different between sources (two sweeps, at base_width 16 and 32) is a
# property of the source, not a swept axis: the source's name labels it and the tables list its values. It
# gets an acc_vs axis of its own only with this many values, enough for a trend; two are compare.png's A vs B.
MIN_SOURCE_AXIS_VALUES = 3


def group_colours(n: int) -> list:
    from matplotlib import colormaps

    if n <= 20:  # qualitative maps keep neighbours distinguishable
        cmap = colormaps["tab10" if n <= 10 else "tab20"]
        return [cmap(i) for i in range(n)]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def tick_swept_values(fig, ax, key: str, values: list) -> None:
    """A tick at each swept value (not 10^-2) while there are few, labelled where the label fits: 0.05 and
    0.07 run together on a log lr axis. Powers of ten are labelled first, then the rest left to right.
    Call it last: whether a label fits is known only once the layout with title and legend has run."""
    import math

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if len(values) > 12:
        return
    ax.set_xticks(values, [cell(key, v) for v in values])
    ax.minorticks_off()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ticks, texts, kept = ax.xaxis.get_major_ticks(len(values)), [cell(key, v) for v in values], []
    decade = [v > 0 and abs(math.log10(v) - round(math.log10(v))) < 1e-9 for v in values]
    for i in sorted(range(len(values)), key=lambda i: (not decade[i], values[i])):
        box = ticks[i].label1.get_window_extent(canvas.get_renderer()).padded(3)  # 3 px of space between
        if any(box.overlaps(other) for other in kept):
            texts[i] = ""
        else:
            kept.append(box)
    ax.set_xticks(values, texts)


def acc_vs(table, key: str, line_keys: list[str], colours: list):
    """Test accuracy vs one numeric key: one line per combination of the other swept keys, points in the
    jobs' colours, error bars the std over seeds."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    title = f"Test accuracy vs {key}" + (" (mean ± std over seeds)" if seeded(table) else "") + left_out(table)
    ok = table[(table.status == "ok") & table.test_acc.notna() & table[key].notna()]
    if ok.empty:
        return empty_figure(title, "no finished jobs with a test accuracy")
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    lines = ok.groupby(line_keys, sort=False, dropna=False) if line_keys else [((), ok)]
    handles = []
    for i, (_, jobs) in enumerate(lines):
        points = jobs.groupby("group").agg(x=(key, "first"), acc=("test_acc", "mean"), std=("test_acc", "std"))
        points = points.sort_values("x")
        line, marker = dict(color="0.35", ls=LINESTYLES[i % 4]), MARKERS[i % len(MARKERS)]
        ax.errorbar(points.x, points.acc, yerr=points["std"].fillna(0), capsize=4, zorder=1, **line)
        ax.scatter(points.x, points.acc, c=[colours[g] for g in points.index], marker=marker, s=60,
                   edgecolors="black", zorder=2)
        # Each point has its job's colour (the same in every figure), so what tells the lines apart is the dash
        # and the marker's shape: the handle shows those, uncoloured.
        handles.append(Line2D([], [], marker=marker, markersize=8, markerfacecolor="white",
                              markeredgecolor="black", label=label(jobs.iloc[0], line_keys), **line))
    if key.endswith("lr") and (ok[key] > 0).all():
        ax.set_xscale("log")  # learning rates are swept in factors, not steps
    ax.set(xlabel=key, ylabel="test accuracy")
    ax.grid(alpha=0.3)
    if line_keys:
        ax.legend(handles=handles, fontsize="small")
    fig.suptitle(title)
    tick_swept_values(fig, ax, key, sorted(ok[key].unique()))
    return fig


def compare(table, keys: list[str], colours: list):
    """Bars of test accuracy and train time per job (per setting, mean ± std, when seeds are swept).

    The bars are horizontal so that labels of any length read level beside them (rotated labels under
    vertical bars squeezed the axes to nothing), and the figure grows with the number of bars."""
    from matplotlib.figure import Figure

    title = "Test accuracy and train time" + (" (mean ± std over seeds)" if seeded(table) else "")
    title += left_out(table)
    ok = table[table.status == "ok"]
    if ok.empty:
        return empty_figure(title, "no finished jobs")
    groups = ok.groupby("group").agg(acc=("test_acc", "mean"), acc_std=("test_acc", "std"),
                                     time=("train_time_s", "mean"), time_std=("train_time_s", "std"))
    names = [wrap(label(ok[ok.group == g].iloc[0], keys)) for g in groups.index]
    text_lines = max(name.count("\n") + 1 for name in names)
    bar_in = max(0.4, 0.2 * text_lines + 0.15)  # a 10-pt line of text is ~0.17 in high; a gap between bars
    fig = Figure(figsize=(13, 1.6 + bar_in * len(groups)), layout="constrained")
    y = list(range(len(groups)))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, column, xlabel, fmt in zip(axes, ("acc", "time"), ("test accuracy", "train time (s)"),
                                       ("%.4f", "%.1f")):
        bars = ax.barh(y, groups[column], xerr=groups[f"{column}_std"].fillna(0), capsize=4, edgecolor="black",
                       color=[colours[g] for g in groups.index])
        ax.bar_label(bars, fmt=fmt, padding=3, fontsize="small")
        ax.margins(x=0.15)  # room for the value at the end of the longest bar
        ax.set(xlabel=xlabel, title=xlabel[0].upper() + xlabel[1:])
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()  # the table's order, top to bottom (the axes share y)
    fig.get_layout_engine().set(wspace=0.08)  # the right panel has no labels on its left to keep them apart
    fig.suptitle(title)
    return fig


def figure_keys(table, swept: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(keys that label the jobs, keys held fixed within each source, numeric keys that get an acc_vs axis).

    Only the jobs that did not fail count: a typo such as +sed=1 fails at start-up, and its key is a mistake,
    not an axis (the tables still show it, with the job's status)."""
    runs = table[table.status != "failed"]
    keys = [k for k in swept if k != SEED and runs[k].nunique(dropna=False) > 1]
    per_source = []
    if SOURCE in keys:
        per_source = [k for k in keys if k != SOURCE and
                      (runs.groupby(SOURCE)[k].nunique(dropna=False) <= 1).all()]
    labels = [k for k in keys if k not in per_source]
    axes = [k for k in keys if k != SOURCE and is_numeric(runs[k]) and
            (k not in per_source or runs[k].nunique() >= MIN_SOURCE_AXIS_VALUES)]
    return labels, per_source, axes


def keys_between_lines(key: str, labels: list[str], per_source: list[str]) -> list[str]:
    """The keys that tell acc_vs's lines apart: the other labels. Along a source-level key the source itself
    changes, so there the other source-level keys tell the lines apart instead of the source."""
    if key in per_source:
        return [k for k in labels + per_source if k not in (key, SOURCE)]
    return [k for k in labels if k != key]


def write_figures(table, swept: list[str], out: Path) -> list[Path]:
    """acc_vs_<key>.png per numeric swept key, curves.png, and compare.png when a swept key is categorical."""
    labels, per_source, axes = figure_keys(table, swept)
    colours = group_colours(int(table.group.max()) + 1 if len(table) else 0)
    figures = {f"acc_vs_{key.replace('/', '_')}.png":
               acc_vs(table, key, keys_between_lines(key, labels, per_source), colours) for key in axes}
    figures["curves.png"] = curves(table, [k for k in swept if k in labels or k == SEED], colours)
    if any(k not in axes for k in labels):
        figures["compare.png"] = compare(table, labels, colours)
    files = [save_png(fig, out / name) for name, fig in figures.items()]
    return files
