"""The run's own plots: whole-epoch ticks, plain log tick labels, zeros per layer over time, and a
weights plot that means something for a model with a handful of weights."""

import numpy as np
import pytest

from reglab.plots import learning_curve_figure, weight_figure


def history(epochs: int, zeros: bool) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_acc": 0.1 * e, "val_acc": 0.09 * e,
             "zeros/body.0.weight": 10.0 * e if zeros else 0.0, "zeros/head.weight": 5.0 * e if zeros else 0.0}
            for e in range(1, epochs + 1)]


def drawn(fig):
    fig.canvas.draw()
    return fig


def test_epoch_ticks_are_whole_and_log_ticks_are_plain_numbers():
    fig = drawn(learning_curve_figure(history(3, zeros=False), "run"))
    loss, acc = fig.axes
    for ax in (loss, acc):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert loss.get_yscale() == "log"
    labels = [t.get_text() for t in loss.get_yticklabels(minor=True) + loss.get_yticklabels() if t.get_text()]
    assert labels and all("$" not in text and "10^" not in text for text in labels)
    assert all(float(text) > 0 for text in labels)


def test_zeros_per_layer_over_time_in_percent_when_there_are_zeros():
    assert len(learning_curve_figure(history(4, zeros=False), "run").axes) == 2
    fig = learning_curve_figure(history(4, zeros=True), "run")
    zeros = fig.axes[2]
    assert zeros.get_ylabel() == "exact zeros (%)"
    lines = {line.get_label(): line.get_ydata() for line in zeros.get_lines()}
    assert list(lines["body.0.weight"]) == pytest.approx([10, 20, 30, 40])
    assert list(lines["head.weight"]) == pytest.approx([5, 10, 15, 20])


def test_a_few_weights_are_drawn_one_by_one_and_many_as_a_histogram():
    fig = weight_figure({"head.weight": np.array([[1.5, 0.0, -0.5]])}, "ridge")
    (ax,) = fig.axes
    assert [p.get_height() for p in ax.patches] == pytest.approx([1.5, 0.0, -0.5])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["head.weight[0]", "head.weight[1]", "head.weight[2]"]
    assert "33.3%" in ax.get_title()
    many = weight_figure({"w": np.random.default_rng(0).normal(size=(50, 40))}, "mlp")
    assert len(many.axes[0].patches) == 120 and many.axes[0].get_yscale() == "log"
