"""Layer attribution (``layer``), neuron attribution (``output_layer``), ``output_index``.

For every family (gradient, relevance, CAM, perturbation) against hand-written
references: models cut by hand (eager layer calls) with GradientTape gradients w.r.t.
intermediate activations or of one flattened element of a layer's output, numpy LRP
on the Dense weights (conservation to a chosen neuron), Integrated Gradients'
completeness at a layer, closed-form Grad-CAM maps, and hand loops for occlusion and
exact Shapley values.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

layers = keras.layers


def nested_cnn(seed=0):
    """A CNN backbone used as a layer inside the outer model (transfer-learning shape)."""
    helpers.seeded(seed)
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
    return helpers.randomize_biases(keras.Model(inputs, outputs, name="nested_cnn"))


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
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=3)
    layer = model.layers[position]  # fused conv (after its ReLU), max pool, second conv
    reference, activations = gradient_at(sequential_parts(model), position + 1, x, 2)
    result = kx.Gradient(model, layer=layer.name).analyze(x, 2)
    assert result.shape == activations.shape
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)
    times = kx.InputTimesGradient(model, layer=layer).analyze(x, 2)
    np.testing.assert_allclose(times, reference * activations, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, cut", [("inner_conv", 1), ("inner_pool", 2), ("cnn_backbone", 3)])
def test_gradient_at_layer_inside_nested_model(name, cut):
    model = nested_cnn()
    x = helpers.data((8, 8, 2), batch=3)
    reference, _ = gradient_at(nested_parts(model), cut, x, np.array([0, 2, 1]))
    result = kx.Gradient(model, layer=name).analyze(x, np.array([0, 2, 1]))
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)
    assert np.abs(reference).sum() > 0


def test_gradient_at_layer_of_dense_backbone():
    model = helpers.nested()
    x = helpers.data((6,), batch=3)
    inner = model.get_layer("backbone").layers
    parts = [*inner, model.layers[2], lambda h: logits(model.layers[3], h)]
    reference, _ = gradient_at(parts, 1, x, 1)
    result = kx.Gradient(model, layer=inner[0].name).analyze(x, 1)
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)


def test_at_layer_unknown_name_is_rejected():
    with pytest.raises(
        ValueError,
        match=r"No layer named 'nope' in model 'nested_cnn' \(nested models included\)\. "
        r"Received: layer='nope'",
    ):
        kx.Gradient(nested_cnn(), layer="nope")


# -- output_layer (neuron attribution) -----------------------------------------------------
@pytest.mark.parametrize("index", [0, 16, np.array([4, 16, 14])])
def test_output_layer_target_indexes_flattened_layer_output(index):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=3)
    layer = model.layers[2]  # second conv, output (3, 2, 2, 6) after the pool: 24 values
    reference = neuron_gradient(sequential_parts(model), 3, x, index)
    result = kx.Gradient(model, output_layer=layer.name).analyze(x, index)
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-7)
    assert np.abs(reference).sum() > 0  # a live neuron: not trivially 0


def test_output_layer_inside_nested_model_and_callable_target():
    model = nested_cnn()
    x = helpers.data((8, 8, 2), batch=3)
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
    x = helpers.data((8, 8, 2), batch=2)
    parts = nested_parts(model)
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        h = run_layers(parts[:1], inputs)
        tape.watch(h)
        top = tf.reshape(run_layers(parts[1:3], h), (2, -1))
        score = top[:, 12]
    expected = tape.gradient(score, h).numpy()
    result = kx.Gradient(model, output_layer="inner_top", layer="inner_conv").analyze(x, 12)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(expected).sum() > 0


def test_output_layer_index_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"target=24 but the explained output has 24 values"):
        model = helpers.conv_sequential()
        kx.Gradient(model, output_layer=model.layers[2]).analyze(helpers.data((8, 8, 2)), 24)


# -- relevance family at_layer -----------------------------------------------------------
def test_lrp_epsilon_at_layer():
    model = helpers.dense_sequential(softmax=True)
    x = helpers.data((6,), batch=3)
    first = model.layers[0]
    activation = first(tf.constant(x)).numpy()
    reference = helpers.dense_chain_lrp_reference(
        model.layers[1:], activation, np.array([0, 1, 2]), helpers.Ref("epsilon", epsilon=1e-3)
    )
    analyzer = kx.create_analyzer("lrp.epsilon", model, epsilon=1e-3, layer=first.name)
    result = analyzer.analyze(x, np.array([0, 1, 2]))
    assert result.shape == activation.shape
    np.testing.assert_allclose(result, reference, rtol=1e-4, atol=1e-6)


def weights64(layer):
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def dense_parts(model):
    """(kernel, bias) of each Dense layer of dense_sequential, float64."""
    return [weights64(layer) for layer in model.layers]


def test_lrp_output_layer_conserves_to_the_chosen_neuron():
    model = helpers.bias_free(helpers.dense_sequential(softmax=False))
    x = helpers.data((6,), seed=3, batch=4)
    (w1, _), (w2, _), _ = dense_parts(model)
    hidden = np.maximum(np.maximum(x @ w1, 0) @ w2, 0)  # second hidden layer, after its ReLU
    assert (hidden.max(1) > 0).all()
    # target None: each sample's most active neuron of the layer; LRP-0 conserves it exactly
    result = kx.LRPZ(model, output_layer=model.layers[1]).analyze(x)
    np.testing.assert_allclose(result.sum(1), hidden.max(1), rtol=1e-5)
    chosen = np.argmax(hidden, axis=1)
    expected = helpers.dense_chain_lrp_reference(
        model.layers[:2], x, chosen, helpers.Ref("z", epsilon=0.0)
    )
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)


def test_lrp_output_layer_with_biases_and_at_layer_equals_numpy():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), batch=4)
    (w1, b1), (w2, b2), _ = dense_parts(model)
    h1 = np.maximum(x @ w1 + b1, 0)
    z2 = h1 @ w2 + b2
    neuron = int(np.argmax((z2 > 0).sum(0)))  # a neuron active in most samples
    rule = helpers.Ref("epsilon", epsilon=0.01)
    seed = np.zeros_like(z2)
    seed[:, neuron] = np.maximum(z2[:, neuron], 0)  # R = one_hot(j) * output_j, ReLU passes
    at_hidden = helpers.rule_reference(rule, h1, w2, b2, seed, None)
    expected = helpers.rule_reference(rule, x, w1, b1, at_hidden, None)
    analyzer = kx.LRPEpsilon(model, epsilon=0.01, output_layer=model.layers[1])
    np.testing.assert_allclose(analyzer.analyze(x, neuron), expected, rtol=1e-4, atol=1e-6)
    layered = kx.LRPEpsilon(
        model, epsilon=0.01, output_layer=model.layers[1], layer=model.layers[0]
    )
    np.testing.assert_allclose(layered.analyze(x, neuron), at_hidden, rtol=1e-4, atol=1e-6)


def test_lrp_output_index_equals_numpy_on_each_input():
    model = helpers.multi_input()
    x = [helpers.data((6,)), helpers.data((4,), seed=1)]
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    (wa, ba), (wb, bb) = (weights64(layer) for layer in dense[:2])  # first, second branch
    wo, bo = weights64(model.get_layer("out_b"))
    ha, hb = np.maximum(x[0] @ wa + ba, 0), np.maximum(x[1] @ wb + bb, 0)
    hidden = np.concatenate([ha, hb], 1)
    logits = hidden @ wo + bo
    np.testing.assert_allclose(logits, model(x)[1].numpy(), rtol=1e-5, atol=1e-6)
    rule = helpers.Ref("epsilon", epsilon=0.01)
    seed = np.zeros_like(logits)
    seed[:, 1] = logits[:, 1]
    r_hidden = helpers.rule_reference(rule, hidden, wo, bo, seed, None)
    expected = [
        helpers.rule_reference(rule, x[0], wa, ba, r_hidden[:, :5], None),
        helpers.rule_reference(rule, x[1], wb, bb, r_hidden[:, 5:], None),
    ]
    result = kx.LRPEpsilon(model, epsilon=0.01, output_index=1).analyze(x, 1)
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# -- gradient family beyond Gradient ------------------------------------------------------
def test_guided_backprop_at_layer_and_output_layer_equal_hand_rebuild():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), batch=4)
    (w1, b1), (w2, b2), (w3, b3) = (layer.get_weights() for layer in model.layers)
    guided = helpers.reference_relu("guided")
    target = np.array([0, 2, 1, 2])
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        h1 = tf.nn.relu(inputs @ w1 + b1)
        tape.watch(h1)
        score = tf.gather(guided(h1 @ w2 + b2) @ w3 + b3, target, axis=1, batch_dims=1)
    expected = tape.gradient(score, h1).numpy()
    result = kx.GuidedBackprop(model, layer=model.layers[0]).analyze(x, target)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)
    # the most often active neuron of the second hidden layer (after its ReLU), guided
    # through both ReLUs
    unit = int(np.argmax((np.maximum(x @ w1 + b1, 0) @ w2 + b2 > 0).sum(0)))
    neuron = helpers.tape_gradient(lambda t: guided(guided(t @ w1 + b1) @ w2 + b2), x, unit)
    result = kx.GuidedBackprop(model, output_layer=model.layers[1]).analyze(x, unit)
    np.testing.assert_allclose(result, neuron, rtol=1e-5, atol=1e-7)
    plain = helpers.tape_gradient(lambda t: tf.nn.relu(tf.nn.relu(t @ w1 + b1) @ w2 + b2), x, unit)
    assert np.abs(plain - neuron).max() > 1e-3  # the guided rule matters here


def test_input_times_gradient_output_layer_equals_tape():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=3)
    reference = neuron_gradient(sequential_parts(model), 3, x, np.array([4, 16, 14]))
    result = kx.InputTimesGradient(model, output_layer=model.layers[2]).analyze(
        x, np.array([4, 16, 14])
    )
    np.testing.assert_allclose(result, x * reference, rtol=1e-5, atol=1e-7)


def smooth_hidden(seed=0):
    """tanh -> softplus -> linear: smooth, so IG's trapezoid rule converges fast."""
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(8, activation="tanh", name="h1"),
            layers.Dense(5, activation="softplus", name="h2"),
            layers.Dense(3, name="out"),
        ]
    )
    return helpers.randomize_biases(model)


