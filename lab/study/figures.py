"""A study's own figures, one set per step, saved in the step's dir as study_*.png (the sweep's own report there
draws per-job figures for the sweep alone):

- accuracy: against the swept number on a log axis (t3's lr), else one point per setting; 95% interval bars, the
  original report's numbers as a second series, the axis zoomed to the data; a second panel of training time (bars).
- loss curves: the training loss of every step (steps.csv) with the schedule's milestones marked (t3b), and for
  distillation the total loss and the distillation term of each arm (t5).

Each setting keeps one colour across a step's figures, and each legend sits inside the panel it describes."""
import csv
from pathlib import Path

from lab.run_files import save_png
from lab.study.labels import arm_label

LAB_STYLE = dict(marker="D", color="0.2", markerfacecolor="white", linestyle="none", label="the original report")


def colours(n: int) -> list:
    from matplotlib import colormaps

    return [colormaps["tab10" if n <= 10 else "tab20"](i % 20) for i in range(n)]


def zoom(ax, lows: list[float], highs: list[float]) -> None:
    """The accuracy axis from a little below the lowest bar or interval to a little above the highest."""
    low, high = min(lows), max(highs)
    pad = max(0.01, 0.08 * (high - low))
    ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))


def interval_of(row: dict) -> tuple[float, float]:
    """The error bar: the interval that holds the seeds' spread and the test set's noise (stats.seeds_interval)."""
    low, high = row.get("seeds_interval") or row.get("interval") or (row["test_acc"], row["test_acc"])
    return row["test_acc"] - low, high - row["test_acc"]


def seed_points(rows: list[dict], place) -> tuple[list, list]:
    """(places, accuracies) of every seed's run: place(i, row) is where row i sits on the other axis."""
    points = [(place(i, r), acc) for i, r in enumerate(rows) for acc in r.get("accuracies") or [] if acc is not None]
    return [p for p, _ in points], [a for _, a in points]


def numeric_axis(rows: list[dict]) -> str | None:
    """The one key that tells the rows apart when it is a number (an lr), else None."""
    keys = set(rows[0]["values"]) if rows else set()
    if len(keys) != 1:
        return None
    key = next(iter(keys))
    numbers = all(isinstance(r["values"][key], (int, float)) and not isinstance(r["values"][key], bool) for r in rows)
    return key if numbers and len(rows) > 2 else None


def accuracy_vs(rows: list[dict], key: str, title: str):
    from matplotlib.figure import Figure

    from lab.study.labels import number

    done = sorted((r for r in rows if r["test_acc"] is not None), key=lambda r: r["values"][key])
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    xs = [r["values"][key] for r in done]
    ax.errorbar(xs, [r["test_acc"] for r in done], yerr=list(zip(*[interval_of(r) for r in done])), color="tab:blue",
                marker="o", capsize=4, label="lab: mean, 95% interval (seeds and test set)")
    ax.plot(*seed_points(done, lambda i, r: r["values"][key]), "x", color="tab:blue", alpha=0.6, label="each seed")
    lab = [(r["values"][key], r["lab_report_acc"]) for r in done if r.get("lab_report_acc") is not None]
    if lab:
        ax.plot(*zip(*lab), **LAB_STYLE)
    if all(x > 0 for x in xs):
        ax.set_xscale("log")
    ax.set(xlabel=arm_label({key: 1}).split(" ")[0] if key.endswith("lr") else key, ylabel="test accuracy",
           title=title)
    seeds = seed_points(done, lambda i, r: i)[1]
    zoom(ax, [r["test_acc"] - interval_of(r)[0] for r in done] + [y for _, y in lab] + seeds,
         [r["test_acc"] + interval_of(r)[1] for r in done] + [y for _, y in lab] + seeds)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_xticks(xs, [number(x) for x in xs], rotation=45)  # every swept value, readable where they crowd
    ax.minorticks_off()
    return fig


