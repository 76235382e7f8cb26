"""SpRAy on maps with known strategies: clusters, eigengap, eigenvalues, inputs, errors."""

import helpers
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import keras_explain as kx


def strategies(n=90, seed=0, size=16):
    """Heatmaps of two strategies: a blob on the object (anywhere) or the top-left corner."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:size, :size] / size
    maps = rng.uniform(0, 0.05, (n, size, size, 3)).astype("float32")
    corner = np.arange(n) % 3 == 0  # a third use the shortcut
    for i in range(n):
        cy, cx = (0.06, 0.06) if corner[i] else rng.uniform(0.35, 0.8, 2)
        maps[i] += np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 0.01)[..., None]
    return maps, corner


def normalized_laplacian_eigenvalues(features, neighbors):
    """Dense reference: symmetric kNN connectivity (Euclidean), L = I - D^-1/2 A D^-1/2."""
    distances = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :neighbors]
    adjacency = np.zeros(distances.shape)
    np.put_along_axis(adjacency, nearest, 1.0, axis=1)
    adjacency = np.maximum(adjacency, adjacency.T)
    scale = 1 / np.sqrt(adjacency.sum(1))
    laplacian = np.eye(len(features)) - scale[:, None] * adjacency * scale[None]
    return np.linalg.eigvalsh(laplacian)


def test_the_shortcut_strategy_is_its_own_cluster_and_the_eigengap_says_two():
    maps, corner = strategies()
    state = np.random.get_state()
    result = kx.spray.analyze(maps, size=(8, 8), embedding="spectral")
    assert result.suggested == 2
    assert adjusted_rand_score(corner, result.clusters) == 1.0
    np.testing.assert_array_equal(result.indices, np.arange(90))
    assert result.embedding.shape == (90, 2) and result.prototypes.shape == (2, 8, 8)
    assert sorted(result.sizes.tolist()) == [30, 60]
    assert np.all(result.separation > 0.5)
    small = int(np.argmin(result.sizes))
    assert result.prototypes[small][:2, :2].mean() > result.prototypes[small][4:, 4:].mean()
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's generator untouched


@pytest.mark.parametrize("method", ["agglomerative", "dbscan", "hdbscan"])
def test_every_clustering_finds_the_strategies(method):
    maps, corner = strategies(seed=1)
    result = kx.spray.analyze(maps, size=(8, 8), method=method, embedding="spectral")
    shortcut = set(result.clusters[corner].tolist())
    assert len(shortcut) == 1 and shortcut != {-1}  # the corner maps: one cluster ...
    assert not shortcut & set(result.clusters[~corner].tolist())  # ... of their own
    if method != "hdbscan":  # HDBSCAN splits the diffuse strategy into several
        assert adjusted_rand_score(corner, result.clusters) >= 0.9


def test_the_eigenvalues_equal_a_dense_reference_and_prototypes_are_cluster_means():
    maps, _ = strategies(n=40, seed=2)
    result = kx.spray.analyze(maps, size=(4, 4), neighbors=6, components=None, embedding="tsne")
    from skimage.transform import resize

    small = resize(maps.sum(-1), (40, 4, 4), anti_aliasing=True, preserve_range=True)
    features = small.reshape(40, -1)
    features /= np.abs(features).max(1, keepdims=True)
    expected = normalized_laplacian_eigenvalues(features, 6)[: len(result.eigenvalues)]
    np.testing.assert_allclose(result.eigenvalues, expected, atol=1e-6)
    for cluster, prototype in enumerate(result.prototypes):
        members = features[result.clusters == cluster].mean(0).reshape(4, 4)
        np.testing.assert_allclose(prototype, members, rtol=1e-5, atol=1e-6)
    assert result.embedding.shape == (40, 2)


def test_per_class_results_index_the_data_and_concept_relevances_cluster_too():
    maps, corner = strategies(n=60, seed=3)
    labels = np.repeat([0, 1], 30)
    results = kx.spray.analyze(maps, labels, size=(8, 8), clusters=2, embedding="spectral")
    assert sorted(results) == [0, 1]
    np.testing.assert_array_equal(results[1].indices, np.arange(30, 60))
    for label, result in results.items():
        assert adjusted_rand_score(corner[labels == label], result.clusters) == 1.0
    concepts = np.where(corner[:, None], [5.0, 0.1, 0.1, 0.2], [0.1, 3.0, 2.0, 0.1])
    concepts += np.random.default_rng(4).uniform(0, 0.3, concepts.shape)
    result = kx.spray.analyze(concepts, clusters=2, embedding="spectral")
    assert adjusted_rand_score(corner, result.clusters) == 1.0
    assert result.prototypes.shape == (2, 4)


def test_an_explain_dataset_directory_equals_its_arrays(tmp_path):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=5, batch=30)
    maps = kx.explain_dataset(
        "gradient", model, x, out_dir=tmp_path / "maps", batch_size=7, verbose=0
    )
    from_directory = kx.spray.analyze(tmp_path / "maps", size=(4, 4), embedding="spectral")
    from_arrays = kx.spray.analyze(np.asarray(maps), size=(4, 4), embedding="spectral")
    np.testing.assert_array_equal(from_directory.clusters, from_arrays.clusters)
    np.testing.assert_array_equal(from_directory.eigenvalues, from_arrays.eigenvalues)
    checked = kx.spray.analyze(
        tmp_path / "maps", size=(4, 4), embedding="spectral", model=model, analyzer="gradient"
    )
    np.testing.assert_array_equal(checked.clusters, from_arrays.clusters)
    with pytest.raises(ValueError, match=r"holds the explanations of another method: 'gradient'"):
        kx.spray.analyze(tmp_path / "maps", analyzer="lrp.epsilon")
    other = helpers.conv_sequential(seed=1)
    with pytest.raises(ValueError, match=r"holds the explanations of another model: .* \(the same"):
        kx.spray.analyze(tmp_path / "maps", model=other)


def test_bad_input_is_named():
    maps, _ = strategies(n=20)
    with pytest.raises(ValueError, match=r"spray.analyze clusters heatmaps \(n, H, W\) or"):
        kx.spray.analyze(np.zeros(5))
    with pytest.raises(ValueError, match=r"spray.analyze needs more maps than neighbors \+ 1"):
        kx.spray.analyze(maps[:8], neighbors=10)
    with pytest.raises(ValueError, match=r"spray.analyze: Unknown method. Received: method='x'"):
        kx.spray.analyze(maps, method="x")
    with pytest.raises(ValueError, match=r"labels needs one class per map. Received: labels of"):
        kx.spray.analyze(maps, np.zeros(3))
    with pytest.raises(ValueError, match=r"spray.analyze: 20 maps cannot make 19 clusters \(at"):
        kx.spray.analyze(maps, neighbors=3, clusters=19)


def test_more_clusters_than_the_default_eigenvalues_get_their_eigenvectors():
    maps, _ = strategies(n=60, seed=5)
    result = kx.spray.analyze(maps, size=(8, 8), clusters=15, embedding="spectral")
    assert len(result.sizes) == 15 and len(result.eigenvalues) == 16
