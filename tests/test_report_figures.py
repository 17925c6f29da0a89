"""lab.report's figures measured after layout: readable labels, honest legends, axes only for real sweeps."""
import pytest

import lab.report.figures as report_figures
from lab.report import write_report
from tests.test_report import make_run

OPTIMIZERS = ["sgd", "adam", "adagrad", "adagrad_lab", "adamw"]


@pytest.fixture
def drawn(monkeypatch):
    """{file name: Figure} of every figure write_report saves, to measure after its layout ran."""
    figures = {}
    save = report_figures.save_png

    def keep(fig, path):
        figures[path.name] = fig
        return save(fig, path)
    monkeypatch.setattr(report_figures, "save_png", keep)
    return figures


def text_boxes(fig, texts) -> list:
    """Window extents (pixels) of the texts that show something, in the figure as drawn by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return [t.get_window_extent(canvas.get_renderer()) for t in texts if t.get_visible() and t.get_text()]


def overlaps(boxes) -> list:
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


def axes_size_in(fig, ax) -> tuple[float, float]:
    box = ax.get_position()
    return box.width * fig.get_figwidth(), box.height * fig.get_figheight()


def two_sweeps(root) -> list:
    """Two optimizer sweeps, one at base_width 16 for 2 epochs, one at 32 for 3: the user's comparison."""
    dirs = []
    for name, width, epochs in (("06-49-54-171793", 16, 2), ("07-12-03-555555", 32, 3)):
        for i, optimizer in enumerate(OPTIMIZERS):
            make_run(root / name / f"optimizer={optimizer}", [f"optimizer={optimizer}", "dataset=digits",
                     f"model.base_width={width}", f"trainer.max_epochs={epochs}"], test_acc=0.8 + 0.01 * i)
        dirs.append(root / name)
    return dirs


@pytest.mark.filterwarnings("error:constrained_layout not applied:UserWarning")
def test_compare_stays_readable_with_ten_jobs_of_sixty_character_labels(tmp_path, drawn):
    for i in range(10):
        dataset = ("cifar100_coarse_labels", "imagefolder_traffic_signs")[i % 2]
        make_run(tmp_path / f"job{i}", [f"optimizer={OPTIMIZERS[i % 5]}", f"model=resnet{(10, 50)[i // 5]}",
                                        f"dataset={dataset}"])
    write_report([tmp_path], tmp_path)
    fig = drawn["compare.png"]
    labels = [t for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()]
    # ~60 characters per bar, e.g. "optimizer=adagrad_lab, model=resnet50, dataset=imagefolder_traffic_signs"
    assert max(len(t.get_text().replace("\n", " ")) for t in labels) >= 60
    assert not overlaps(text_boxes(fig, labels))
    for ax in fig.axes:
        width_in, height_in = axes_size_in(fig, ax)
        assert width_in >= 2.5 and height_in >= 0.3 * 10  # room for ten bars, not axes squeezed to a strip


def test_keys_held_fixed_within_each_source_get_no_axis_and_only_label_the_source(tmp_path, drawn):
    report = write_report(two_sweeps(tmp_path), tmp_path / "out")
    names = {p.name for p in report["files"]}
    assert names == {"summary.csv", "summary.md", "curves.png", "compare.png"}  # base_width: 2 sources, 2 values
    assert list(report["table"]["model.base_width"]) == [16] * 5 + [32] * 5  # still in the table
    compare_labels = [t.get_text() for ax in drawn["compare.png"].axes for t in ax.get_yticklabels()]
    assert "base_width" not in "".join(compare_labels)  # the source names it