def accuracy_bars(rows: list[dict], title: str, reference_s: float | None):
    from matplotlib.figure import Figure

    done = [r for r in rows if r["test_acc"] is not None]
    fig = Figure(figsize=(12, 1.8 + 0.55 * len(done)), layout="constrained")
    ax_acc, ax_time = fig.subplots(1, 2, sharey=True)
    y, palette = list(range(len(done))), colours(len(done))
    # Points, not bars: the axis is zoomed to the data, and a bar's length from a cut axis would exaggerate gaps.
    for i, row in enumerate(done):
        ax_acc.errorbar([row["test_acc"]], [i], xerr=[[interval_of(row)[0]], [interval_of(row)[1]]], fmt="o",
                        color=palette[i], capsize=4, label="lab: mean, 95% interval (seeds and test set)" if i == 0
                        else None)
    ax_acc.plot(*seed_points(done, lambda i, r: i)[::-1], "x", color="0.3", alpha=0.7, label="each seed")
    lab = [(r["lab_report_acc"], i) for i, r in enumerate(done) if r.get("lab_report_acc") is not None]
    if lab:
        ax_acc.plot(*zip(*lab), **LAB_STYLE)
    seeds = seed_points(done, lambda i, r: i)[1]
    lows = [r["test_acc"] - interval_of(r)[0] for r in done] + [x for x, _ in lab] + seeds
    highs = [r["test_acc"] + interval_of(r)[1] for r in done] + [x for x, _ in lab] + seeds
    pad = max(0.01, 0.08 * (max(highs) - min(lows)))
    ax_acc.set_xlim(max(0.0, min(lows) - pad), min(1.0, max(highs) + pad))
    ax_acc.set(xlabel="test accuracy", title="Test accuracy")
    ax_acc.legend(loc="best", fontsize="small")
    times = [r.get("train_time_s") or 0 for r in done]
    bars = ax_time.barh(y, times, color=palette, edgecolor="black")
    labels = [f"{t:.3g} s" + (f" ({t / reference_s:.2g}x ResNet10)" if reference_s else "") for t in times]
    ax_time.bar_label(bars, labels, padding=3, fontsize="small")
    ax_time.margins(x=0.35)
    ax_time.set(xlabel="training time (s)", title="Training time")
    for ax in (ax_acc, ax_time):
        ax.grid(axis="x", alpha=0.3)
    ax_acc.set_yticks(y, [r["label"] for r in done])
    ax_acc.invert_yaxis()
    fig.suptitle(title)
    return fig


def read_rows(path: Path) -> list[dict]:
    try:
        with open(path) as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def milestone_steps(run_dir: Path, milestones: list[int]) -> list[int]:
    """The first step of each milestone epoch, from steps.csv's (step, epoch) pairs."""
    first = {}
    for row in read_rows(run_dir / "steps.csv"):
        first.setdefault(int(row["epoch"]), int(row["step"]))
    return [first[m] for m in milestones if m in first]


def loss_per_step(rows: list[dict], title: str):
    """Every run's per-step training loss, one colour per setting, the schedule's milestones as dashed lines."""
    import json

    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.subplots()
    ran = set()  # the milestones the runs used, which the step's title may not (a shorter study moves them)
    for row, colour in zip(rows, colours(len(rows))):
        for i, run_dir in enumerate(map(Path, row["run_dirs"])):
            steps = read_rows(run_dir / "steps.csv")
            ax.plot([int(r["step"]) for r in steps], [float(r["train_loss"]) for r in steps], color=colour, lw=0.7,
                    alpha=0.8, label=row["label"] if i == 0 else None)
            config = json.loads((run_dir / "results.json").read_text()).get("config") or {}
            milestones = list((config.get("scheduler") or {}).get("milestones") or [])
            ran.update(milestones)
            for step in milestone_steps(run_dir, milestones):
                ax.axvline(step, color=colour, ls="--", lw=1)
    ax.plot([], [], color="0.3", ls="--", label="milestone (lr x gamma)")
    ax.set_yscale("log")
    ran_text = f"\n(the runs' milestones: epochs {', '.join(map(str, sorted(ran)))})" if ran else ""
    ax.set(xlabel="training step", ylabel="training loss (every step, log scale)", title=title + ran_text)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    return fig


