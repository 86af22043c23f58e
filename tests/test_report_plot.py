"""The accuracy plot: one colour per curriculum in every panel and the legend, a visible mark on
bars of height 0, and a title naming the run, its model and its seed."""

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pytest
from matplotlib.container import BarContainer

from pbb.evaluation.report import PLOT, accuracy_figure, plot_title, write_report


def result(curriculum: str, mode: str, split: str, accuracy: float) -> dict:
    return {"curriculum": curriculum, "mode": mode, "split": split, "accuracy": accuracy,
            "ci_low": max(0.0, accuracy - 0.1), "ci_high": min(1.0, accuracy + 0.1),
            "n_behaviours": 10, "n_samples": 20}


#: as a quickstart run has them: untuned answers eval behaviours only, and scores 0% in recall
RESULTS = [result("proactive", "recall", "eval", 0.9), result("proactive", "cot", "eval", 0.4),
           result("proactive", "recall", "train", 1.0), result("proactive", "cot", "train", 0.6),
           result("stage1_only", "recall", "eval", 0.1), result("stage1_only", "cot", "eval", 0.2),
           result("stage1_only", "recall", "train", 1.0),
           result("stage1_only", "cot", "train", 0.5),
           result("untuned", "recall", "eval", 0.0), result("untuned", "cot", "eval", 0.05)]
ORDER = ["proactive", "stage1_only", "untuned"]


@pytest.fixture
def figure():
    fig = accuracy_figure(RESULTS, ORDER, "quickstart: model tiny-random, seed 3")
    yield fig
    plt.close(fig)


def bar_colours(ax) -> dict[str, tuple]:
    """curriculum -> the colour of its bars in one panel (each bar of a curriculum the same)."""
    out = {}
    for container in ax.containers:
        if not isinstance(container, BarContainer):
            continue  # the error bars
        colours = {mcolors.to_hex(p.get_facecolor()) for p in container.patches}
        assert len(colours) == 1
        out[container.get_label()] = colours.pop()
    return out


def test_each_curriculum_has_one_colour_in_every_panel_and_the_legend(figure):
    eval_ax, train_ax = figure.axes[:2]
    in_eval, in_train = bar_colours(eval_ax), bar_colours(train_ax)
    assert set(in_eval) == set(ORDER) and set(in_train) == {"proactive", "stage1_only"}
    assert all(in_train[c] == in_eval[c] for c in in_train)
    assert len(set(in_eval.values())) == 3  # three curricula, three colours
    legend = train_ax.get_legend()
    shown = {t.get_text(): mcolors.to_hex(h.get_facecolor())
             for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert shown == in_eval


def test_the_colour_follows_the_config_order_not_the_bars_drawn():
    # only untuned has results here: it still gets the third colour of the config's order
    fig = accuracy_figure([result("untuned", "cot", "eval", 0.3)], ORDER)
    try:
        alone = bar_colours(fig.axes[0])["untuned"]
    finally:
        plt.close(fig)
    fig = accuracy_figure(RESULTS, ORDER)
    try:
        assert alone == bar_colours(fig.axes[0])["untuned"] != bar_colours(fig.axes[0])["proactive"]
    finally:
        plt.close(fig)


def test_a_zero_bar_carries_a_visible_mark_in_its_colour(figure):
    eval_ax = figure.axes[0]
    untuned = next(c for c in eval_ax.containers
                   if isinstance(c, BarContainer) and c.get_label() == "untuned")
    zero = [p for p in untuned.patches if p.get_height() == 0]
    assert len(zero) == 1  # untuned/recall
    x = zero[0].get_x() + zero[0].get_width() / 2
    colour = mcolors.to_hex(zero[0].get_facecolor())
    labels = [t for t in eval_ax.texts if t.get_text() == "0%"]
    assert len(labels) == 1
    assert labels[0].get_position() == pytest.approx((x, 100 * 0.1 + 1))  # above the interval
    assert mcolors.to_hex(labels[0].get_color()) == colour
    strokes = [line for line in eval_ax.lines  # (error bar caps are markers without a line)
               if list(line.get_ydata()) == [0, 0] and line.get_linestyle() != "None"]
    assert len(strokes) == 1 and mcolors.to_hex(strokes[0].get_color()) == colour
    assert sorted(strokes[0].get_xdata()) == pytest.approx([zero[0].get_x(),
                                                            zero[0].get_x() + zero[0].get_width()])
    assert not [t for t in figure.axes[1].texts if t.get_text() == "0%"]  # no zero bar there


def test_the_title_names_the_run_model_and_seed(figure, tmp_path):
    assert figure._suptitle.get_text() == "quickstart: model tiny-random, seed 3"
    summary = {"name": "quickstart", "model": "tiny-random", "domain": "arithmetic", "seed": 3,
               "results": RESULTS, "comparisons": [], "stages": {c: [] for c in ORDER}}
    assert plot_title(summary) == "quickstart: model tiny-random, seed 3"
    write_report(tmp_path, summary)
    assert (tmp_path / PLOT).stat().st_size > 0