def test_integrated_gradients_completeness_at_a_layer_neuron():
    model = smooth_hidden()
    x = helpers.data((6,), batch=4)
    w1, b1 = model.get_layer("h1").get_weights()
    w2, b2 = model.get_layer("h2").get_weights()

    def neuron_values(t):
        return tf.nn.softplus(tf.tanh(t @ w1 + b1) @ w2 + b2)

    baseline = np.full((6,), 0.2, "float32")
    # exact against the path integral written out (16 trapezoid points)
    alphas, weights = helpers.trapezoid_rule(16)
    full = np.broadcast_to(baseline, x.shape)
    expected = helpers.reference_ig(neuron_values, x, full, np.full(4, 2), alphas, weights)
    analyzer = kx.IntegratedGradients(model, steps=16, baseline=baseline, output_layer="h2")
    np.testing.assert_allclose(analyzer.analyze(x, 2), expected, rtol=1e-4, atol=1e-6)
    # completeness: the attributions sum to h2_2(x) - h2_2(x')
    fine = kx.IntegratedGradients(model, steps=128, baseline=baseline, output_layer="h2")
    delta = neuron_values(x).numpy()[:, 2] - neuron_values(full).numpy()[:, 2]
    np.testing.assert_allclose(fine.analyze(x, 2).sum(1), delta, rtol=1e-3, atol=1e-5)


