"""CRP against closed forms: z+ by hand, conservation, groups, hierarchy, bad input."""

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx


def dense_net(seed=0):
    helpers.seeded(seed)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="relu", use_bias=False, name="hidden"),
            keras.layers.Dense(4, activation="relu", use_bias=False, name="upper"),
            keras.layers.Dense(3, use_bias=False, name="head"),
        ]
    )


def cnn(seed=0, bias=True, batch_norm=False):
    helpers.seeded(seed)
    layers = keras.layers
    stack = [
        keras.Input((10, 10, 3)),
        layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=bias, name="conv1"),
        layers.Conv2D(6, 3, padding="same", use_bias=bias, name="conv2"),
    ]
    if batch_norm:
        stack.append(layers.BatchNormalization(name="norm"))
    stack += [
        layers.ReLU(name="relu2"),
        layers.MaxPooling2D(name="pool"),
        layers.Conv2D(40, 3, padding="same", activation="relu", use_bias=bias, name="conv3"),
        layers.GlobalAveragePooling2D(name="gap"),
        layers.Dense(3, use_bias=bias, name="head"),
    ]
    model = keras.Sequential(stack)
    if batch_norm:
        norm = model.get_layer("norm")
        rng = np.random.default_rng(seed)
        norm.set_weights(
            [w + rng.uniform(0.1, 0.5, w.shape).astype("float32") for w in norm.get_weights()]
        )
    return helpers.randomize(model) if bias else model


def z_plus_backward(activations, kernel, relevance):
    """z+ by hand: R_i = a_i sum_j w+_ij R_j / sum_i a_i w+_ij (a >= 0)."""
    positive = np.maximum(kernel, 0)
    z = activations @ positive
    return activations * ((relevance / np.where(z == 0, 1, z)) @ positive.T)


