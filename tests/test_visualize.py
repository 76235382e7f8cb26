"""Visualization: channel reduction, normalization, colormaps, overlays, figures."""

import re

import helpers
import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex

from keras_explain import visualize

RED, WHITE, BLUE = (1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0)


def rng(seed=0):
    return np.random.default_rng(seed)


# -- reduce_channels ---------------------------------------------------------
@pytest.mark.parametrize(
    "method, reference",
    [
        ("sum", lambda pixel: sum(pixel)),
        ("abs_sum", lambda pixel: sum(abs(v) for v in pixel)),
        ("max", lambda pixel: max(pixel)),
        ("abs_max", lambda pixel: max(abs(v) for v in pixel)),
    ],
)
def test_reduce_channels_matches_pixelwise_reference(method, reference):
    relevance = rng().normal(size=(2, 3, 4, 3)).astype("float32")
    result = visualize.reduce_channels(relevance, method)
    assert result.shape == (2, 3, 4) and result.dtype == np.float32
    for b, i, j in np.ndindex(2, 3, 4):
        assert result[b, i, j] == pytest.approx(reference(list(relevance[b, i, j])), rel=1e-6)


def test_reduce_channels_channel_axis_and_maps_pass_through():
    relevance = rng().normal(size=(2, 3, 4, 5)).astype("float32")
    np.testing.assert_allclose(
        visualize.reduce_channels(relevance, "sum", channel_axis=1), relevance.sum(axis=1)
    )
    cam = rng().random((2, 4, 4)).astype("float32")
    np.testing.assert_array_equal(visualize.reduce_channels(cam, "abs_sum"), cam)
    single = rng().normal(size=(2, 4, 4, 1)).astype("float32")
    np.testing.assert_array_equal(visualize.reduce_channels(single, "none"), single[..., 0])


def test_reduce_channels_errors():
    with pytest.raises(ValueError, match=r"Unknown channel reduction. Received: method='mean'"):
        visualize.reduce_channels(np.ones((1, 2, 2, 3)), "mean")
    with pytest.raises(ValueError, match=r"Received: shape \(1, 1, 2, 2, 3\)"):
        visualize.reduce_channels(np.ones((1, 1, 2, 2, 3)))
    with pytest.raises(ValueError, match="method='none' needs a single channel"):
        visualize.reduce_channels(np.ones((1, 2, 2, 3)), "none")


# -- normalize ---------------------------------------------------------------
def test_normalize_symmetric_matches_reference_per_sample():
    relevance = rng(1).normal(size=(3, 5, 7)).astype("float32")
    relevance[1] *= 100.0  # samples are scaled independently
    result = visualize.normalize(relevance, percentile=90.0)
    for b in range(3):
        scale = helpers.slow_percentile(np.abs(relevance[b]), 90.0)
        expected = np.clip(relevance[b] / scale, -1, 1)
        np.testing.assert_allclose(result[b], expected, rtol=1e-5, atol=1e-6)
    assert result.min() == -1.0 and result.max() == 1.0


def test_normalize_symmetric_keeps_sign_zero_and_is_scale_invariant():
    relevance = rng(2).normal(size=(2, 6, 6))
    relevance[:, 0, 0] = 0.0
    result = visualize.normalize(relevance)
    assert np.all(result[:, 0, 0] == 0.0)
    np.testing.assert_array_equal(np.sign(result), np.sign(relevance))
    np.testing.assert_allclose(visualize.normalize(relevance * 7.5), result, atol=1e-6)
    np.testing.assert_allclose(visualize.normalize(-relevance), -result, atol=1e-6)


def test_normalize_percentile_100_is_max_abs_scaling():
    maps = np.array([[[-2.0, 1.0]], [[0.5, -0.25]]])
    np.testing.assert_allclose(
        visualize.normalize(maps, percentile=100), [[[-1.0, 0.5]], [[1.0, -0.5]]]
    )


