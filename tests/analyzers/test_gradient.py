"""Gradient, input x gradient, guided backprop and deconvnet against hand-written references.

The guided-backprop and deconvnet references rebuild each fixture's forward pass
by hand from the layers' weights (``get_weights()``), with a ReLU whose gradient
is replaced through ``tf.custom_gradient``; they share no code with the library.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

layers = keras.layers
GRADIENT_FAMILY = [
    "gradient",
    "input_t_gradient",
    "smoothgrad",
    "squaregrad",
    "vargrad",
    "integrated_gradients",
    "deconvnet",
    "guided_backprop",
]
SMALL = {
    "smoothgrad": {"samples": 4, "seed": 0},
    "squaregrad": {"samples": 4, "seed": 0},
    "vargrad": {"samples": 4, "seed": 0},
    "integrated_gradients": {"steps": 4},
}


# -- hand rebuilds of each fixture's forward pass ----------------------------------
def dense_weights(model):
    return [
        layer.get_weights() for layer in model._flatten_layers() if isinstance(layer, layers.Dense)
    ]


def ref_dense_sequential(model):
    (w1, b1), (w2, b2), (w3, b3) = dense_weights(model)
    return lambda x, relu: relu(relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3


def ref_relu_forms(model):
    weights = dense_weights(model)

    def forward(x, relu):
        h = x
        for w, b in weights[:-1]:
            h = relu(h @ w + b)  # fused, Activation("relu"), ReLU(), keras.ops.relu
        return h @ weights[-1][0] + weights[-1][1]

    return forward


def ref_nested(model):
    (w1, b1), (w2, b2) = dense_weights(model.get_layer("backbone"))
    w3, b3 = model.layers[-1].get_weights()
    # backbone: Dense(relu) -> Dense; outer: ReLU() -> Dense(softmax, stripped)
    return lambda x, relu: relu(relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3


def ref_conv(model):
    (k1, c1), (k2, c2), (w, b) = [
        layer.get_weights() for layer in model.layers if layer.get_weights()
    ]

    def forward(x, relu):
        h = relu(tf.nn.conv2d(x, k1, 1, "SAME") + c1)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = relu(tf.nn.conv2d(h, k2, 1, "VALID") + c2)
        return tf.reshape(h, (tf.shape(h)[0], -1)) @ w + b

    return forward


def ref_shared(model):
    (w, b), (wd, bd) = dense_weights(model)

    def forward(x, relu):
        first = relu(x @ w + b)
        second = relu(first @ w + b)
        return tf.concat([first, second], axis=-1) @ wd + bd

    return forward


def ref_raw_ops(model):
    (wa, ba), (wb, bb), (wc, bc) = dense_weights(model)
    return lambda x, relu: relu((x @ wa + ba) + (x @ wb + bb)) @ wc + bc


REFERENCES = {
    "sequential": ref_dense_sequential,
    "relu_forms": ref_relu_forms,
    "nested": ref_nested,
    "conv": ref_conv,
    "shared": ref_shared,
    "raw_ops": ref_raw_ops,
}


# -- gradient and input x gradient ---------------------------------------------
def test_gradient_equals_tape_gradient(graph_model):
    model, x = graph_model
    target = np.array([0, 1, 2, 0]) % model.outputs[0].shape[-1]
    expected = helpers.tape_gradient(model, x, target)
    result = kx.Gradient(model, strip_softmax=False).analyze(x, target=target)
    assert result.dtype == np.float32 and result.shape == x.shape
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    times = kx.InputTimesGradient(model, strip_softmax=False).analyze(x, target=target)
    np.testing.assert_allclose(times, x * expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("postprocess,function", [("abs", np.abs), ("square", np.square)])
def test_gradient_postprocess(conv_model, postprocess, function):
    x = helpers.data((8, 8, 2))
    expected = helpers.tape_gradient(conv_model, x, [3, 2, 1, 0])
    result = kx.Gradient(conv_model, postprocess=postprocess).analyze(x, target=[3, 2, 1, 0])
    np.testing.assert_allclose(result, function(expected), rtol=1e-5, atol=1e-7)


def test_subclassed_model_works_with_gradient_methods(subclassed_model, x6):
    target = [0, 1, 2, 1]
    expected = helpers.tape_gradient(subclassed_model, x6, target)
    np.testing.assert_allclose(
        kx.Gradient(subclassed_model).analyze(x6, target=target), expected, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        kx.InputTimesGradient(subclassed_model).analyze(x6, target),
        x6 * expected,
        rtol=1e-5,
        atol=1e-6,
    )
    alphas, weights = helpers.trapezoid_rule(4)
    np.testing.assert_allclose(
        kx.IntegratedGradients(subclassed_model, steps=4).analyze(x6, target),
        helpers.reference_ig(subclassed_model, x6, np.zeros_like(x6), target, alphas, weights),
        rtol=1e-4,
        atol=1e-6,
    )
    smooth = kx.SmoothGrad(subclassed_model, samples=4, noise_scale=0.3, seed=2)
    copies = helpers.noisy_copies(smooth, x6, seed=2)
    grads = np.stack([helpers.tape_gradient(subclassed_model, c, target) for c in copies])
    np.testing.assert_allclose(smooth.analyze(x6, target), grads.mean(0), rtol=1e-4, atol=1e-6)
    assert np.abs(grads.mean(0) - expected).max() > 1e-3  # the noise matters
    var = kx.VarGrad(subclassed_model, samples=4, noise_scale=0.3, seed=2)
    np.testing.assert_allclose(var.analyze(x6, target), grads.var(0), rtol=1e-3, atol=1e-7)
    argmax = np.argmax(subclassed_model(x6).numpy(), axis=1)
    np.testing.assert_allclose(
        kx.Gradient(subclassed_model).analyze(x6),
        helpers.tape_gradient(subclassed_model, x6, argmax),
        rtol=1e-5,
        atol=1e-6,
    )


def test_multi_output_model_with_output_index(multi_input_model, multi_input_data):
    first, second = (tf.constant(item) for item in multi_input_data)
    with tf.GradientTape() as tape:
        tape.watch([first, second])
        score = multi_input_model([first, second])[1][:, 1]
    expected = tape.gradient(score, [first, second])
    result = kx.Gradient(multi_input_model, output_index=1).analyze(multi_input_data, target=1)
    assert isinstance(result, list) and len(result) == 2
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(
        ValueError,
        match=r"output_index must be an int in \[0, 2\).*"
        r"Received: output_index=2",
    ):
        kx.Gradient(multi_input_model, output_index=2)


def test_gradient_at_layer_equals_closed_form(logit_model, x6):
    # Explaining logit t at the last hidden layer's output h2: d(h2 W3 + b3)_t / dh2 = W3[:, t].
    kernel = logit_model.layers[-1].get_weights()[0]
    result = kx.Gradient(logit_model, layer=logit_model.layers[1].name).analyze(
        x6, target=[0, 1, 2, 0]
    )
    np.testing.assert_allclose(result, kernel[:, [0, 1, 2, 0]].T, rtol=1e-6)


# -- guided backprop and deconvnet ---------------------------------------------
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_rebuild_is_faithful(name):
    model = helpers.ALL_GRAPH_MODELS[name]()
    x = helpers.data(tuple(model.inputs[0].shape[1:]))
    forward = REFERENCES[name](model)
    plain = helpers.reference_relu("plain")
    logits = forward(tf.constant(x), plain).numpy()
    target = np.array([0, 1, 2, 0]) % logits.shape[-1]
    np.testing.assert_allclose(
        kx.Gradient(model).analyze(x, target=target),
        helpers.tape_gradient(lambda t: forward(t, plain), x, target),
        rtol=1e-5,
        atol=1e-6,
    )
    probabilities = model(x).numpy()
    if name in ("sequential", "nested"):
        probabilities = np.log(probabilities)
        logits = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(logits, probabilities, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("method,mode", [("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_modified_relu_backprop_equals_reference(name, method, mode):
    model = helpers.ALL_GRAPH_MODELS[name]()
    x = helpers.data(tuple(model.inputs[0].shape[1:]))
    forward = REFERENCES[name](model)
    num_outputs = model.outputs[0].shape[-1]
    target = np.array([0, 1, 2, 0]) % num_outputs
    expected = helpers.tape_gradient(lambda t: forward(t, helpers.reference_relu(mode)), x, target)
    plain = helpers.tape_gradient(lambda t: forward(t, helpers.reference_relu("plain")), x, target)
    assert not np.allclose(expected, plain, atol=1e-4)  # the rule matters on this fixture
    result = kx.create_analyzer(method, model).analyze(x, target=target)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    # target=None explains the argmax logit
    argmax = np.argmax(forward(tf.constant(x), helpers.reference_relu("plain")).numpy(), axis=1)
    np.testing.assert_allclose(
        kx.create_analyzer(method, model).analyze(x),
        helpers.tape_gradient(lambda t: forward(t, helpers.reference_relu(mode)), x, argmax),
        rtol=1e-5,
        atol=1e-6,
    )


def test_guided_backprop_masks_on_a_toy_model():
    # y = w2 . relu(W1 x): positive and negative paths, and a dead unit.
    model = keras.Sequential(
        [
            keras.Input((2,)),
            layers.Dense(3, use_bias=False),
            layers.ReLU(),
            layers.Dense(1, use_bias=False),
        ]
    )
    model.layers[0].set_weights([np.array([[1.0, -1.0, 1.0], [1.0, 2.0, -3.0]], "float32")])
    model.layers[2].set_weights([np.array([[2.0], [-1.0], [1.0]], "float32")])
    x = np.array([[1.0, 1.0]], "float32")  # pre-activations (2, 1, -2): unit 3 dead
    # gradient: w1 column-weighted by relu' * w2 = 2*(1,1) - 1*(-1,2) = (3, 0)
    np.testing.assert_allclose(kx.Gradient(model).analyze(x, 0), [[3.0, 0.0]])
    # guided: only unit 1 (positive upstream and active) passes: 2*(1,1)
    np.testing.assert_allclose(kx.GuidedBackprop(model).analyze(x, 0), [[2.0, 2.0]])
    # deconvnet: positive upstream passes, active or not: 2*(1,1) + 1*(1,-3)
    np.testing.assert_allclose(kx.Deconvnet(model).analyze(x, 0), [[3.0, -1.0]])


# -- iNNvestigate's convention (docs/innvestigate.md, "Same numbers?") -----------
def innvestigate_seeded(forward, mode, x, target):
    """iNNvestigate's guided backprop / deconvnet, built by hand: the backward pass
    starts from the explained logit's value (its ReverseAnalyzerBase head mapping keeps
    the output), not from 1."""
    x = tf.constant(x)
    relu = helpers.reference_relu(mode)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = forward(x, relu)
    seed = tf.one_hot(target, logits.shape[-1]) * logits
    return tape.gradient(logits, x, output_gradients=seed).numpy(), logits.numpy()


@pytest.mark.parametrize("method,mode", [("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_innvestigate_convention_is_ours_times_the_logit(method, mode):
    model = helpers.conv_sequential()
    x = helpers.data(tuple(model.inputs[0].shape[1:]), batch=6)
    forward = ref_conv(model)
    logits = forward(tf.constant(x), helpers.reference_relu("plain")).numpy()
    analyzer = kx.create_analyzer(method, model)
    rows = np.arange(len(x))
    per_sample = (slice(None),) + (None,) * (x.ndim - 1)

    # The modified ReLUs are positively homogeneous only (relu(-g) != -relu(g)):
    # theirs = |z_t| x ours for the score |z_t|, for any target t.
    for target in (logits.argmax(axis=1), logits.argmin(axis=1)):
        z = logits[rows, target]
        theirs, _ = innvestigate_seeded(forward, mode, x, target)

        def magnitude(out, target=target):
            return tf.abs(tf.gather(out, target, axis=1, batch_dims=1))

        ours = analyzer.analyze(x, target=magnitude) * np.abs(z)[per_sample]
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)

    # The default target with a positive logit (the usual case): theirs = ours x logit.
    top = logits.max(axis=1)
    theirs, _ = innvestigate_seeded(forward, mode, x, logits.argmax(axis=1))
    ours = analyzer.analyze(x) * top[per_sample]
    positive = top > 0
    assert positive.any() and not positive.all()  # this fixture has both cases
    np.testing.assert_allclose(theirs[positive], ours[positive], rtol=1e-5, atol=1e-6)
    assert not np.allclose(theirs[~positive], ours[~positive], atol=1e-6)


# -- softmax bypass -----------------------------------------------------------
def softmax_variants():
    def trunk(seed):
        helpers.seeded(seed)
        inputs = keras.Input((6,))
        hidden = layers.Dense(5, activation="relu")(inputs)
        return inputs, hidden

    inputs, hidden = trunk(1)
    logits = layers.Dense(3, name="logits")(hidden)
    yield "Softmax layer", keras.Model(inputs, layers.Softmax()(logits))
    inputs, hidden = trunk(2)
    logits = layers.Dense(3, name="logits")(hidden)
    yield "Activation softmax", keras.Model(inputs, layers.Activation("softmax")(logits))
    inputs, hidden = trunk(3)
    yield (
        "fused softmax",
        keras.Model(inputs, layers.Dense(3, activation="softmax", name="logits")(hidden)),
    )
    inputs, hidden = trunk(4)
    head = keras.Sequential(
        [keras.Input((5,)), layers.Dense(3, activation="softmax", name="logits")], name="head"
    )
    yield "nested softmax", keras.Model(inputs, head(hidden))


@pytest.mark.parametrize(
    "kind", ["Softmax layer", "Activation softmax", "fused softmax", "nested softmax"]
)
def test_softmax_is_bypassed(kind, x6):
    model = dict(softmax_variants())[kind]
    dense = [layer for layer in model._flatten_layers() if isinstance(layer, layers.Dense)]
    (w1, b1), (w2, b2) = (layer.get_weights() for layer in dense)

    def logits(x):  # by hand from the weights
        return tf.nn.relu(x @ w1 + b1) @ w2 + b2

    target = [2, 0, 1, 2]
    result = kx.Gradient(model).analyze(x6, target=target)
    np.testing.assert_allclose(
        result, helpers.tape_gradient(logits, x6, target), rtol=1e-5, atol=1e-6
    )
    kept = kx.Gradient(model, strip_softmax=False).analyze(x6, target=target)
    np.testing.assert_allclose(
        kept,
        helpers.tape_gradient(lambda x: tf.nn.softmax(logits(x)), x6, target),
        rtol=1e-4,
        atol=1e-6,
    )
    assert not np.allclose(result, kept, atol=1e-3)
    guided = kx.GuidedBackprop(model).analyze(x6, target=target)
    reference = helpers.tape_gradient(
        lambda x: helpers.reference_relu("guided")(x @ w1 + b1) @ w2 + b2, x6, target
    )
    np.testing.assert_allclose(guided, reference, rtol=1e-5, atol=1e-6)
    # the model still ends in its softmax
    np.testing.assert_allclose(model(x6).numpy().sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("form", helpers.SIGMOID_FORMS)
def test_sigmoid_is_bypassed(form, x6):
    model, logits_model = helpers.binary_classifier(form)
    # the twin really is the same network before its sigmoid
    np.testing.assert_allclose(
        model(x6).numpy(), tf.sigmoid(logits_model(x6)).numpy(), rtol=1e-6, atol=1e-7
    )
    result = kx.Gradient(model).analyze(x6, target=0)
    logit_gradient = helpers.tape_gradient(logits_model, x6, 0)
    np.testing.assert_allclose(result, logit_gradient, rtol=1e-5, atol=1e-7)
    kept = kx.Gradient(model, strip_softmax=False).analyze(x6, target=0)
    probability_gradient = helpers.tape_gradient(lambda x: tf.sigmoid(logits_model(x)), x6, 0)
    np.testing.assert_allclose(kept, probability_gradient, rtol=1e-5, atol=1e-7)
    assert not np.allclose(result, kept, atol=1e-3)  # sigma' < 1/4 shrinks the gradient


@pytest.mark.parametrize("form", helpers.SIGMOID_FORMS)
def test_negative_class_of_a_binary_model(form, x6):
    model, _ = helpers.binary_classifier(form)
    positive = kx.Gradient(model).analyze(x6, target=0)
    negative = kx.Gradient(model).analyze(x6, target=lambda out: -out[:, 0])
    # d(-z)/dx is -dz/dx bit for bit: negation is exact in floating point
    np.testing.assert_array_equal(negative, -positive)
    assert np.abs(positive).max() > 0
    # relevance too: LRP starts from the selected score, -z, and each rule is odd in it
    positive = kx.LRPEpsilon(model).analyze(x6, target=0)
    negative = kx.LRPEpsilon(model).analyze(x6, target=lambda out: -out[:, 0])
    np.testing.assert_allclose(negative, -positive, rtol=1e-6, atol=1e-7)


# -- the model is never modified, functions are traced once --------------------
@pytest.mark.parametrize("name", GRADIENT_FAMILY)
def test_weights_bit_identical_after_analysis(name):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2))
    before = [w.copy() for w in model.get_weights()]
    output = model(x).numpy()
    kx.create_analyzer(name, model, **SMALL.get(name, {})).analyze(x, target=[0, 1, 2, 3])
    after = model.get_weights()
    assert len(before) == len(after)
    for first, second in zip(before, after):
        assert first.dtype == second.dtype and np.array_equal(first, second)
    np.testing.assert_array_equal(model(x).numpy(), output)
    assert model.layers[0].activation is keras.activations.relu


@pytest.mark.parametrize("name", GRADIENT_FAMILY)
def test_second_batch_of_same_shape_does_not_retrace(name):
    model = helpers.conv_sequential()
    analyzer = kx.create_analyzer(name, model, **SMALL.get(name, {}))
    analyzer.analyze(helpers.data((8, 8, 2), seed=1), target=1)
    assert list(helpers.tracing_counts(analyzer).values()) == [1]
    analyzer.analyze(helpers.data((8, 8, 2), seed=2), target=2)
    analyzer.analyze(helpers.data((8, 8, 2), seed=3), target=[0, 1, 2, 3])
    assert list(helpers.tracing_counts(analyzer).values()) == [1]
    analyzer.analyze(helpers.data((8, 8, 2), seed=3, batch=2), target=[0, 1])
    # a new shape traces once more
    assert list(helpers.tracing_counts(analyzer).values()) == [2]


# -- integer token inputs (Embedding) ---------------------------------------------
def token_model(seed=0):
    """int tokens (5,) -> Embedding(10, 4) -> Conv1D(tanh) -> GlobalAveragePooling1D -> Dense(3)."""
    helpers.seeded(seed)
    inputs = keras.Input((5,), dtype="int32")
    h = layers.Embedding(10, 4, name="embedding")(inputs)
    h = layers.Conv1D(3, 2, activation="tanh", padding="same", name="conv")(h)
    h = layers.GlobalAveragePooling1D()(h)
    outputs = layers.Dense(3, name="head")(h)
    return helpers.randomize_biases(keras.Model(inputs, outputs, name="tokens"))


TOKENS = np.array([[3, 4, 1, 7, 2], [9, 9, 5, 0, 1], [2, 8, 6, 4, 3]], "int32")


def token_reference(model, tokens, target):
    """(d score / d embedding output, embedding output) with a tape, layer by layer."""
    vectors = tf.gather(model.get_layer("embedding").embeddings, tokens)
    with tf.GradientTape() as tape:
        tape.watch(vectors)
        h = model.get_layer("conv")(vectors)
        logits = model.get_layer("head")(tf.reduce_mean(h, axis=1))
        score = tf.gather(logits, np.asarray(target), axis=1, batch_dims=1)
    return tape.gradient(score, vectors).numpy(), vectors.numpy()


def test_gradient_methods_give_per_token_attributions_of_the_embedding_output():
    model = token_model()
    target = np.array([0, 2, 1])
    gradient, vectors = token_reference(model, TOKENS, target)
    result = kx.Gradient(model).analyze(TOKENS, target)
    assert result.shape == TOKENS.shape and result.dtype == np.float32
    np.testing.assert_allclose(result, gradient.sum(-1), rtol=1e-5, atol=1e-7)
    times = kx.InputTimesGradient(model).analyze(TOKENS, target)
    np.testing.assert_allclose(times, (gradient * vectors).sum(-1), rtol=1e-5, atol=1e-7)
    # layer=<the Embedding> keeps the embedding axis
    at_layer = kx.Gradient(model, layer="embedding").analyze(TOKENS, target)
    np.testing.assert_allclose(at_layer, gradient, rtol=1e-5, atol=1e-7)


def test_integer_input_not_read_by_an_embedding_is_rejected():
    inputs = keras.Input((5,), dtype="int32")
    outputs = layers.Dense(3)(keras.ops.cast(inputs, "float32"))
    model = keras.Model(inputs, outputs, name="cast_tokens")
    with pytest.raises(
        ValueError,
        match=r"Input 0 of model 'cast_tokens' is an integer input consumed by "
        r"\['cast(_\d+)?'\], not by an Embedding layer, so it has no gradient\. Feed floats, "
        r"or explain layer=",
    ):
        kx.Gradient(model)
    with pytest.raises(ValueError, match=r"not by an Embedding layer"):
        kx.InputTimesGradient(model)


def test_masked_embedding_gives_zero_to_masked_tokens():
    helpers.seeded(0)
    inputs = keras.Input((5,), dtype="int32")
    h = layers.Embedding(10, 4, mask_zero=True)(inputs)
    h = layers.GlobalAveragePooling1D()(h)  # averages the unmasked positions only
    head = layers.Dense(3)
    model = keras.Model(inputs, head(h))
    tokens = TOKENS.copy()
    tokens[:, -2:] = 0  # padding
    result = kx.Gradient(model).analyze(tokens, 1)
    # d logit_1 / d e_p = W[:, 1] / (number of unmasked tokens) at unmasked positions p
    expected = np.where(tokens != 0, head.kernel.numpy()[:, 1].sum() / 3, 0.0)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["input_t_gradient", "lrp.z", "lrp.epsilon"])
def test_masked_embedding_relevance_is_conserved_on_unmasked_tokens(name):
    helpers.seeded(0)
    inputs = keras.Input((5,), dtype="int32")
    embedding = layers.Embedding(10, 4, mask_zero=True)
    head = layers.Dense(3, use_bias=False)
    model = keras.Model(inputs, head(layers.GlobalAveragePooling1D()(embedding(inputs))))
    tokens = TOKENS.copy()
    tokens[:, -2:] = 0  # padding; 3 tokens per row remain
    result = kx.create_analyzer(name, model).analyze(tokens, 1)
    # a linear model: R_p = e_p . W[:, 1] / 3 on unmasked tokens, 0 on padding
    vectors = embedding.embeddings.numpy()[tokens]
    expected = np.where(tokens != 0, vectors @ head.kernel.numpy()[:, 1] / 3, 0.0)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(result.sum(axis=1), model(tokens).numpy()[:, 1], rtol=1e-4)