def test_a_source_level_key_with_enough_values_is_an_axis_and_its_legend_matches_what_is_drawn(tmp_path, drawn):
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_rgba
    from matplotlib.markers import MarkerStyle

    dirs = []
    for width in (8, 16, 32):
        for lr in (0.01, 0.1):
            make_run(tmp_path / f"w{width}" / f"optimizer.lr={lr}", [f"optimizer.lr={lr}",
                     f"model.base_width={width}"], test_acc=0.5 + width / 100 + lr)
        dirs.append(tmp_path / f"w{width}")
    report = write_report(dirs, tmp_path / "out")
    assert {"acc_vs_optimizer.lr.png", "acc_vs_model.base_width.png"} <= {p.name for p in report["files"]}
    ax = drawn["acc_vs_model.base_width.png"].axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["lr=0.01", "lr=0.1"]  # one line per lr, not per source
    drawn_lines = [line for line in ax.get_lines() if line.get_linestyle() != "None"]  # not the error caps
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(drawn_lines) == len(points) == 2
    for handle, line, scatter in zip(legend.legend_handles, drawn_lines, points):
        assert handle.get_linestyle() == line.get_linestyle()
        assert to_rgba(handle.get_color()) == to_rgba(line.get_color())
        marker = MarkerStyle(handle.get_marker())  # the shape the line's points were drawn with
        shape, drawn_shape = marker.get_path().transformed(marker.get_transform()), scatter.get_paths()[0]
        assert shape.vertices.tolist() == drawn_shape.vertices.tolist() and len(shape) > 1
    assert len({h.get_marker() for h in legend.legend_handles}) == 2


def test_keys_only_failed_jobs_overrode_get_no_figure(tmp_path, drawn):
    """outputs/<date>: two runs, and two that failed on a typo (+sed=1, +optimizer.lrr=0.1)."""
    make_run(tmp_path / "a", ["dataset=digits", "trainer.max_epochs=2"], test_acc=0.87)
    make_run(tmp_path / "b", ["dataset=digits", "trainer.max_epochs=10"], test_acc=0.99)
    make_run(tmp_path / "c", ["+sed=1"], status="failed", test_acc=None, error="ConfigError: sed")
    make_run(tmp_path / "d", ["+optimizer.lrr=0.1"], status="failed", test_acc=None, error="ConfigError: lrr")
    report = write_report([tmp_path], tmp_path)
    assert {p.name for p in report["files"]} == {"summary.csv", "summary.md", "acc_vs_trainer.max_epochs.png",
                                                 "curves.png"}
    assert dict(zip(report["table"].job, report["table"].status)) == {"a": "ok", "b": "ok", "c": "failed",
                                                                      "d": "failed"}
    assert {"sed", "optimizer.lrr"} <= set(report["table"].columns)
    curve_labels = [t.get_text() for t in drawn["curves.png"].legends[0].get_texts()]
    assert not [text for text in curve_labels if "sed" in text or "lrr" in text]


def test_log_lr_axis_tick_labels_do_not_run_together(tmp_path, drawn):
    lrs = [0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.5, 1]  # conf/experiment/lr_sweep.yaml
    for lr in lrs:
        make_run(tmp_path / f"optimizer.lr={lr}", [f"optimizer.lr={lr}"], test_acc=0.9 - lr / 2)
    write_report([tmp_path], tmp_path)
    fig = drawn["acc_vs_optimizer.lr.png"]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert sorted(ax.get_xticks()) == pytest.approx(lrs)  # a tick at every swept lr
    shown = [t for t in ax.get_xticklabels() if t.get_text()]
    assert not overlaps(text_boxes(fig, shown))
    assert {"0.001", "0.01", "0.1", "1"} <= {t.get_text() for t in shown}


def test_one_epoch_runs_show_as_points_in_the_curves(tmp_path, drawn):
    # A line through a single point draws nothing: a 1-epoch sweep's curves.png came out blank.
    for lr in (0.01, 0.1):
        make_run(tmp_path / f"optimizer.lr={lr}", [f"optimizer.lr={lr}"], epochs=1)
    write_report([tmp_path], tmp_path)
    lines = [line for ax in drawn["curves.png"].axes for line in ax.get_lines() if len(line.get_xdata()) == 1]
    assert len(lines) >= 4 and all(line.get_marker() not in (None, "None", "") for line in lines)
