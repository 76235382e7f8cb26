"""Reference samples against brute force: concept relevances, top_patches, LRP peaks."""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx


def conv_net(seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 2)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(5, 3, activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, name="head"),
        ]
    )
    return helpers.randomize(model)


def test_relevance_mode_ranks_by_concept_relevance_and_crops_at_the_peak():
    model = conv_net()
    x = helpers.data((12, 12, 2), seed=1, batch=30)
    found = kx.crp.reference_samples(model, x, "conv2", [0, 3, 4], k=5, batch_size=8)
    relevances = kx.crp.CRP(model, "conv2").concept_relevance(x)  # (30, 5)
    for row, channel in enumerate([0, 3, 4]):
        expected = np.argsort(-relevances[:, channel], kind="stable")[:5]
        np.testing.assert_array_equal(found.samples[row], expected)
        np.testing.assert_allclose(found.scores[row], relevances[expected, channel], rtol=1e-5)
    maps = kx.LRP(model, layer="conv2").analyze(x)  # (30, 3, 3, 5)
    field = kx.features.receptive_field(model, "conv2")
    for row, channel in enumerate([0, 3, 4]):
        for sample, position, patch in zip(
            found.samples[row], found.positions[row], found.patches[row]
        ):
            peak = np.unravel_index(np.argmax(maps[sample, ..., channel]), (3, 3))
            assert tuple(position) == peak
            np.testing.assert_array_equal(patch, field.patch(x[sample], position))
    assert found.layer == "conv2" and found.patches.shape == (3, 5, *field.size, 2)


def test_activation_mode_equals_top_patches():
    model = conv_net()
    x = helpers.data((12, 12, 2), seed=2, batch=25)
    found = kx.crp.reference_samples(model, x, "conv1", [2], k=4, mode="activation")
    patches = kx.features.top_patches(model, "conv1", x, 2, k=4)
    np.testing.assert_array_equal(found.samples[0], patches.samples)
    np.testing.assert_allclose(found.scores[0], patches.activations, rtol=1e-6)
    np.testing.assert_array_equal(found.positions[0], patches.positions)
    np.testing.assert_array_equal(found.patches[0], patches.patches)


def test_a_dataset_and_a_shard_directory_give_the_same_references(tmp_path):
    model = conv_net()
    x = helpers.data((12, 12, 2), seed=3, batch=26)
    expected = kx.crp.reference_samples(model, x, "conv2", k=3, target=1)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(7)
    streamed = kx.crp.reference_samples(
        model, dataset, "conv2", k=3, target=1, out_dir=tmp_path / "scores", batch_size=5
    )
    assert (tmp_path / "scores" / "manifest.json").exists()
    np.testing.assert_array_equal(streamed.samples, expected.samples)
    np.testing.assert_allclose(streamed.scores, expected.scores, rtol=1e-5)
    np.testing.assert_array_equal(streamed.patches, expected.patches)
    again = kx.crp.reference_samples(  # read back from the finished shards
        model, dataset, "conv2", k=3, target=1, out_dir=tmp_path / "scores", batch_size=5
    )
    np.testing.assert_array_equal(again.scores, streamed.scores)


def test_bad_input_is_named(tmp_path):
    model = conv_net()
    x = helpers.data((12, 12, 2), seed=4, batch=6)
    with pytest.raises(ValueError, match=r"reference_samples: k is larger than the data \(6"):
        kx.crp.reference_samples(model, x, "conv2", k=7)
    with pytest.raises(ValueError, match=r"reference_samples ranks samples per channel"):
        kx.crp.reference_samples(model, x, "conv2", [[0, 1]])
    with pytest.raises(ValueError, match=r"reference_samples: Unknown mode. Received: mode='max'"):
        kx.crp.reference_samples(model, x, "conv2", mode="max")
    with pytest.raises(ValueError, match=r"channel 5 is out of range; the layer has 5 channels"):
        kx.crp.reference_samples(model, x, "conv2", [5])
    once = (x[i : i + 2] for i in range(0, 6, 2))  # a generator: read once
    with pytest.raises(ValueError, match=r"the crops need a second pass over data, and it "):
        kx.crp.reference_samples(model, once, "conv2", k=2, out_dir=tmp_path / "once")
