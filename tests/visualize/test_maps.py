"""Relevance as pictures: channel reduction, normalization, colormaps, heatmaps, overlays."""

import helpers
import matplotlib
import numpy as np
import pytest
from helpers import rng

from keras_explain import visualize

RED, WHITE, BLUE = (1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0)


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