def test_smoothgrad_at_layer_and_output_index_over_the_same_noise(multi_input_model):
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), batch=3)
    (w1, b1), (w2, b2), (w3, b3) = (layer.get_weights() for layer in model.layers)
    target = np.array([1, 0, 2])
    analyzer = kx.SmoothGrad(model, samples=5, noise_scale=0.3, seed=4, layer=model.layers[0])
    grads = []
    for copy in helpers.noisy_copies(analyzer, x, seed=4):
        with tf.GradientTape() as tape:
            h1 = tf.nn.relu(tf.constant(copy) @ w1 + b1)
            tape.watch(h1)
            out = tf.nn.relu(h1 @ w2 + b2) @ w3 + b3
            score = tf.gather(out, target, axis=1, batch_dims=1)
        grads.append(tape.gradient(score, h1).numpy())
    np.testing.assert_allclose(analyzer.analyze(x, target), np.mean(grads, 0), rtol=1e-4, atol=1e-6)
    # output_index on a two-input, two-output model: noise on both inputs
    x2 = [helpers.data((6,), seed=1, batch=3), helpers.data((4,), seed=2, batch=3)]
    smooth = kx.SmoothGrad(multi_input_model, samples=4, noise_scale=0.3, seed=5, output_index=1)
    copies = helpers.noisy_copies(smooth, x2, seed=5)
    sums = [np.zeros_like(item) for item in x2]
    for first, second in zip(*copies):
        pair = [tf.constant(first), tf.constant(second)]
        with tf.GradientTape() as tape:
            tape.watch(pair)
            score = multi_input_model(pair)[1][:, 1]
        for total, gradient in zip(sums, tape.gradient(score, pair)):
            total += gradient.numpy() / 4
    for got, want in zip(smooth.analyze(x2, 1), sums):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# -- CAM family -----------------------------------------------------------------------------
