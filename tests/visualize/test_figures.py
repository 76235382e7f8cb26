"""Figure grids: plot_explanations, plot_features, plot_sequences."""

import helpers
import matplotlib
import numpy as np
import pytest
from helpers import rng

from keras_explain import visualize


# -- plot_explanations -------------------------------------------------------
def test_plot_explanations_grid():
    images = rng(13).random((3, 8, 8, 1))
    explanations = {
        "gradient": rng(14).normal(size=(3, 8, 8, 1)),
        "grad_cam": rng(15).random((3, 8, 8)),
    }
    figure = visualize.plot_explanations(images, explanations, labels=["a", "b", "c"])
    assert isinstance(figure, matplotlib.figure.Figure)
    axes = np.array(figure.axes).reshape(3, 3)  # rows = samples, columns = input + methods
    assert [ax.get_title() for ax in axes[0]] == ["input", "gradient", "grad_cam"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["a", "b", "c"]
    shown = axes[1, 1].get_images()[0].get_array()
    np.testing.assert_allclose(shown, visualize.heatmap(explanations["gradient"])[1])
    shown = axes[2, 2].get_images()[0].get_array()
    np.testing.assert_allclose(shown, visualize.heatmap(explanations["grad_cam"])[2])


def test_plot_explanations_overlay_kind_and_options():
    images = rng(16).random((2, 8, 8, 1))
    relevance = rng(17).normal(size=(2, 8, 8, 1))
    figure = visualize.plot_explanations(
        images, {"m": relevance}, kind="overlay", show_input=False, alpha=0.3
    )
    assert len(figure.axes) == 2
    np.testing.assert_allclose(
        figure.axes[1].get_images()[0].get_array(),
        visualize.overlay(images, relevance, alpha=0.3)[1],
    )


def test_plot_explanations_errors():
    images = np.ones((2, 4, 4, 1))
    with pytest.raises(ValueError, match=r"'m' has 3 samples but images has 2"):
        visualize.plot_explanations(images, {"m": np.ones((3, 4, 4, 1))})
    with pytest.raises(ValueError, match="Unknown kind. Received: kind='pie'"):
        visualize.plot_explanations(images, {"m": np.ones((2, 4, 4, 1))}, kind="pie")
    with pytest.raises(ValueError, match="explanations is empty"):
        visualize.plot_explanations(images, {})
    with pytest.raises(ValueError, match=r"labels needs one entry per sample \(2\)"):
        visualize.plot_explanations(images, {"m": np.ones((2, 4, 4, 1))}, labels=["x"])
    with pytest.raises(ValueError, match="add the batch axis"):
        visualize.plot_explanations(np.ones((4, 4)), {"m": np.ones((4, 4))})


def test_plot_explanations_wraps_methods_into_bands():
    images = rng(18).random((2, 4, 4, 1))
    explanations = {f"m{i}": rng(19 + i).normal(size=(2, 4, 4, 1)) for i in range(5)}
    figure = visualize.plot_explanations(images, explanations, max_columns=2)
    axes = np.array(figure.axes).reshape(6, 3)  # 3 bands x 2 samples, input + 2 methods
    assert [ax.get_title() for ax in axes[0]] == ["input", "m0", "m1"]
    assert [ax.get_title() for ax in axes[2]] == ["input", "m2", "m3"]
    assert [ax.get_title() for ax in axes[4]] == ["input", "m4", ""]
    assert not axes[4, 2].axison and not axes[5, 2].axison
    np.testing.assert_allclose(
        axes[3, 2].get_images()[0].get_array(), visualize.heatmap(explanations["m3"])[1]
    )


# -- tabular and sequence plots ----------------------------------------------------------
def test_plot_features_bars_are_the_signed_values_with_names_and_colours():
    values = {
        "lime": np.array([[0.5, -0.25, 0.0], [-1.0, 0.75, 0.1]]),
        "occlusion": np.array([[2.0, 0.0, -4.0], [1.0, 1.0, 1.0]]),
    }
    figure = visualize.plot_features(values, ["age", "bmi", "bp"], labels=["p1", "p2"])
    axes = np.array(figure.axes).reshape(2, 2)  # rows = samples, columns = methods
    bwr = matplotlib.colormaps["bwr"]
    for column, array in enumerate(values.values()):
        largest = np.abs(array).max()
        for row in range(2):
            ax = axes[row, column]
            bars = ax.patches
            # one bar per feature, in order, as long as the attribution (not normalized)
            np.testing.assert_allclose([bar.get_width() for bar in bars], array[row])
            assert [bar.get_y() + bar.get_height() / 2 for bar in bars] == [0, 1, 2]
            expected = bwr((array[row] / largest + 1) / 2)[:, :3]
            np.testing.assert_allclose(
                [bar.get_facecolor()[:3] for bar in bars], expected, atol=1e-6
            )
            assert ax.get_xlim() == pytest.approx((-1.05 * largest, 1.05 * largest))
            assert ax.get_ylim()[0] > ax.get_ylim()[1]  # first feature on top
    assert [t.get_text() for t in axes[0, 0].get_yticklabels()] == ["age", "bmi", "bp"]
    assert [ax.get_title() for ax in axes[0]] == ["lime", "occlusion"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["p1", "p2"]
    # positive red, negative blue
    first = axes[0, 0].patches
    assert first[0].get_facecolor()[0] > first[0].get_facecolor()[2]
    assert first[1].get_facecolor()[2] > first[1].get_facecolor()[0]


def test_plot_features_one_sample_default_names_and_errors():
    figure = visualize.plot_features({"m": [1.0, -2.0]})
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["x0", "x1"]
    with pytest.raises(ValueError, match=r"one feature name per feature \(2\)\. Received 3"):
        visualize.plot_features({"m": np.ones((1, 2))}, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"plot_features draws .*\(batch, features\).*plot_expl"):
        visualize.plot_features({"m": np.ones((1, 4, 4, 1))})
    with pytest.raises(ValueError, match=r"'b' has shape \(1, 3\), the first one \(1, 2\)"):
        visualize.plot_features({"a": np.ones((1, 2)), "b": np.ones((1, 3))})
    with pytest.raises(ValueError, match="plot_features: explanations is empty"):
        visualize.plot_features({})
    with pytest.raises(ValueError, match=r"labels needs one entry per sample \(1\)"):
        visualize.plot_features({"m": np.ones((1, 2))}, labels=["a", "b"])


def test_plot_sequences_strips_match_a_bwr_reference_and_draw_the_signal():
    attributions = rng(20).normal(size=(2, 30, 3))
    signal = np.cumsum(rng(21).normal(size=(2, 30, 1)), axis=1)
    figure = visualize.plot_sequences({"ig": attributions}, signal, percentile=90)
    bwr = matplotlib.colormaps["bwr"]
    for row in range(2):
        ax = figure.axes[row]
        reduced = attributions[row].sum(axis=-1)  # channel sum, the default reduction
        scale = helpers.slow_percentile(np.abs(reduced), 90)
        expected = bwr((np.clip(reduced / scale, -1, 1) + 1) / 2)[None, :, :3]
        np.testing.assert_allclose(ax.images[0].get_array(), expected, atol=1e-5)
        (line,) = ax.get_lines()
        np.testing.assert_array_equal(line.get_xdata(), np.arange(30))
        # the signal, affinely scaled into the strip
        assert np.corrcoef(line.get_ydata(), signal[row, :, 0])[0, 1] == pytest.approx(1.0)
        assert 0.1 - 1e-6 <= line.get_ydata().min() and line.get_ydata().max() <= 0.9 + 1e-6


def test_plot_sequences_errors():
    with pytest.raises(ValueError, match=r"'b' has shape \(2, 5\), expected \(2, 4, \.\.\.\)"):
        visualize.plot_sequences({"a": np.ones((2, 4)), "b": np.ones((2, 5))})
    with pytest.raises(ValueError, match=r"sequences shaped \(2, 4\) or \(2, 4, C\)"):
        visualize.plot_sequences({"a": np.ones((2, 4))}, np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"\(batch, length\[, C\]\).*use plot_explanations"):
        visualize.plot_sequences({"a": np.ones((2, 4, 4, 1))})
    with pytest.raises(ValueError, match="every explanation needs the same batch size"):
        visualize.plot_sequences({"a": np.ones((2, 4)), "b": np.ones((3, 4))})
