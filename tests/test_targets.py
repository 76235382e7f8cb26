"""Every form of ``target`` (and iNNvestigate's neuron selection) against tape gradients."""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain.targets import Target, parse_target, target_scores

layers = keras.layers


def pick(indices):
    return lambda output: tf.gather(output, np.asarray(indices), axis=1, batch_dims=1)


def map_model(seed=0):
    """A (4, 4, 2) output per sample, like a tiny segmentation head."""
    helpers.seeded(seed)
    inputs = keras.Input((4, 4, 3))
    h = layers.Conv2D(5, 3, padding="same", activation="relu")(inputs)
    outputs = layers.Conv2D(2, 1)(h)
    return helpers.randomize_biases(keras.Model(inputs, outputs, name="map_model"))


# -- the forms of target ----------------------------------------------------------
def test_none_is_the_per_sample_argmax(logit_model, x6):
    argmax = np.argmax(logit_model(x6).numpy(), axis=1)
    assert len(set(argmax)) > 1  # the fixture exercises per-sample selection
    result = kx.Gradient(logit_model).analyze(x6)
    np.testing.assert_allclose(
        result, helpers.tape_gradient(logit_model, x6, pick(argmax)), rtol=1e-6
    )
    np.testing.assert_array_equal(kx.Gradient(logit_model).analyze(x6, "max_activation"), result)


@pytest.mark.parametrize("target", [2, np.int64(2), np.array(2), tf.constant(2)])
def test_int_target(logit_model, x6, target):
    expected = helpers.tape_gradient(logit_model, x6, pick([2, 2, 2, 2]))
    np.testing.assert_allclose(kx.Gradient(logit_model).analyze(x6, target), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "target",
    [[1, 0, 2, 1], np.array([1, 0, 2, 1], "int32"), (1, 0, 2, 1), tf.constant([1, 0, 2, 1])],
)
def test_int_array_target(logit_model, x6, target):
    expected = helpers.tape_gradient(logit_model, x6, pick([1, 0, 2, 1]))
    np.testing.assert_allclose(kx.Gradient(logit_model).analyze(x6, target), expected, rtol=1e-6)


def test_all_target_is_the_sum_of_outputs(logit_model, x6):
    expected = helpers.tape_gradient(logit_model, x6, lambda out: tf.reduce_sum(out, axis=1))
    np.testing.assert_allclose(
        kx.Gradient(logit_model).analyze(x6, "all"), expected, rtol=1e-5, atol=1e-7
    )


def test_callable_target(logit_model, x6):
    def margin(outputs):
        return outputs[:, 0] - tf.reduce_max(outputs[:, 1:], axis=1) ** 2

    expected = helpers.tape_gradient(logit_model, x6, margin)
    np.testing.assert_allclose(
        kx.Gradient(logit_model).analyze(x6, margin), expected, rtol=1e-5, atol=1e-7
    )
    guided = kx.GuidedBackprop(logit_model).analyze(x6, margin)
    assert guided.shape == x6.shape and np.isfinite(guided).all()


def test_targets_on_a_spatial_output():
    model = map_model()
    x = helpers.data((4, 4, 3))
    flat = lambda out: tf.reshape(out, (tf.shape(out)[0], -1))  # noqa: E731
    # int targets index the flattened per-sample output
    expected = helpers.tape_gradient(model, x, lambda out: flat(out)[:, 13])
    np.testing.assert_allclose(kx.Gradient(model).analyze(x, 13), expected, rtol=1e-6)
    argmax = np.argmax(model(x).numpy().reshape(4, -1), axis=1)
    np.testing.assert_allclose(
        kx.Gradient(model).analyze(x),
        helpers.tape_gradient(
            model, x, lambda out: tf.gather(flat(out), argmax, axis=1, batch_dims=1)
        ),
        rtol=1e-6,
    )
    # a callable summarising a mask region of channel 1, as for segmentation
    mask = np.zeros((4, 4), "float32")
    mask[1:3, 2:] = 1.0

    def region(outputs):
        return tf.reduce_sum(outputs[..., 1] * mask, axis=(1, 2))

    np.testing.assert_allclose(
        kx.Gradient(model).analyze(x, region),
        helpers.tape_gradient(model, x, region),
        rtol=1e-5,
        atol=1e-7,
    )
    with pytest.raises(
        ValueError,
        match=r"target index out of range\. Received: target=32 but "
        r"the explained output has 32 values per sample",
    ):
        kx.Gradient(model).analyze(x, 32)


def test_output_layer_neuron_attribution(logit_model, x6):
    (w1, b1), (w2, b2) = (layer.get_weights() for layer in logit_model.layers[:2])

    def hidden(x):  # the second Dense layer's (post-ReLU) output, by hand
        return tf.nn.relu(tf.nn.relu(x @ w1 + b1) @ w2 + b2)

    name = logit_model.layers[1].name
    analyzer = kx.Gradient(logit_model, output_layer=name)
    np.testing.assert_allclose(
        analyzer.analyze(x6, 4),
        helpers.tape_gradient(hidden, x6, pick([4] * 4)),
        rtol=1e-5,
        atol=1e-7,
    )
    with pytest.raises(
        ValueError,
        match=r"Received: target=5 but the explained output has 5 "
        r"values per sample \(valid: 0 to 4\)",
    ):
        analyzer.analyze(x6, 5)