def test_normalize_non_negative_maps_to_unit_interval():
    maps = rng(3).random((2, 4, 5)).astype("float32") + 2.0
    result = visualize.normalize(maps, percentile=100)  # auto: not symmetric
    for b in range(2):
        low, high = maps[b].min(), maps[b].max()
        np.testing.assert_allclose(result[b], (maps[b] - low) / (high - low), rtol=1e-5)
    result = visualize.normalize(maps, percentile=80)
    low, high = helpers.slow_percentile(maps[0], 20.0), helpers.slow_percentile(maps[0], 80.0)
    np.testing.assert_allclose(
        result[0], np.clip((maps[0] - low) / (high - low), 0, 1), rtol=1e-4, atol=1e-6
    )


def test_normalize_constant_and_single_map():
    np.testing.assert_array_equal(visualize.normalize(np.full((2, 3, 3), 5.0)), 0.0)
    np.testing.assert_array_equal(visualize.normalize(np.zeros((3, 3)), symmetric=True), 0.0)
    single = np.array([[1.0, -4.0], [2.0, 0.0]])
    np.testing.assert_allclose(
        visualize.normalize(single, percentile=100), [[0.25, -1.0], [0.5, 0.0]]
    )


def test_normalize_errors():
    with pytest.raises(
        ValueError, match=r"percentile must be in \(0, 100\]. Received: percentile=0"
    ):
        visualize.normalize(np.ones((1, 2, 2)), percentile=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        visualize.normalize(np.array([[[np.nan, 1.0]]]))


# -- colours -----------------------------------------------------------------
def test_colormap_bwr_endpoints_and_interpolation():
    # matplotlib's colormaps are lookup tables of 256 colours: exact to 1/255
    colours = visualize.colormap([0.0, 0.25, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(colours, [BLUE, (0.5, 0.5, 1.0), WHITE, RED, RED], atol=1 / 255)
    np.testing.assert_allclose(visualize.colormap([0.0, 1.0], "gray"), [(0, 0, 0), (1, 1, 1)])
    np.testing.assert_array_equal(
        visualize.colormap([0.3], "reds"), visualize.colormap([0.3], "Reds")
    )


def test_colormap_accepts_matplotlib_colormaps():
    viridis = matplotlib.colormaps["viridis"]
    values = np.linspace(0, 1, 5)
    np.testing.assert_allclose(
        visualize.colormap(values, viridis), viridis(values)[:, :3], rtol=1e-6
    )
    with pytest.raises(ValueError, match="Unknown colormap. Received: cmap='nope'"):
        visualize.colormap([0.5], "nope")


def test_heatmap_colours_sign_and_zero():
    relevance = np.zeros((1, 2, 2, 3), "float32")
    relevance[0, 0, 0] = [1.0, 1.0, 0.0]  # sum  2: strongest positive
    relevance[0, 0, 1] = [-2.0, 0.0, 0.0]  # sum -2: strongest negative
    relevance[0, 1, 0] = [0.5, -0.5, 0.0]  # sum  0
    result = visualize.heatmap(relevance, percentile=100)
    assert result.shape == (1, 2, 2, 3) and result.dtype == np.float32
    np.testing.assert_allclose(result[0, 0, 0], RED)
    np.testing.assert_allclose(result[0, 0, 1], BLUE)
    np.testing.assert_allclose(result[0, 1, 0], WHITE, atol=1 / 255)  # a 256-colour table
    np.testing.assert_allclose(result[0, 1, 1], WHITE, atol=1 / 255)


def test_heatmap_non_negative_uses_matplotlib_reds():
    cam = np.array([[[0.0, 1.0], [2.0, 4.0]]])
    result = visualize.heatmap(cam, percentile=100)
    reds = matplotlib.colormaps["Reds"]
    for (row, column), value in {(0, 0): 0.0, (0, 1): 0.25, (1, 0): 0.5, (1, 1): 1.0}.items():
        np.testing.assert_allclose(result[0, row, column], reds(value)[:3], rtol=1e-6)


def test_graymap_is_magnitude():
    relevance = rng(4).normal(size=(2, 5, 5, 2))
    result = visualize.graymap(relevance, percentile=100)
    assert result.shape == (2, 5, 5, 3)
    np.testing.assert_array_equal(result, visualize.graymap(-relevance, percentile=100))
    magnitude = np.abs(relevance).sum(-1)
    expected = magnitude / magnitude.reshape(2, -1).max(1)[:, None, None]
    for channel in range(3):
        np.testing.assert_allclose(result[..., channel], expected, rtol=1e-5)


# -- overlay -----------------------------------------------------------------
def test_as_rgb_scaling_and_channels():
    images = rng(5).random((2, 4, 4, 1)) * 10 + 3
    result = visualize.as_rgb(images)
    for b in range(2):
        scaled = (images[b, ..., 0] - images[b].min()) / (images[b].max() - images[b].min())
        for channel in range(3):
            np.testing.assert_allclose(result[b, ..., channel], scaled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(visualize.as_rgb(np.full((1, 2, 2), 0.5), value_range=(0, 2)), 0.25)
    rgb = rng(6).random((1, 2, 2, 3))
    np.testing.assert_allclose(visualize.as_rgb(rgb, value_range=(0, 1)), rgb, rtol=1e-6)
    many = rng(7).random((1, 2, 2, 5))
    np.testing.assert_allclose(
        visualize.as_rgb(many, value_range=(0, 1))[..., 0], many.mean(-1), rtol=1e-6
    )


def test_overlay_matches_blend_formula():
    images = rng(8).random((2, 6, 6, 1)).astype("float32")
    relevance = rng(9).normal(size=(2, 6, 6, 1)).astype("float32")
    result = visualize.overlay(images, relevance, alpha=0.6, percentile=100)
    values = relevance[..., 0] / np.abs(relevance).reshape(2, -1).max(1)[:, None, None]
    colours = visualize.colormap((values + 1) / 2, "bwr")
    gray = visualize.as_rgb(images)
    weight = 0.6 * np.abs(values)[..., None]
    np.testing.assert_allclose(result, (1 - weight) * gray + weight * colours, atol=1e-6)


def test_overlay_zero_relevance_leaves_image_and_full_relevance_is_colour():
    images = rng(10).random((1, 3, 3, 1))
    relevance = np.zeros((1, 3, 3, 1))
    relevance[0, 1, 1] = 5.0
    relevance[0, 2, 2] = -5.0
    result = visualize.overlay(images, relevance, alpha=1.0, percentile=100)
    gray = visualize.as_rgb(images)
    mask = relevance[0, ..., 0] == 0
    np.testing.assert_array_equal(result[0][mask], gray[0][mask])
    np.testing.assert_allclose(result[0, 1, 1], RED)
    np.testing.assert_allclose(result[0, 2, 2], BLUE)


def test_overlay_accepts_cam_maps_and_converts_colour_images_to_gray():
    images = rng(11).random((2, 4, 4, 3))
    cam = rng(12).random((2, 4, 4))
    result = visualize.overlay(images, cam, alpha=0.0)  # alpha 0: the gray image only
    for b in range(2):
        gray = images[b].mean(-1)
        scaled = (gray - gray.min()) / (gray.max() - gray.min())
        for channel in range(3):
            np.testing.assert_allclose(result[b, ..., channel], scaled, rtol=1e-5, atol=1e-6)
    assert visualize.overlay(images, cam).shape == (2, 4, 4, 3)


def test_overlay_errors():
    with pytest.raises(
        ValueError, match=r"same batch size, height and width.*\(2, 4, 4, 1\).*\(2, 5, 5, 1\)"
    ):
        visualize.overlay(np.ones((2, 4, 4, 1)), np.ones((2, 5, 5, 1)))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]. Received: alpha=2"):
        visualize.overlay(np.ones((1, 4, 4)), np.ones((1, 4, 4)), alpha=2)


def test_to_uint8_rounds():
    np.testing.assert_array_equal(
        visualize.to_uint8([-1.0, 0.0, 0.2, 0.5, 1.0, 3.0]), [0, 0, 51, 128, 255, 255]
    )


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


def test_module_needs_no_tensorflow_and_no_display():
    """kx.visualize imports neither TensorFlow nor pyplot (loaded without the package's
    __init__, which imports TensorFlow for the analyzers)."""
    import os
    import subprocess
    import sys

    package = os.path.dirname(os.path.dirname(visualize.__file__))
    script = (
        "import sys, types\n"
        "stub = types.ModuleType('keras_explain')\n"
        f"stub.__path__ = [{package!r}]\n"
        "sys.modules['keras_explain'] = stub\n"
        "import keras_explain.visualize as module\n"
        "import numpy as np\n"
        "module.overlay(np.ones((1, 4, 4, 1)), np.ones((1, 4, 4, 1)))\n"
        "module.heatmap(np.ones((1, 4, 4, 1)))\n"
        "module.text_heatmap(['a', 'b'], [1.0, -1.0])\n"
        "loaded = ('matplotlib.pyplot', 'tensorflow', 'keras')\n"
        "print(sorted(k for k in loaded if k in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


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


# -- text ------------------------------------------------------------------------------
def span_colours(html):
    """The background colour of every token span, in order."""
    return re.findall(r"background-color: (#[0-9a-f]{6})", html)


@pytest.mark.parametrize("cmap", ["bwr", "coolwarm", "PiYG"])
def test_text_heatmap_signed_scale_hits_the_colormap_ends_and_centre(cmap):
    scores = np.array([0.5, -2.0, 0.0, 1.0])
    colours = span_colours(visualize.text_heatmap(["a", "b", "c", "d"], scores, cmap=cmap))
    function = matplotlib.colormaps[cmap]
    # max |score| (-2) at the low end, 0 at the centre, s at 0.5 + 0.5 s / 2
    assert colours[1] == to_hex(function(0.0))
    assert colours[2] == to_hex(function(0.5))
    assert colours[0] == to_hex(function(0.5 + 0.5 * 0.5 / 2.0))
    assert colours[3] == to_hex(function(0.75))
    positive = span_colours(visualize.text_heatmap(["a", "b"], [3.0, -1.0], cmap=cmap))
    assert positive[0] == to_hex(function(1.0))


def test_text_heatmap_unsigned_scale_and_escaping():
    html = visualize.text_heatmap(
        ["<script>", "ok & fine", "x"], [0.0, 4.0, 1.0], signed=False, cmap="Reds"
    )
    function = matplotlib.colormaps["Reds"]
    assert span_colours(html) == [
        to_hex(function(0.0)),
        to_hex(function(1.0)),
        to_hex(function(0.25)),
    ]
    assert "<script>" not in html and "&lt;script&gt;" in html and "ok &amp; fine" in html


def test_text_heatmap_batch_gives_one_line_per_sample():
    html = visualize.text_heatmap([["a", "b"], ["c", "d"]], [[1.0, 0.0], [0.0, -1.0]])
    assert html.count('<div class="kx-text"') == 2
    function = matplotlib.colormaps["bwr"]
    assert span_colours(html) == [to_hex(function(x)) for x in (1.0, 0.5, 0.5, 0.0)]


def test_text_heatmap_refuses_mismatched_tokens_and_scores():
    with pytest.raises(
        ValueError,
        match=r"text_heatmap needs one score per token\. Received: "
        r"3 tokens and 2 scores\. Drop the padding",
    ):
        visualize.text_heatmap(["a", "b", "c"], [1.0, 2.0])


def test_plot_text_uses_the_same_colours():
    scores = np.array([[-1.0, 0.25, 0.0], [2.0, 1.0, -0.5]])
    figure = visualize.plot_text(
        [["not", "good", "."], ["very", "bad", "film"]], scores, labels=["a", "b"]
    )
    function = matplotlib.colormaps["bwr"]
    for ax, row, words in zip(figure.axes, scores, [["not", "good", "."], ["very", "bad", "film"]]):
        assert [t.get_text() for t in ax.texts] == words
        expected = [function(0.5 + 0.5 * s / np.abs(row).max()) for s in row]
        got = [t.get_bbox_patch().get_facecolor() for t in ax.texts]
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_token_strings_maps_ids_and_refuses_unknown_ids():
    assert visualize.token_strings(np.array([3, 0]), ["", "a", "b", "c"]) == ["c", ""]
    with pytest.raises(
        ValueError,
        match=r"token_strings: token id 9 is outside the vocabulary "
        r"of 4 words",
    ):
        visualize.token_strings([9], ["", "a", "b", "c"])