def two_head_cnn(seed=0):
    """Conv(relu) -> GAP -> two Dense heads (3 and 2 logits)."""
    helpers.seeded(seed)
    inputs = keras.Input((6, 6, 2))
    h = layers.Conv2D(4, 3, activation="relu", padding="same", name="conv")(inputs)
    pooled = layers.GlobalAveragePooling2D(name="gap")(h)
    out_a = layers.Dense(3, name="head_a")(pooled)
    out_b = layers.Dense(2, name="head_b")(pooled)
    return helpers.randomize_biases(keras.Model(inputs, [out_a, out_b], name="two_heads"))


def test_grad_cam_output_layer_and_output_index_closed_forms():
    model = two_head_cnn()
    x = helpers.data((6, 6, 2), batch=3)
    activations = keras.Model(model.input, model.get_layer("conv").output)(x).numpy()
    # explaining GAP channel c: d gap_c / d A = 1/36 on channel c, so the map is A_c / 36
    for name in ("grad_cam", "layer_cam"):
        maps = kx.create_analyzer(name, model, output_layer="gap", upsample=False).analyze(x, 2)
        np.testing.assert_allclose(maps, activations[..., 2] / 36, rtol=1e-5, atol=1e-7)
    # output_index=1: head_b's logit t weighs channel c by W_b[c, t] / 36
    kernel = model.get_layer("head_b").kernel.numpy()
    maps = kx.GradCAM(model, output_index=1, upsample=False).analyze(x, 1)
    expected = np.maximum(np.einsum("bhwc,c->bhw", activations, kernel[:, 1] / 36), 0)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)


def test_cam_output_index_on_a_two_head_gap_model():
    model = two_head_cnn()
    x = helpers.data((6, 6, 2), batch=3)
    activations = keras.Model(model.input, model.get_layer("conv").output)(x).numpy()
    kernel = model.get_layer("head_b").kernel.numpy()
    cam = kx.CAM(model, output_index=1, upsample=False).analyze(x, 1)  # not rectified
    np.testing.assert_allclose(
        cam, np.einsum("bhwc,c->bhw", activations, kernel[:, 1]), rtol=1e-5, atol=1e-6
    )


# -- perturbation family ---------------------------------------------------------------------
def one_input_two_outputs(seed=0):
    helpers.seeded(seed)
    inputs = keras.Input((6,))
    h = layers.Dense(5, activation="relu", name="hidden")(inputs)
    model = keras.Model(
        inputs, [layers.Dense(3, name="out_a")(h), layers.Dense(2, name="out_b")(h)]
    )
    return helpers.randomize_biases(model)


def test_occlusion_and_shapley_output_index_and_output_layer_equal_hand_loops():
    model = one_input_two_outputs()
    x = helpers.data((6,), seed=3, batch=3)
    hidden = keras.Model(model.input, model.get_layer("hidden").output)
    unit = int(np.argmax((hidden(x).numpy() > 0).sum(0)))  # the most often active unit

    def second_output(batch):
        return model(batch)[1].numpy()[:, 0]

    def hidden_unit(batch):
        return hidden(batch).numpy()[:, unit]

    assert hidden_unit(x).max() > 0
    for function, kwargs, target in (
        (second_output, {"output_index": 1}, 0),
        (hidden_unit, {"output_layer": "hidden"}, unit),
    ):
        expected = helpers.occlusion_reference(function, x, window=2, stride=1)
        result = kx.Occlusion(model, window=2, stride=1, **kwargs).analyze(x, target)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)
        mask = np.array([0, 1, 1, 2, 3, 3])
        exact = helpers.exact_shapley(function, x, np.zeros(6), mask, 4)
        values = kx.ShapleySampling(model, samples=24, feature_mask=mask, **kwargs).analyze(
            x, target
        )
        np.testing.assert_allclose(values[:, [0, 1, 3, 4]], exact, rtol=1e-4, atol=1e-6)


def test_perturbation_methods_have_no_layer_attribution():
    with pytest.raises(TypeError, match="Occlusion got an unexpected parameter 'layer'"):
        kx.Occlusion(helpers.conv_sequential(), layer="dense")
    with pytest.raises(TypeError, match="RISE got an unexpected parameter 'at_layer'"):
        kx.RISE(helpers.conv_sequential(), at_layer="dense")
