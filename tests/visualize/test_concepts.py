"""plot_concept_atlas: one row per concept, its heatmap and its reference crops."""

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx


def test_the_atlas_shows_each_concept_with_its_share_and_references():
    helpers.seeded(0)
    model = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    x = np.abs(helpers.data((10, 10, 3), seed=1, batch=12))
    crp = kx.crp.CRP(model, "conv")
    relevances = crp.concept_relevance(x[:1])[0, [1, 3]]
    heatmaps = crp.conditional(x[:1], [1, 3])[0]
    references = kx.crp.reference_samples(model, x, "conv", [1, 3], k=3)
    figure = kx.visualize.plot_concept_atlas(x[0], heatmaps, relevances, references)
    assert len(figure.axes) == 2 * (1 + 3)
    share = relevances[0] / np.abs(relevances).sum()
    assert figure.axes[0].get_title() == f"channel 1 · {share:.1%}"
    assert figure.axes[1].get_title() == f"{references.scores[0, 0]:.3g}"
    shown = figure.axes[1].get_images()[0].get_array()
    assert shown.shape == (3, 3, 3)  # the 3x3 receptive field of the unit
    with pytest.raises(ValueError, match=r"plot_concept_atlas needs one relevance per heatmap"):
        kx.visualize.plot_concept_atlas(x[0], heatmaps, relevances[:1])
    with pytest.raises(ValueError, match=r"needs the references of the same concepts"):
        kx.visualize.plot_concept_atlas(x[0], heatmaps[:1], relevances[:1], references)