def test_multi_output_default_target_is_argmax_of_the_chosen_output(
    multi_input_model, multi_input_data
):
    outputs = multi_input_model(multi_input_data)
    argmax = np.argmax(outputs[1].numpy(), axis=1)
    default = kx.Gradient(multi_input_model, output_index=1).analyze(multi_input_data)
    explicit = kx.Gradient(multi_input_model, output_index=1).analyze(multi_input_data, argmax)
    for first, second in zip(default, explicit):
        np.testing.assert_array_equal(first, second)
    with pytest.raises(ValueError, match=r"target=2 but the explained output has 2 values"):
        kx.Gradient(multi_input_model, output_index=1).analyze(multi_input_data, 2)


# -- iNNvestigate compatibility ------------------------------------------------------
@pytest.mark.parametrize("name", ["gradient", "guided_backprop"])
def test_neuron_selection_modes(name, dense_model, x6):
    plain = kx.create_analyzer(name, dense_model)
    index = kx.create_analyzer(name, dense_model, neuron_selection_mode="index")
    np.testing.assert_array_equal(index.analyze(x6, neuron_selection=2), plain.analyze(x6, 2))
    np.testing.assert_array_equal(
        index.analyze(x6, neuron_selection=[2, 1, 0, 1]), plain.analyze(x6, [2, 1, 0, 1])
    )
    every = kx.create_analyzer(name, dense_model, neuron_selection_mode="all")
    np.testing.assert_array_equal(every.analyze(x6), plain.analyze(x6, "all"))
    maximum = kx.create_analyzer(name, dense_model, neuron_selection_mode="max_activation")
    np.testing.assert_array_equal(maximum.analyze(x6), plain.analyze(x6))
    assert not np.allclose(every.analyze(x6), maximum.analyze(x6))
    np.testing.assert_array_equal(plain.analyze(x6, neuron_selection=1), plain.analyze(x6, 1))


def test_neuron_selection_errors(dense_model, x6):
    with pytest.raises(
        ValueError,
        match=r"Unknown neuron_selection_mode\. Received: "
        r"neuron_selection_mode='max'\. Expected one of",
    ):
        kx.create_analyzer("gradient", dense_model, neuron_selection_mode="max")
    index = kx.create_analyzer("gradient", dense_model, neuron_selection_mode="index")
    with pytest.raises(ValueError, match=r"neuron_selection_mode='index' needs the neuron"):
        index.analyze(x6)
    maximum = kx.create_analyzer("gradient", dense_model, neuron_selection_mode="max_activation")
    with pytest.raises(
        ValueError,
        match=r"explains the argmax output, so a target cannot be "
        r"given\. Received: target=1",
    ):
        maximum.analyze(x6, neuron_selection=1)
    with pytest.raises(ValueError, match=r"Pass either target or neuron_selection, not both"):
        kx.Gradient(dense_model).analyze(x6, 1, neuron_selection=1)


# -- bad targets -----------------------------------------------------------------
@pytest.mark.parametrize(
    "target,error,message",
    [
        (
            3,
            ValueError,
            r"target index out of range\. Received: target=3 but the explained "
            r"output has 3 values per sample \(valid: 0 to 2\)",
        ),
        (-1, ValueError, r"Received: target=-1 but the explained output has 3 values"),
        ([0, 1, 7, 0], ValueError, r"Received: target=7"),
        ([0, 1, 2], ValueError, r"target of length 3 for a batch of 4 samples"),
        (
            [[0], [1], [2], [0]],
            ValueError,
            r"must have shape \(batch,\).*Received: target with "
            r"shape \(4, 1\)",
        ),
        (1.5, TypeError, r"target must be None, an int.*Received: target=1\.5 of type float"),
        (True, TypeError, r"Received: target=True of type bool"),
        ("max", ValueError, r"Unknown target string\. Received: target='max'"),
    ],
)
def test_bad_target_errors(dense_model, x6, target, error, message):
    with pytest.raises(error, match=message):
        kx.Gradient(dense_model).analyze(x6, target)


def test_callable_target_of_the_wrong_shape(dense_model, x6):
    with pytest.raises(
        ValueError,
        match=r"A callable target must return one score per sample, "
        r"shape \(batch,\)\. Received: a result of shape "
        r"\(4, 3\)",
    ):
        kx.Gradient(dense_model).analyze(x6, lambda outputs: outputs * 2.0)


# -- the targets module itself ---------------------------------------------------------
def test_parse_target_and_scores_unit():
    outputs = tf.constant(np.arange(24, dtype="float32").reshape(2, 3, 4) * [[[1]], [[-1]]])
    assert parse_target(None, 2, 12).mode == "max"
    assert parse_target("all", 2, 12).mode == "all"
    parsed = parse_target(np.array([5, 11]), 2, 12)
    assert parsed.mode == "index" and parsed.indices.dtype == np.int64
    assert parsed.for_rows(1, 2).indices.tolist() == [11]
    np.testing.assert_array_equal(
        target_scores(outputs, parsed, tf.constant(parsed.indices)), [5.0, -23.0]
    )  # sample 1 holds -12 ... -23
    np.testing.assert_array_equal(target_scores(outputs, Target("max"), None), [11.0, -12.0])
    np.testing.assert_array_equal(target_scores(outputs, Target("all"), None), [66.0, -210.0])
    function = Target("callable", function=lambda out: out[:, 0, 1])
    np.testing.assert_array_equal(target_scores(outputs, function, None), [1.0, -13.0])
