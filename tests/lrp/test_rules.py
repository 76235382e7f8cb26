"""Each LRP rule against a slow numpy implementation of its formula (SPEC 2).

The references work on the explicit matrix of the layer: for Dense it is the
kernel, for Conv2D it is unrolled with loops over output positions, so every
formula reads as in the papers: contributions ``x_i w_ij``, denominators ``z_j``,
``R_i = sum_j x_i w_ij / z_j R_j``.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain import rules

layers = keras.layers


def reference(text, x, matrix, bias, relevance, connected):
    """The numpy formula of the rule whose expected repr is ``text``."""
    return helpers.rule_reference(
        helpers.ref_from_repr(text), x, matrix, bias, relevance, connected
    )


# -- fixtures ------------------------------------------------------------------------
def dense_layer():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((7,)), layers.Dense(5)])
    model.layers[0].bias.assign(np.random.default_rng(2).normal(0, 0.3, 5).astype("float32"))
    kernel, bias = (v.numpy() for v in model.layers[0].weights)
    return model, kernel, bias, np.ones_like(kernel, dtype=bool)


def conv_layer(padding):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5, 5, 2)), layers.Conv2D(3, 3, padding=padding)])
    model.layers[0].bias.assign(np.random.default_rng(4).normal(0, 0.3, 3).astype("float32"))
    kernel, bias = (v.numpy() for v in model.layers[0].weights)
    matrix, full_bias, connected = helpers.conv_matrix(kernel, bias, (5, 5, 2), padding)
    return model, matrix, full_bias, connected


LAYERS = {
    "dense": dense_layer,
    "conv_valid": lambda: conv_layer("valid"),
    "conv_same": lambda: conv_layer("same"),
}


# (rule, its expected repr): the reference reads the parameters from the literal text
RULES = [
    (rules.Z(), "Z()"),
    (rules.Epsilon(0.05), "Epsilon(epsilon=0.05)"),
    (rules.AlphaBeta(2, 1), "AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)"),
    (rules.AlphaBeta(1, 0), "AlphaBeta(alpha=1, beta=0, bias=True, epsilon=1e-07)"),
    (rules.AlphaBeta(2, 1, bias=False), "AlphaBeta(alpha=2, beta=1, bias=False, epsilon=1e-07)"),
    (rules.AlphaBeta(3, 2), "AlphaBeta(alpha=3, beta=2, bias=True, epsilon=1e-07)"),
    (rules.AlphaBeta(3), "AlphaBeta(alpha=3, beta=2, bias=True, epsilon=1e-07)"),
    (rules.ZPlus(), "ZPlus(epsilon=1e-07)"),
    (rules.ZPlusFast(), "ZPlusFast(epsilon=1e-07)"),
    (rules.Gamma(0.25), "Gamma(gamma=0.25, epsilon=1e-07)"),
    (rules.Gamma(1.0, epsilon=0.01), "Gamma(gamma=1.0, epsilon=0.01)"),
    (rules.ZBox(-1.5, 2.0), "ZBox(low=-1.5, high=2.0, epsilon=1e-07)"),
    (rules.WSquare(), "WSquare(epsilon=1e-07)"),
    (rules.Flat(), "Flat(epsilon=1e-07)"),
]


def run_rule(rule, step, x, relevance, compiled=False):
    def apply(x, relevance):
        with tf.GradientTape() as tape:
            tape.watch(x)
            output = rule(step, [x])
        return output, tape.gradient(output, x, output_gradients=relevance)

    if compiled:
        apply = tf.function(apply)
    output, result = apply(tf.constant(x), tf.constant(relevance))
    return output.numpy(), result.numpy()


@pytest.mark.parametrize("layer_name", sorted(LAYERS))
@pytest.mark.parametrize("rule, text", RULES, ids=[text for _, text in RULES])
def test_rule_matches_numpy_reference(rule, text, layer_name):
    assert repr(rule) == text
    model, matrix, bias, connected = LAYERS[layer_name]()
    step = helpers.first_step(model)
    rng = np.random.default_rng(5)
    in_shape = model.input_shape[1:]
    x = rng.normal(size=(3, *in_shape)).astype("float32")
    if isinstance(rule, rules.ZPlusFast):
        x = np.abs(x)  # the rule assumes x >= 0
    out_shape = model.output_shape[1:]
    relevance = rng.normal(size=(3, *out_shape)).astype("float32")
    output, result = run_rule(rule, step, x, relevance)
    np.testing.assert_allclose(output, model(x).numpy(), rtol=1e-5, atol=1e-5)
    expected = reference(text, x.reshape(3, -1), matrix, bias, relevance.reshape(3, -1), connected)
    np.testing.assert_allclose(result.reshape(3, -1), expected, rtol=2e-4, atol=2e-5)


NONNEGATIVE_CASES = [RULES[2], RULES[7], RULES[3]]  # AlphaBeta(2, 1), ZPlus, AlphaBeta(1, 0)


@pytest.mark.parametrize("rule, text", NONNEGATIVE_CASES, ids=[t for _, t in NONNEGATIVE_CASES])
def test_nonnegative_fast_path_is_exact(rule, text):
    """The x⁻-free path for inputs marked x >= 0 gives the general result on such inputs."""
    model, matrix, bias, connected = conv_layer("same")
    step = helpers.first_step(model)
    marked = helpers.marked_step(step, first_linear=True, nonnegative=True)
    rng = np.random.default_rng(6)
    x = np.maximum(rng.normal(size=(2, 5, 5, 2)), 0).astype("float32")
    relevance = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    general = reference(text, x.reshape(2, -1), matrix, bias, relevance.reshape(2, -1), connected)
    for current, compiled in [(step, False), (step, True), (marked, False), (marked, True)]:
        _, result = run_rule(rule, current, x, relevance, compiled)
        np.testing.assert_allclose(result.reshape(2, -1), general, rtol=2e-4, atol=2e-5)
    # an unmarked step takes the general path, right for mixed signs too
    x_signed = rng.normal(size=(2, 5, 5, 2)).astype("float32")
    _, result = run_rule(rule, step, x_signed, relevance, compiled=True)
    expected = reference(
        text, x_signed.reshape(2, -1), matrix, bias, relevance.reshape(2, -1), connected
    )
    np.testing.assert_allclose(result.reshape(2, -1), expected, rtol=2e-4, atol=2e-5)
    # the x- terms matter for signed inputs: dropping them would fail the check above
    positive_only = reference(
        text,
        np.maximum(x_signed, 0).reshape(2, -1),
        matrix,
        bias,
        relevance.reshape(2, -1),
        connected,
    )
    assert np.abs(positive_only - expected).max() > 1e-2


def test_stabilizer_sign_of_zero_is_positive():
    z = tf.constant([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(rules.stabilize(z, 0.5).numpy(), [-2.5, 0.5, 3.5])
    # Z guards exact zeros only: they pass no relevance
    np.testing.assert_allclose(rules.divide(tf.ones(3), z, 0.0).numpy(), [-0.5, 0.0, 1 / 3])


COVERAGE = {
    "conv1d": lambda: [keras.Input((6, 2)), layers.Conv1D(3, 3)],
    "conv3d": lambda: [keras.Input((4, 4, 3, 2)), layers.Conv3D(2, 2)],
    "depthwise": lambda: [keras.Input((5, 5, 2)), layers.DepthwiseConv2D(3, depth_multiplier=2)],
    "separable": lambda: [keras.Input((5, 5, 2)), layers.SeparableConv2D(3, 3)],
    "transpose": lambda: [keras.Input((3, 3, 2)), layers.Conv2DTranspose(3, 3, strides=2)],
    "strided": lambda: [keras.Input((6, 6, 2)), layers.Conv2D(3, 3, strides=2, padding="same")],
    "batch_norm": lambda: [keras.Input((4, 3)), layers.BatchNormalization()],
}


@pytest.mark.parametrize("name", sorted(COVERAGE))
def test_epsilon_on_every_linear_layer_matches_jacobian_reference(name):
    keras.utils.set_random_seed(7)
    model = helpers.randomize(keras.Sequential(COVERAGE[name]()))
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, *model.input_shape[1:])).astype("float32")
    eps = 0.01
    if name == "separable":
        # two linear ops: the rule applies to each; compare against the composed map with
        # the intermediate relevance computed by the reference too
        layer = model.layers[0]
        depth = keras.Sequential(
            [keras.Input((5, 5, 2)), layers.DepthwiseConv2D(3, use_bias=False)]
        )
        depth.layers[0].kernel.assign(layer.depthwise_kernel)
        point = keras.Sequential([keras.Input((3, 3, 2)), layers.Conv2D(3, 1)])
        point.layers[0].kernel.assign(layer.pointwise_kernel)
        point.layers[0].bias.assign(layer.bias)
        hidden = depth(x).numpy()
        logits = model(x).numpy()
        seed = np.zeros_like(logits)
        seed.reshape(2, -1)[np.arange(2), logits.reshape(2, -1).argmax(1)] = logits.reshape(
            2, -1
        ).max(1)
        r_hidden = helpers.jacobian_epsilon_reference(point, hidden, seed, eps)
        r_hidden = r_hidden.reshape(hidden.shape)
        expected = helpers.jacobian_epsilon_reference(depth, x, r_hidden, eps)
    else:
        logits = model(x).numpy()
        seed = np.zeros_like(logits).reshape(2, -1)
        seed[np.arange(2), logits.reshape(2, -1).argmax(1)] = logits.reshape(2, -1).max(1)
        expected = helpers.jacobian_epsilon_reference(model, x, seed, eps)
    result = kx.LRP(model, rules.Epsilon(eps), canonizers=[]).analyze(x)
    np.testing.assert_allclose(result.reshape(2, -1), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("kind", ["add", "average_pooling", "global_average"])
def test_proportional_rule_matches_reference(kind):
    rng = np.random.default_rng(9)
    if kind == "add":
        a, b = keras.Input((4,)), keras.Input((4,))
        model = keras.Model([a, b], layers.Add()([a, b]))
        xs = [rng.normal(size=(2, 4)).astype("float32") for _ in range(2)]
    else:
        inputs = keras.Input((4, 4, 2))
        layer = (
            layers.AveragePooling2D(2)
            if kind == "average_pooling"
            else (layers.GlobalAveragePooling2D())
        )
        model = keras.Model(inputs, layer(inputs))
        xs = [rng.normal(size=(2, 4, 4, 2)).astype("float32")]
    step = helpers.first_step(model)
    assert step.op.kind == "sum_pool"
    tensors = [tf.constant(x) for x in xs]
    relevance = rng.normal(size=model.output_shape[1:]).astype("float32")[None].repeat(2, 0)
    eps = 1e-3
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        output = rules.Proportional(eps)(step, tensors)
    result = tape.gradient(output, tensors, output_gradients=tf.constant(relevance))
    if kind == "add":
        z = xs[0] + xs[1]
        expected = [x * relevance / helpers.stab(z, eps) for x in xs]
    else:
        x = xs[0]
        expected = np.zeros_like(x, dtype=np.float64)
        if kind == "average_pooling":
            for oh in range(2):
                for ow in range(2):
                    window = x[:, 2 * oh : 2 * oh + 2, 2 * ow : 2 * ow + 2, :] / 4
                    z = window.sum(axis=(1, 2))
                    share = relevance[:, oh, ow, :] / helpers.stab(z, eps)
                    expected[:, 2 * oh : 2 * oh + 2, 2 * ow : 2 * ow + 2, :] = (
                        window * share[:, None, None, :]
                    )
        else:
            z = x.mean(axis=(1, 2))
            expected = x / 16 * (relevance / helpers.stab(z, eps))[:, None, None, :]
        expected = [expected]
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)


def test_rule_reprs_and_validation():
    assert repr(rules.Epsilon(0.1)) == "Epsilon(epsilon=0.1)"
    assert repr(rules.AlphaBeta(2, 1)) == "AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)"
    assert repr(rules.ZPlus()) == "ZPlus(epsilon=1e-07)"
    assert repr(rules.ZBox(0.0, 1.0)) == "ZBox(low=0.0, high=1.0, epsilon=1e-07)"
    assert repr(rules.Z()) == "Z()"
    with pytest.raises(ValueError, match=r"alpha - beta = 1.*alpha=2, beta=2"):
        rules.AlphaBeta(2, 2)
    with pytest.raises(ValueError, match=r"epsilon > 0.*rules.Z\(\)"):
        rules.Epsilon(0.0)
    with pytest.raises(ValueError, match="gamma >= 0"):
        rules.Gamma(-1.0)


@pytest.mark.parametrize("per_sample", [False, True])
def test_zbox_with_array_bounds(per_sample):
    model, matrix, bias, connected = conv_layer("same")
    step = helpers.first_step(model)
    rng = np.random.default_rng(10)
    x = rng.uniform(-1, 1, size=(3, 5, 5, 2)).astype("float32")
    shape = (3, 5, 5, 2) if per_sample else (5, 5, 2)
    low = rng.uniform(-2, -1, size=shape).astype("float32")
    high = rng.uniform(1, 2, size=shape).astype("float32")
    relevance = rng.normal(size=(3, 5, 5, 3)).astype("float32")
    _, result = run_rule(rules.ZBox(low, high), step, x, relevance, compiled=True)
    box = helpers.Ref(
        "zbox",
        low=np.broadcast_to(low, x.shape).reshape(3, -1),
        high=np.broadcast_to(high, x.shape).reshape(3, -1),
    )
    expected = helpers.rule_reference(
        box, x.reshape(3, -1), matrix, bias, relevance.reshape(3, -1), connected
    )
    np.testing.assert_allclose(result.reshape(3, -1), expected, rtol=2e-4, atol=2e-5)


def test_constant_operand_breaks_the_nonnegative_mark():
    # relu(h) + (-2.0) can be negative: the head must keep its x⁻ terms.
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(3, name="head")(h + (-2.0))
    model = keras.Model(inputs, outputs)
    rule = rules.AlphaBeta(2, 1)
    analyzer = kx.LRP(model, rule)
    head_step = [step for step in helpers.analyzer_steps(analyzer) if step.op.kind == "linear"][-1]
    assert not head_step.nonnegative

    x = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
    hidden, head = model.get_layer("hidden"), model.get_layer("head")
    w1, b1 = (v.numpy().astype(np.float64) for v in hidden.weights)
    w2, b2 = (v.numpy().astype(np.float64) for v in head.weights)
    activations = np.maximum(x @ w1 + b1, 0)
    shifted = activations - 2.0
    logits = shifted @ w2 + b2
    relevance = np.eye(3)[logits.argmax(1)] * logits
    text = "AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)"
    assert repr(rule) == text
    relevance = reference(text, shifted, w2, b2, relevance, None)
    # x + c is the proportional z-rule: the constant takes its share
    relevance = activations * helpers.safe_div(relevance, shifted, 1e-7)
    relevance = reference(text, x, w1, b1, relevance, None)
    np.testing.assert_allclose(analyzer.analyze(x), relevance, rtol=1e-4, atol=1e-5)


def test_alpha_beta_bias_parts_keep_shares_below_one():
    """alpha1beta0: the activator denominator holds only b⁺ (the bias's positive part).

    iNNvestigate 2.1.2 puts the whole bias (b⁺ + b⁻) in the activator denominator; with a
    negative bias that denominator shrinks below the numerators' sum and relevance grows.
    """
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layers.Dense(1)(inputs))
    model.layers[1].kernel.assign(np.array([[1.0], [2.0], [-1.0]], "float32"))
    model.layers[1].bias.assign(np.array([-2.5], "float32"))
    x = np.array([[1.0, 1.0, 1.0]], "float32")  # z = 1 + 2 - 1 - 2.5 = -0.5
    analyzer = kx.LRPAlpha1Beta0(model)
    relevance_out = float(model(x).numpy()[0, 0])
    result = analyzer.analyze(x, target=0)
    # positive part: x⁺W⁺ = (1, 2, 0), denominator 3 + b⁺ = 3 -> shares (1/3, 2/3, 0)
    np.testing.assert_allclose(result[0], np.array([1 / 3, 2 / 3, 0.0]) * relevance_out, rtol=1e-6)
    innvestigate_denominator = 3.0 - 2.5  # whole bias: shares would sum to 6
    assert abs(result.sum() / relevance_out - 1) < 1e-6 < abs(3.0 / innvestigate_denominator - 1)
