"""What every figure of lab.report shares: line styles and markers, job labels, the left-out count in titles,
and the placeholder drawn when there is nothing to draw."""
from lab.report.table import cell, status_counts

LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]


def short_names(keys: list[str]) -> dict:
    """optimizer.lr -> lr in legends, unless two swept keys end the same."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def label(job, keys: list[str]) -> str:
    short = short_names(keys)
    return ", ".join(f"{short[k]}={cell(k, job[k])}" for k in keys) or job["job"]


def left_out(table) -> str:
    out = table[table.status != "ok"]
    return f"\n{len(out)} job(s) left out: {status_counts(out.status)}" if len(out) else ""


def empty_figure(title: str, message: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    fig.suptitle(title)
    return fig


def seeded(table) -> bool:
    return table.group.nunique() < len(table)


def wrap(text: str, width: int = 34) -> str:
    """'a=1, b=2, ...' on lines of at most `width` characters, broken after a comma where it can be."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))
