"""Embeddings of activations: PCA and t-SNE."""

import numpy as np

from keras_explain import representations as rep


# -- embeddings and pictures ---------------------------------------------------------------
def test_pca_embedding_is_the_top_principal_components():
    x = np.random.default_rng(0).normal(size=(30, 6)) * [5, 3, 1, 1, 1, 1]
    points = rep.embed(x, dims=2)
    u, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    expected = u[:, :2] * s[:2]
    assert points.dtype == np.float32
    # each component is defined up to its sign
    np.testing.assert_allclose(np.abs(points), np.abs(expected), rtol=1e-4, atol=1e-4)


def test_tsne_embedding_is_reproducible_and_separates_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) + 8.0])
    points = rep.embed(x, method="tsne", seed=3)
    np.testing.assert_array_equal(points, rep.embed(x, method="tsne", seed=3))
    centres = points[:20].mean(axis=0), points[20:].mean(axis=0)
    spread = max(points[:20].std(), points[20:].std())
    assert np.linalg.norm(centres[0] - centres[1]) > 3 * spread
