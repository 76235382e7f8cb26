"""Layer attribution (``at_layer``) and neuron attribution (``output_layer``).

References cut the model by hand (eager layer calls) and take GradientTape gradients
w.r.t. the intermediate activations, or of one flattened element of a layer's output.
"""

import keras
import models
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

layers = keras.layers


def nested_cnn(seed=0):
    """A CNN backbone used as a layer inside the outer model (transfer-learning shape)."""
    models.seeded(seed)
    backbone = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, activation="relu", padding="same", name="inner_conv"),
            layers.MaxPooling2D(name="inner_pool"),
            layers.Conv2D(5, 3, activation="relu", name="inner_top"),
        ],
        name="cnn_backbone",
    )
    inputs = keras.Input((8, 8, 2))
    h = backbone(inputs)
    h = layers.Flatten()(h)
    outputs = layers.Dense(3, activation="softmax", name="head")(h)
    return models.randomize_biases(keras.Model(inputs, outputs, name="nested_cnn"))


def run_layers(layer_list, h):
    for layer in layer_list:
        h = layer(h)
    return h


def logits(dense, h):
    return tf.matmul(h, dense.kernel) + dense.bias


def nested_parts(model):
    """The nested CNN as a flat list of eager callables (softmax bypassed at the end)."""
    inner = model.get_layer("cnn_backbone").layers
    head = model.get_layer("head")
    return [*inner, layers.Flatten(), lambda h: logits(head, h)]


def sequential_parts(model):
    parts = list(model.layers[:-1])
    last = model.layers[-1]
    return [*parts, lambda h: logits(last, h)]


def gradient_at(parts, cut, x, target):
    """d logit_t / d h where h is the output of ``parts[:cut]``; returns (gradient, h)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        h = run_layers(parts[:cut], x)
        tape.watch(h)
        out = run_layers(parts[cut:], h)
        score = tf.gather(out, np.broadcast_to(target, (x.shape[0],)), axis=1, batch_dims=1)
    return tape.gradient(score, h).numpy(), h.numpy()


def neuron_gradient(parts, cut, x, index):
    """d flatten(parts[:cut](x))[:, index] / d x."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = run_layers(parts[:cut], x)
        flat = tf.reshape(h, (x.shape[0], -1))
        score = tf.gather(flat, np.broadcast_to(index, (x.shape[0],)), axis=1, batch_dims=1)
    return tape.gradient(score, x).numpy()


# -- at_layer ----------------------------------------------------------------------------
@pytest.mark.parametrize("position", [0, 1, 2])
def test_gradient_at_layer_equals_tape_gradient(position):
    model = models.conv_sequential()
    x = models.data((8, 8, 2), batch=3)
    layer = model.layers[position]  # fused conv (after its ReLU), max pool, second conv
    reference, activations = gradient_at(sequential_parts(model), position + 1, x, 2)
    result = kx.Gradient(model, at_layer=layer.name).analyze(x, 2)
    assert result.shape == activations.shape
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)
    times = kx.InputTimesGradient(model, at_layer=layer).analyze(x, 2)
    np.testing.assert_allclose(times, reference * activations, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, cut", [("inner_conv", 1), ("inner_pool", 2), ("cnn_backbone", 3)])
def test_gradient_at_layer_inside_nested_model(name, cut):
    model = nested_cnn()
    x = models.data((8, 8, 2), batch=3)
    reference, _ = gradient_at(nested_parts(model), cut, x, np.array([0, 2, 1]))
    result = kx.Gradient(model, at_layer=name).analyze(x, np.array([0, 2, 1]))
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)
    assert np.abs(reference).sum() > 0


def test_gradient_at_layer_of_dense_backbone():
    model = models.nested()
    x = models.data((6,), batch=3)
    inner = model.get_layer("backbone").layers
    parts = [*inner, model.layers[2], lambda h: logits(model.layers[3], h)]
    reference, _ = gradient_at(parts, 1, x, 1)
    result = kx.Gradient(model, at_layer=inner[0].name).analyze(x, 1)
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)


