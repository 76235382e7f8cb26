"""Token attributions: text_heatmap, plot_text, token_strings."""

import re

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex

from keras_explain import visualize


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
