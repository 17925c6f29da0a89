"""curves.png for lab.report: per-epoch train loss with the lr schedule, and validation accuracy."""
from pathlib import Path

from lab.report.figure_parts import LINESTYLES, empty_figure, label, left_out


def read_metrics(run_dir):
    import pandas as pd

    try:
        metrics = pd.read_csv(Path(run_dir) / "metrics.csv")
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    metrics = metrics.apply(pd.to_numeric, errors="coerce")  # empty cells (train_distill off) -> NaN
    return metrics if "epoch" in metrics and len(metrics) else None


def draw_lr(ax, runs: list, colours: list) -> bool:
    """The lr schedule on a right axis, only when some job's lr changes over epochs (MultiStepLR, cosine)."""
    runs = [(job, m) for job, m in runs if "lr" in m and m.lr.notna().any()]
    if not any(m.lr.nunique() > 1 for _, m in runs):
        return False
    ax_lr = ax.twinx()
    for job, m in runs:
        # steps: the lr is constant within an epoch, so a sloped line would misdraw MultiStepLR
        ax_lr.plot(m.epoch, m.lr, color=colours[job.group], ls=":", lw=1.5, alpha=0.8, drawstyle="steps-post")
    if all((m.lr.dropna() > 0).all() for _, m in runs):
        ax_lr.set_yscale("log")  # MultiStepLR's /10 steps are equal steps on a log axis
    ax_lr.set_ylabel("learning rate (dotted)")
    return True


def curves(table, keys: list[str], colours: list):
    """Per-epoch train loss (with the lr schedule) and validation accuracy of every ok job."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    title = "Training curves" + left_out(table)
    runs = [(job, read_metrics(job.run_dir)) for _, job in table[table.status == "ok"].iterrows()]
    no_metrics = sum(m is None for _, m in runs)
    runs = [(job, m) for job, m in runs if m is not None]
    title += f"\n{no_metrics} ok job(s) without metrics.csv" if no_metrics else ""
    if not runs:
        return empty_figure(title, "no finished jobs with a metrics.csv")
    # Distilled runs' train_loss mixes in the distillation term; their cross-entropy part (train_ce) is what
    # compares with a student trained alone, whose train_loss is its cross-entropy.
    distilled = any("train_ce" in m and m.train_ce.notna().any() for _, m in runs)
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    seen = {}  # group -> jobs drawn so far: the seeds of one setting share a colour, not a line style
    for job, m in runs:
        style = dict(color=colours[job.group], ls=LINESTYLES[seen.get(job.group, 0) % 4], label=label(job, keys),
                     marker="o" if len(m) < 3 else None)  # a line through one point draws nothing
        seen[job.group] = seen.get(job.group, 0) + 1
        has_ce = "train_ce" in m and m.train_ce.notna().any()
        for ax, column in ((ax_loss, "train_ce" if has_ce else "train_loss"), (ax_acc, "val_acc")):
            if column in m:
                ax.plot(m.epoch, m[column], **style)
    handles, labels = ax_acc.get_legend_handles_labels()
    if draw_lr(ax_loss, runs, colours):
        handles.append(Line2D([], [], color="0.4", ls=":"))
        labels.append("learning rate (left panel, right axis)")
    ax_loss.set(xlabel="epoch", ylabel="train cross-entropy" if distilled else "train loss",
                title="Train cross-entropy (the distillation term left out)" if distilled else "Train loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(handles, labels, loc="outside right center", fontsize="small", ncol=1 + len(labels) // 25)
    fig.suptitle(title)
    return fig