def test_at_layer_unknown_name_is_rejected():
    with pytest.raises(
        ValueError,
        match=r"No layer named 'nope' in model 'nested_cnn' \(nested models included\)\. "
        r"Received: at_layer='nope'",
    ):
        kx.Gradient(nested_cnn(), at_layer="nope")


# -- output_layer (neuron attribution) -----------------------------------------------------
@pytest.mark.parametrize("index", [0, 16, np.array([4, 16, 14])])
def test_output_layer_target_indexes_flattened_layer_output(index):
    model = models.conv_sequential()
    x = models.data((8, 8, 2), batch=3)
    layer = model.layers[2]  # second conv, output (3, 2, 2, 6) after the pool: 24 values
    reference = neuron_gradient(sequential_parts(model), 3, x, index)
    result = kx.Gradient(model, output_layer=layer.name).analyze(x, index)
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)
    assert np.abs(reference).sum() > 0  # a live neuron: not trivially 0


def test_output_layer_inside_nested_model_and_callable_target():
    model = nested_cnn()
    x = models.data((8, 8, 2), batch=3)
    parts = nested_parts(model)
    reference = neuron_gradient(parts, 1, x, 4 * 8 * 3 + 4 * 2 + 1)  # (row 3, col 2, ch 1)
    result = kx.Gradient(model, output_layer="inner_conv").analyze(x, 4 * 8 * 3 + 4 * 2 + 1)
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)
    assert np.abs(result).sum() > 0

    def channel_sum(out):
        return tf.reduce_sum(out[..., 2], axis=[1, 2])

    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        score = channel_sum(run_layers(parts[:3], inputs))
    expected = tape.gradient(score, inputs).numpy()
    result = kx.Gradient(model, output_layer="inner_top").analyze(x, channel_sum)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


def test_output_layer_with_at_layer():
    """Gradient of one inner neuron w.r.t. an earlier inner layer's activations."""
    model = nested_cnn()
    x = models.data((8, 8, 2), batch=2)
    parts = nested_parts(model)
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        h = run_layers(parts[:1], inputs)
        tape.watch(h)
        top = tf.reshape(run_layers(parts[1:3], h), (2, -1))
        score = top[:, 12]
    expected = tape.gradient(score, h).numpy()
    result = kx.Gradient(model, output_layer="inner_top", at_layer="inner_conv").analyze(x, 12)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(expected).sum() > 0


def test_output_layer_index_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"target=24 but the explained output has 24 values"):
        model = models.conv_sequential()
        kx.Gradient(model, output_layer=model.layers[2]).analyze(models.data((8, 8, 2)), 24)


# -- relevance family at_layer -----------------------------------------------------------
def epsilon_lrp_reference(dense_layers, activation, target, epsilon):
    """LRP-epsilon (numpy) from the output back to ``activation`` through Dense(+ReLU) layers."""
    values = [activation.astype(np.float64)]
    for layer in dense_layers:
        z = values[-1] @ layer.kernel.numpy() + layer.bias.numpy()
        values.append(np.maximum(z, 0) if layer is not dense_layers[-1] else z)
    out = values[-1]
    relevance = np.zeros_like(out)
    rows = np.arange(out.shape[0])
    relevance[rows, target] = out[rows, target]
    for layer, a in zip(reversed(dense_layers), reversed(values[:-1])):
        z = a @ layer.kernel.numpy() + layer.bias.numpy()
        stab = z + epsilon * np.where(z >= 0, 1.0, -1.0)
        relevance = a * ((relevance / stab) @ layer.kernel.numpy().T)
    return relevance


def test_lrp_epsilon_at_layer():
    if "lrp.epsilon" not in kx.analyzers.names():
        pytest.skip("the relevance family is not implemented yet")
    model = models.dense_sequential(softmax=True)
    x = models.data((6,), batch=3)
    first = model.layers[0]
    activation = first(tf.constant(x)).numpy()
    reference = epsilon_lrp_reference(model.layers[1:], activation, np.array([0, 1, 2]), 1e-3)
    analyzer = kx.create_analyzer("lrp.epsilon", model, epsilon=1e-3, at_layer=first.name)
    result = analyzer.analyze(x, np.array([0, 1, 2]))
    assert result.shape == activation.shape
    np.testing.assert_allclose(result, reference, rtol=1e-4, atol=1e-6)
