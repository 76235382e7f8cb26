"""Localisation and sparseness metrics, by hand."""

import numpy as np

import keras_explain as kx


# =====================================================================================
# Localisation and sparseness, by hand
# =====================================================================================
def test_localisation_by_hand():
    maps = np.array(
        [
            [[0.0, 1.0, 0.0], [2.0, 5.0, -3.0], [0.0, 0.0, 2.0]],
            [[4.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
        ]
    )
    masks = np.array(
        [
            [[0, 1, 0], [0, 1, 1], [0, 0, 0]],
            [[1, 0, 0], [0, 0, 0], [1, 0, 0]],
        ],
        bool,
    )
    # sample 0: peak 5 at (1, 1), inside; sample 1: peaks 4 at (0, 0) and (0, 1), one outside
    np.testing.assert_array_equal(kx.metrics.pointing_game(maps, masks), [1.0, 0.0])
    # positive mass: sample 0 inside 1 + 5 = 6 of 10; sample 1 inside 4 + 1 = 5 of 9
    np.testing.assert_allclose(kx.metrics.relevance_mass(maps, masks), [0.6, 5 / 9], rtol=1e-6)
    # top-3 of sample 0: 5, 2 (1, 0), 2 (2, 2): one inside of 3; top-2 of sample 1: both 4s
    np.testing.assert_allclose(kx.metrics.relevance_rank(maps, masks), [1 / 3, 0.5], rtol=1e-6)
    images = np.stack([maps / 2, maps / 2], axis=-1)  # channels are summed
    np.testing.assert_allclose(kx.metrics.relevance_mass(images, masks), [0.6, 5 / 9], rtol=1e-6)


def test_sparseness_is_the_gini_index():
    """Chalasani et al. 2020: G = sum_k (2k - d - 1) v_(k) / (d sum v), sorted ascending."""
    # [1, 2, 3, 4]: (-3 - 2 + 3 + 12) / (4 * 10) = 0.25; one hot: (d - 1) / d; equal: 0
    values = np.array([[4.0, -1.0, 3.0, 2.0], [0.0, 0.0, 0.0, -7.0], [2.0, 2.0, -2.0, 2.0]])
    np.testing.assert_allclose(kx.metrics.sparseness(values), [0.25, 0.75, 0.0], atol=1e-7)
