"""TracIn's nearest-neighbour index, precomputed training features, and training sources."""

import sys

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def model_and_data(n=1500, seed=0):
    """The small classifier, ``n`` examples, and two checkpoints around its weights."""
    model, x, y = helpers.hidden_head_classifier(n, features=12, hidden=16, classes=5, seed=seed)
    weights = model.get_weights()
    return model, x, y, [weights, [w * 0.8 + 0.05 for w in weights]]


def recall(expected, found):
    return np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(expected, found)])


def test_the_index_finds_the_exact_extremes_with_their_exact_scores():
    model, x, y, checkpoints = model_and_data()
    options = dict(loss=LOSS, checkpoints=checkpoints, learning_rates=[0.1, 0.02])
    exact = kx.influence.TracIn(model, (x, y), projection_dim=32, **options)
    indexed = kx.influence.TracIn(model, (x, y), projection_dim=32, index="hnsw", **options)
    scores = exact.influence(x[:40], y[:40])  # the projected scores the index searches
    for search, sign in (("proponents", -1), ("opponents", 1)):
        indices, values = getattr(indexed, search)(x[:40], y[:40], k=10)
        expected = np.argsort(sign * scores, axis=1, kind="stable")[:, :10]
        assert recall(expected, indices) >= 0.95, search
        np.testing.assert_allclose(values, np.take_along_axis(scores, indices, 1), rtol=1e-9)
        assert np.all(np.diff(sign * values, axis=1) >= 0)  # best first
    with pytest.raises(ValueError, match=r"TracIn: k is larger than the training set \(1500"):
        indexed.proponents(x[:2], y[:2], k=1501)


def test_the_index_needs_a_projection_nonnegative_rates_and_faiss(monkeypatch):
    model, x, y, _ = model_and_data(20)
    with pytest.raises(ValueError, match=r'TracIn: index="hnsw" searches the projected gradients'):
        kx.influence.TracIn(model, (x, y), loss=LOSS, index="hnsw")
    with pytest.raises(ValueError, match=r"learning rates \[-0.1\]. Pass projection_dim"):
        kx.influence.TracIn(
            model, (x, y), loss=LOSS, index="hnsw", projection_dim=8, learning_rates=-0.1
        )
    with pytest.raises(
        ValueError,
        match=r"TracIn: Unknown index. Received: index=.annoy.. Expected one of \(None, .hnsw.\)",
    ):
        kx.influence.TracIn(model, (x, y), loss=LOSS, index="annoy")
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if not installed
    with pytest.raises(ImportError, match=r'TracIn: index="hnsw" needs faiss. Install it with'):
        kx.influence.TracIn(model, (x, y), loss=LOSS, index="hnsw", projection_dim=8)


def test_precomputed_training_features_give_the_same_scores():
    model, x, y, checkpoints = model_and_data(60)
    options = dict(loss=LOSS, checkpoints=checkpoints, projection_dim=16, seed=3)
    computed = kx.influence.TracIn(model, (x, y), **options)
    train = computed.features(x, y)  # what kx.ray.TracInFeatures returns, per checkpoint
    features = np.stack([f.full for f in train], axis=1)
    norms = np.stack([f.squared_norms for f in train], axis=1)
    given = kx.influence.TracIn(model, (x, y), train_features=(features, norms), **options)
    np.testing.assert_array_equal(given.influence(x[:5], y[:5]), computed.influence(x[:5], y[:5]))
    np.testing.assert_array_equal(given.self_influence(), computed.self_influence())
    with pytest.raises(
        ValueError,
        match=r"TracIn: train_features must be \(features, squared_norms\) of shapes "
        r"\(60, 2, 16\) and \(60, 2\) .* Received: shapes \(\(60, 1, 16\), \(60, 2\)\)",
    ):
        kx.influence.TracIn(model, (x, y), train_features=(features[:, :1], norms), **options)
    with pytest.raises(ValueError, match=r"Received: ndarray with projection_dim=None"):
        kx.influence.TracIn(model, (x, y), loss=LOSS, train_features=features)


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, size):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return -(-len(self.y) // self.size)

    def __getitem__(self, index):
        part = slice(index * self.size, (index + 1) * self.size)
        return self.x[part], self.y[part], np.ones(len(self.y[part]))  # a sample weight


def test_a_py_dataset_and_memory_mapped_arrays_equal_in_memory_arrays(tmp_path):
    model, x, y, checkpoints = model_and_data(50)
    options = dict(loss=LOSS, checkpoints=checkpoints)
    expected = kx.influence.TracIn(model, (x, y), **options).influence(x[:4], y[:4])
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    for train in (Batches(x, y, 16), (mapped, y)):
        tracin = kx.influence.TracIn(model, train, **options)
        assert tracin.training.size == 50
        # float32 round-off only: another batch size may take other kernels
        np.testing.assert_allclose(tracin.influence(x[:4], y[:4]), expected, rtol=1e-6)


def test_one_shot_iterators_and_bad_batches_are_named():
    model, x, y, _ = model_and_data(20)
    with pytest.raises(TypeError, match=r"TracIn: train is a one-shot iterator \(generator\)"):
        kx.influence.TracIn(model, ((x, y) for _ in range(2)), loss=LOSS)
    inputs_only = [x[:5], x[5:10], x[10:]]  # batches without labels
    with pytest.raises(
        ValueError,
        match=r"TracIn: batch 0 of the training set is not \(x, y\) .* Received: ndarray",
    ):
        kx.influence.TracIn(model, inputs_only, loss=LOSS)