def test_dense_conditional_heatmaps_equal_z_plus_by_hand():
    model = dense_net()
    x = np.abs(np.random.default_rng(1).normal(size=(3, 6))).astype("float32")
    w1, w2, w3 = (np.asarray(w, np.float64) for w in model.get_weights())
    a1 = np.maximum(x @ w1, 0)
    a2 = np.maximum(a1 @ w2, 0)
    logits = a2 @ w3
    target = logits.argmax(1)
    seed = np.eye(3)[target] * logits
    r2 = z_plus_backward(a2, w3, seed)  # relevance at "upper"
    crp = kx.crp.CRP(model, "upper", composite="z_plus")
    heatmaps = crp.conditional(x, [0, [1, 3], 2])
    for row, channels in enumerate([[0], [1, 3], [2]]):
        masked = np.zeros_like(r2)
        masked[:, channels] = r2[:, channels]
        expected = z_plus_backward(x, w1, z_plus_backward(a1, w2, masked))
        np.testing.assert_allclose(heatmaps[:, row], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(crp.concept_relevance(x), r2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus_flat", "alpha_2_beta_1"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_all_channels_sum_to_the_unconditional_heatmap(composite, batch_norm):
    model = cnn(batch_norm=batch_norm)
    x = helpers.data((10, 10, 3), seed=3, batch=4)
    crp = kx.crp.CRP(model, "conv3", composite=composite)
    heatmaps = crp.conditional(x)  # 40 channels: a group of 32 and one of 8 (padded)
    assert heatmaps.shape == (4, 40, 10, 10, 3)
    whole = kx.LRP(model, composite).analyze(x)
    np.testing.assert_allclose(
        heatmaps.sum(axis=1), whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max()
    )
    alone = crp.conditional(x, [7, 35], batch_size=3)  # another grouping and batching
    np.testing.assert_allclose(alone, heatmaps[:, [7, 35]], rtol=1e-5, atol=1e-7)
    grouped = crp.conditional(x, [[7, 35]])[:, 0]
    np.testing.assert_allclose(grouped, heatmaps[:, [7, 35]].sum(1), rtol=1e-5, atol=1e-7)


def test_a_channel_heatmap_sums_to_its_concept_relevance_where_rules_conserve():
    """z+ below conv3 on a bias-free ReLU net conserves relevance: each conditional
    heatmap sums to the channel's relevance at conv3, and those sum to the logit."""
    model = cnn(bias=False)
    x = np.abs(helpers.data((10, 10, 3), seed=4, batch=3))
    crp = kx.crp.CRP(model, "conv3", composite="z_plus")
    heatmaps = crp.conditional(x)
    relevances = crp.concept_relevance(x)
    assert relevances.shape == (3, 40)
    np.testing.assert_allclose(
        heatmaps.reshape(3, 40, -1).sum(-1), relevances, rtol=1e-4, atol=1e-6
    )
    logits = model.predict(x, verbose=0)
    np.testing.assert_allclose(relevances.sum(1), logits.max(1), rtol=1e-4)


def test_hierarchy_ranks_the_lower_channels_by_conditional_relevance():
    model = cnn(bias=False)
    x = np.abs(helpers.data((10, 10, 3), seed=5, batch=2))
    crp = kx.crp.CRP(model, "conv3", composite="z_plus")
    at_conv2 = crp.conditional(x, [11], lower="relu2")[:, 0]  # (B, 10, 10, 6)
    per_channel = at_conv2.sum(axis=(1, 2))
    indices, values = crp.hierarchy(x, 11, "relu2", k=3)
    np.testing.assert_array_equal(indices, np.argsort(-per_channel, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(values, np.take_along_axis(per_channel, indices, 1), rtol=1e-6)
    np.testing.assert_allclose(  # conserved from conv3's channel 11 down to relu2
        per_channel.sum(1), crp.concept_relevance(x)[:, 11], rtol=1e-4, atol=1e-7
    )
    top, _ = kx.crp.hierarchy(model, x, "conv3", 11, "relu2", k=3, composite="z_plus")
    np.testing.assert_array_equal(top, indices)


def test_the_model_is_untouched_and_functions_equal_the_class():
    model = cnn()
    before = [w.copy() for w in model.get_weights()]
    x = helpers.data((10, 10, 3), seed=6, batch=2)
    expected = kx.crp.CRP(model, "conv3").conditional(x, [1, 2], target=[0, 2])
    got = kx.crp.conditional(model, x, layer="conv3", channels=[1, 2], target=[0, 2])
    np.testing.assert_array_equal(got, expected)
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)


def test_bad_input_is_named():
    model = cnn()
    x = helpers.data((10, 10, 3), seed=6, batch=2)
    with pytest.raises(ValueError, match=r"CRP: 'nope' is not a layer of model '\w+'. Received"):
        kx.crp.CRP(model, "nope")
    crp = kx.crp.CRP(model, "conv3")
    with pytest.raises(
        ValueError, match=r"CRP: channel 40 is out of range; the layer has 40 channels \(0 to 39\)"
    ):
        crp.conditional(x, [3, 40])
    with pytest.raises(
        ValueError, match=r"CRP: channels must be None, a channel id or a non-empty"
    ):
        crp.conditional(x, [])
    with pytest.raises(TypeError, match=r"CRP: channel ids are ints. Received: 1.5"):
        crp.conditional(x, [1.5])
    with pytest.raises(ValueError, match=r"CRP: k must be an int from 1 to the lower layer's 6"):
        crp.hierarchy(x, 0, "relu2", k=7)
    with pytest.raises(ValueError, match=r"CRP: layer 'gap' is not below layer 'conv3'"):
        crp.conditional(x, [1], lower="gap")
    with pytest.raises(ValueError, match=r"CRP: layer 'head' is not below layer 'conv3'"):
        crp.hierarchy(x, 1, "head", k=1)
    inputs = keras.Input((4,))
    summed = keras.layers.Lambda(lambda t: keras.ops.sum(t, axis=-1), name="total")(inputs)
    flat = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Reshape((1,))(summed)))
    with pytest.raises(ValueError, match=r"CRP: layer 'total' has no channel axis to condition on"):
        kx.crp.CRP(flat, "total")
    with pytest.raises(TypeError, match=r"CRP runs LRP through a Keras model's graph"):
        kx.crp.CRP(lambda v: v, "conv3")


def test_a_layer_folded_into_its_batch_norm_is_conditioned_after_it():
    """BatchNormFold merges conv2 into the BatchNormalization after it; conditioning on
    conv2 then masks the folded op's output (the same channels), and the heatmaps
    still add up to the folded LRP's, at conv2 and when conv2 is the lower layer."""
    model = cnn(batch_norm=True)
    x = helpers.data((10, 10, 3), seed=3, batch=3)
    crp = kx.crp.CRP(model, "conv2", composite="epsilon_plus_flat")
    assert crp.layer.name == "norm"
    whole = kx.LRP(model, "epsilon_plus_flat").analyze(x)
    np.testing.assert_allclose(
        crp.conditional(x).sum(1), whole, rtol=1e-5, atol=1e-5 * np.abs(whole).max()
    )
    upper = kx.crp.CRP(model, "conv3", composite="epsilon_plus_flat")
    at_conv2 = upper.conditional(x, [4], lower="conv2")[:, 0]
    at_norm = upper.conditional(x, [4], lower="norm")[:, 0]
    np.testing.assert_array_equal(at_conv2, at_norm)


def test_a_lower_layer_may_be_named_anything():
    """A layer named "relevance" is a lower layer like any other (no cache key clash)."""
    helpers.seeded(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, activation="relu", use_bias=False, name="relevance"),
            keras.layers.Conv2D(4, 3, activation="relu", use_bias=False, name="top"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, use_bias=False),
        ]
    )
    x = np.abs(helpers.data((6, 6, 2), seed=1, batch=2))
    crp = kx.crp.CRP(model, "top", composite="z_plus")
    concepts = crp.concept_relevance(x)
    lower = crp.conditional(x, [0, 1, 2, 3], lower="relevance")  # (2, 4, 4, 4, 3)
    np.testing.assert_allclose(lower.sum(axis=(2, 3, 4)), concepts, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(crp.concept_relevance(x), concepts)