def distill_losses(rows: list[dict], title: str):
    """Per epoch: each arm's total training loss, and its distillation term."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax_total, ax_term = fig.subplots(1, 2)
    for row, colour in zip(rows, colours(len(rows))):
        for i, run_dir in enumerate(map(Path, row["run_dirs"])):
            metrics = read_rows(run_dir / "metrics.csv")
            epochs = [int(m["epoch"]) for m in metrics]
            ax_total.plot(epochs, [float(m["train_loss"]) for m in metrics], color=colour, marker="o", ms=3,
                          label=row["label"] if i == 0 else None)
            term = [(e, float(m["train_distill"])) for e, m in zip(epochs, metrics) if m.get("train_distill")]
            if term:
                ax_term.plot(*zip(*term), color=colour, marker="o", ms=3, label=row["label"] if i == 0 else None)
    ax_total.set(xlabel="epoch", ylabel="training loss", title="Total loss (alpha CE + beta distillation term)")
    ax_term.set(xlabel="epoch", ylabel="distillation term", title="Distillation term: KL x T^2 and MSE are different "
                "losses,\nso their values are not compared with each other, only each one's course")
    for ax in (ax_total, ax_term):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    fig.suptitle(title)
    return fig


VERDICT_COLOURS = {"supported": "tab:green", "contradicted": "tab:red"}  # not resolved: grey


def panel_limits(rows: list[tuple[str, dict]], ratio: bool, scale) -> tuple[float, float]:
    """The x range: every interval and bound with a margin (multiplicative on the log axis of ratios)."""
    values = [scale(v) for _, r in rows for v in (r["low"], r["high"])] + [1.0 if ratio else 0.0]
    if ratio:
        values += [f for _, r in rows for f in (r.get("factor") or 1.0, 1 / (r.get("factor") or 1.0))]
        low, high = min(values), max(values)
        return low / 1.15, high * 1.15
    values += [s * 100 * (r.get("margin") or 0) for _, r in rows for s in (-1, 1)]
    pad = 0.1 * (max(values) - min(values) or 1)
    return min(values) - pad, max(values) + pad


def sub_claim_panel(ax, rows: list[tuple[str, dict]], ratio: bool) -> None:
    """One sub-claim a row: its difference (points) or ratio with the 95% interval, coloured by verdict, over the
    region its claim asserts (shaded, clipped to the panel) and the line of no difference."""
    scale = (lambda v: v) if ratio else (lambda v: 100 * v)
    left, right = panel_limits(rows, ratio, scale)
    for y, (label, row) in enumerate(rows):
        m, f = 100 * (row.get("margin") or 0), row.get("factor") or 1.0
        low, high = {"a_close": (-m, m), "a_not_worse": (-m, None), "a_better": (0, None), "a_slower": (f, None),
                     "a_similar_time": (1 / f, f), "a_steadier": (None, 1)}[row["asserts"]]
        ax.fill_betweenx([y - 0.4, y + 0.4], left if low is None else low, right if high is None else high,
                         color="tab:green", alpha=0.12, lw=0)
        colour = VERDICT_COLOURS.get(row["verdict"], "0.5")
        estimate = scale(row["estimate"])
        ax.errorbar([estimate], [y], xerr=[[estimate - scale(row["low"])], [scale(row["high"]) - estimate]],
                    fmt="o", color=colour, capsize=4)
    ax.axvline(1 if ratio else 0, color="0.3", lw=1)
    if ratio:
        ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("ratio a / b (log scale)" if ratio else "difference a - b (accuracy points)")


def findings_figure(findings: list[dict]):
    """Every measured sub-claim at a glance: green where it is supported, red contradicted, grey not resolved; the
    shaded region is what the sub-claim asserts (its margin band, its factor). None when nothing was measured."""
    from matplotlib.figure import Figure

    from lab.study.judging import ACCURACY

    measured = [(f"{c['id']}{chr(ord('a') + i)}. {r['a']} vs {r['b']}", r) for c in findings
                for i, r in enumerate(c["comparisons"]) if "estimate" in r]
    panels = [(rows, ratio) for rows, ratio in (([m for m in measured if m[1]["asserts"] in ACCURACY], False),
                                                ([m for m in measured if m[1]["asserts"] not in ACCURACY], True))
              if rows]
    if not panels:
        return None
    heights = [len(rows) for rows, _ in panels]
    fig = Figure(figsize=(11, 1.2 + 0.42 * sum(heights) + 0.6 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, gridspec_kw=dict(height_ratios=heights), squeeze=False)[:, 0]
    for ax, (rows, ratio) in zip(axes, panels):
        sub_claim_panel(ax, rows, ratio)
    fig.suptitle("Every sub-claim: green supported, red contradicted, grey not resolved; shaded: what it asserts")
    return fig


def draw_step_figures(step: dict, report: dict, study: dict, out: Path, runs: list[dict]) -> list[str]:
    """The step's figures, saved in its dir; -> their paths relative to the study dir."""
    rows = [r for r in step["jobs"] if r["test_acc"] is not None]
    inner = [dict(r, label=f"teacher ({r['label']})") for s in report["steps"] if s.get("report_in") == step["name"]
             for r in s["jobs"] if r["test_acc"] is not None]
    if not rows:
        return []
    drawn, title = {}, step["title"]
    key = numeric_axis(rows)
    if key:
        drawn["study_accuracy.png"] = accuracy_vs(rows, key, title)
    else:
        drawn["study_accuracy.png"] = accuracy_bars(rows + inner, title, report.get("reference_time_s"))
    if any((r["values"].get("scheduler") == "multistep") for r in rows):
        drawn["study_loss_per_step.png"] = loss_per_step(rows, f"{title}: training loss at every step")
    if any(str(r["values"].get("distill")) in ("soft_target", "logits", "both") for r in rows):
        drawn["study_distill_losses.png"] = distill_losses(rows, f"{title}: the losses each arm minimised")
    return [str(save_png(fig, out / step["name"] / name).relative_to(out)) for name, fig in drawn.items()]
