"""Each LRP rule against a slow numpy implementation of its formula (SPEC 2).

The references work on the explicit matrix of the layer: for Dense it is the
kernel, for Conv2D it is unrolled with loops over output positions, so every
formula reads as in the papers: contributions ``x_i w_ij``, denominators ``z_j``,
``R_i = sum_j x_i w_ij / z_j R_j``.
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain import _graph, rules

layers = keras.layers


# -- slow references -----------------------------------------------------------------
def stab(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def safe_div(a, b, eps):
    if eps == 0:
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))
    return a / stab(b, eps)


def redistribute(numerators, z, relevance, eps):
    """R_i = sum_j numerators_ij / stab(z_j) * R_j, numerators (B, I, J)."""
    return np.einsum("bij,bj->bi", numerators, safe_div(relevance, z, eps))


def reference(rule, x, matrix, bias, relevance, connected, low=None, high=None):
    """The rule's formula on x (B, I), matrix (I, J), bias (J,), relevance (B, J)."""
    x, w, b, r = (np.asarray(a, np.float64) for a in (x, matrix, bias, relevance))
    contributions = x[:, :, None] * w[None]
    pos, neg = np.maximum(w, 0), np.minimum(w, 0)
    xp, xn = np.maximum(x, 0)[:, :, None], np.minimum(x, 0)[:, :, None]
    if isinstance(rule, rules.Z | rules.Epsilon):
        return redistribute(contributions, contributions.sum(1) + b, r, rule.epsilon)
    if isinstance(rule, rules.AlphaBeta):  # ZPlus included
        bp, bn = (np.maximum(b, 0), np.minimum(b, 0)) if rule.bias else (0.0, 0.0)
        act = xp * pos + xn * neg
        inh = xp * neg + xn * pos
        r_pos = redistribute(act, act.sum(1) + bp, r, rule.epsilon)
        r_neg = redistribute(inh, inh.sum(1) + bn, r, rule.epsilon)
        return rule.alpha * r_pos - rule.beta * r_neg
    if isinstance(rule, rules.ZPlusFast):
        num = x[:, :, None] * pos
        return redistribute(num, num.sum(1), r, rule.epsilon)
    if isinstance(rule, rules.Gamma):
        num = x[:, :, None] * (w + rule.gamma * pos)
        den = num.sum(1) + b + rule.gamma * np.maximum(b, 0)
        return redistribute(num, den, r, rule.epsilon)
    if isinstance(rule, rules.ZBox):
        num = contributions - low * pos[None] - high * neg[None]
        return redistribute(num, num.sum(1), r, rule.epsilon)
    if isinstance(rule, rules.WSquare):
        num = np.broadcast_to(w**2, contributions.shape)
        return redistribute(num, num.sum(1), r, rule.epsilon)
    if isinstance(rule, rules.Flat):
        num = np.broadcast_to(connected.astype(np.float64), contributions.shape)
        return redistribute(num, num.sum(1), r, rule.epsilon)
    raise AssertionError(rule)


def conv_matrix(kernel, bias, in_shape, padding):
    """Unroll a stride-1 Conv2D into (matrix, bias, connected) with explicit loops."""
    height, width, channels = in_shape
    kh, kw, _, filters = kernel.shape
    if padding == "same":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        out_h, out_w = height, width
    else:
        top = left = 0
        out_h, out_w = height - kh + 1, width - kw + 1
    matrix = np.zeros((height * width * channels, out_h * out_w * filters))
    connected = np.zeros_like(matrix, dtype=bool)
    for oh in range(out_h):
        for ow in range(out_w):
            for f in range(filters):
                j = (oh * out_w + ow) * filters + f
                for dh in range(kh):
                    for dw in range(kw):
                        ih, iw = oh + dh - top, ow + dw - left
                        if not (0 <= ih < height and 0 <= iw < width):
                            continue
                        for c in range(channels):
                            i = (ih * width + iw) * channels + c
                            matrix[i, j] = kernel[dh, dw, c, f]
                            connected[i, j] = True
    return matrix, np.tile(bias, out_h * out_w), connected


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
    matrix, full_bias, connected = conv_matrix(kernel, bias, (5, 5, 2), padding)
    return model, matrix, full_bias, connected


LAYERS = {
    "dense": dense_layer,
    "conv_valid": lambda: conv_layer("valid"),
    "conv_same": lambda: conv_layer("same"),
}

RULES = [
    rules.Z(),
    rules.Epsilon(0.05),
    rules.AlphaBeta(2, 1),
    rules.AlphaBeta(1, 0),
    rules.AlphaBeta(2, 1, bias=False),
    rules.AlphaBeta(3, 2),
    rules.ZPlus(),
    rules.ZPlusFast(),
    rules.Gamma(0.25),
    rules.ZBox(-1.5, 2.0),
    rules.WSquare(),
    rules.Flat(),
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
@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_rule_matches_numpy_reference(rule, layer_name):
    model, matrix, bias, connected = LAYERS[layer_name]()
    step = _graph.Plan(model).steps[0]
    rng = np.random.default_rng(5)
    in_shape = model.input_shape[1:]
    x = rng.normal(size=(3, *in_shape)).astype("float32")
    if isinstance(rule, rules.ZPlusFast):
        x = np.abs(x)  # the rule assumes x >= 0
    out_shape = model.output_shape[1:]
    relevance = rng.normal(size=(3, *out_shape)).astype("float32")
    output, result = run_rule(rule, step, x, relevance)
    np.testing.assert_allclose(output, model(x).numpy(), rtol=1e-5, atol=1e-5)
    expected = reference(
        rule,
        x.reshape(3, -1),
        matrix,
        bias,
        relevance.reshape(3, -1),
        connected,
        low=getattr(rule, "low", None),
        high=getattr(rule, "high", None),
    )
    np.testing.assert_allclose(result.reshape(3, -1), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize(
    "rule", [rules.AlphaBeta(2, 1), rules.ZPlus(), rules.AlphaBeta(1, 0)], ids=repr
)
def test_nonnegative_fast_path_is_exact(rule):
    """x >= 0 known statically (after a ReLU) or at run time gives the general result."""
    model, *_ = conv_layer("same")
    step = _graph.Plan(model).steps[0]
    marked = dataclasses.replace(step, first_linear=True, nonnegative=True)
    rng = np.random.default_rng(6)
    x = np.maximum(rng.normal(size=(2, 5, 5, 2)), 0).astype("float32")
    relevance = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    general = reference(
        rule, x.reshape(2, -1), *conv_layer("same")[1:3], relevance.reshape(2, -1), None
    )
    for current, compiled in [(step, False), (step, True), (marked, False), (marked, True)]:
        _, result = run_rule(rule, current, x, relevance, compiled)
        np.testing.assert_allclose(result.reshape(2, -1), general, rtol=2e-4, atol=2e-5)
    # mixed signs inside tf.function take the general branch of the run-time check
    x_signed = rng.normal(size=(2, 5, 5, 2)).astype("float32")
    _, result = run_rule(rule, step, x_signed, relevance, compiled=True)
    expected = reference(
        rule, x_signed.reshape(2, -1), *conv_layer("same")[1:3], relevance.reshape(2, -1), None
    )
    np.testing.assert_allclose(result.reshape(2, -1), expected, rtol=2e-4, atol=2e-5)


def test_stabilizer_sign_of_zero_is_positive():
    z = tf.constant([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(rules.stabilize(z, 0.5).numpy(), [-2.5, 0.5, 3.5])
    # Z guards exact zeros only: they pass no relevance
    np.testing.assert_allclose(rules.divide(tf.ones(3), z, 0.0).numpy(), [-0.5, 0.0, 1 / 3])


def jacobian_reference(layer_model, x, relevance, eps):
    """Epsilon rule from the layer's Jacobian (any linear layer): R_i = sum_j x_i J_ji / z_j R_j."""
    flat_x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(flat_x)
        z = layer_model(flat_x)
    jac = tape.batch_jacobian(z, flat_x).numpy().reshape(x.shape[0], z.shape[1:].num_elements(), -1)
    zeros = layer_model(np.zeros_like(x)).numpy().reshape(x.shape[0], -1)
    contributions = x.reshape(x.shape[0], 1, -1) * jac  # (B, J, I)
    z = contributions.sum(2) + zeros
    return np.einsum(
        "bji,bj->bi", contributions, safe_div(relevance.reshape(x.shape[0], -1), z, eps)
    )


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
    from test_relevance import randomize

    from keras_explain.analyzers.relevance import LRP

    keras.utils.set_random_seed(7)
    model = randomize(keras.Sequential(COVERAGE[name]()))
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
        r_hidden = jacobian_reference(point, hidden, seed, eps).reshape(hidden.shape)
        expected = jacobian_reference(depth, x, r_hidden, eps)
    else:
        logits = model(x).numpy()
        seed = np.zeros_like(logits).reshape(2, -1)
        seed[np.arange(2), logits.reshape(2, -1).argmax(1)] = logits.reshape(2, -1).max(1)
        expected = jacobian_reference(model, x, seed, eps)
    result = LRP(model, rules.Epsilon(eps), canonizers=[]).analyze(x)
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
    step = _graph.Plan(model).steps[0]
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
        expected = [x * relevance / stab(z, eps) for x in xs]
    else:
        x = xs[0]
        expected = np.zeros_like(x, dtype=np.float64)
        if kind == "average_pooling":
            for oh in range(2):
                for ow in range(2):
                    window = x[:, 2 * oh : 2 * oh + 2, 2 * ow : 2 * ow + 2, :] / 4
                    z = window.sum(axis=(1, 2))
                    share = relevance[:, oh, ow, :] / stab(z, eps)
                    expected[:, 2 * oh : 2 * oh + 2, 2 * ow : 2 * ow + 2, :] = (
                        window * share[:, None, None, :]
                    )
        else:
            z = x.mean(axis=(1, 2))
            expected = x / 16 * (relevance / stab(z, eps))[:, None, None, :]
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
    step = _graph.Plan(model).steps[0]
    rng = np.random.default_rng(10)
    x = rng.uniform(-1, 1, size=(3, 5, 5, 2)).astype("float32")
    shape = (3, 5, 5, 2) if per_sample else (5, 5, 2)
    low = rng.uniform(-2, -1, size=shape).astype("float32")
    high = rng.uniform(1, 2, size=shape).astype("float32")
    relevance = rng.normal(size=(3, 5, 5, 3)).astype("float32")
    _, result = run_rule(rules.ZBox(low, high), step, x, relevance, compiled=True)
    flat = np.broadcast_to(low, x.shape).reshape(3, -1, 1), np.broadcast_to(high, x.shape)
    expected = reference(
        rules.ZBox(),
        x.reshape(3, -1),
        matrix,
        bias,
        relevance.reshape(3, -1),
        connected,
        low=flat[0],
        high=flat[1].reshape(3, -1, 1),
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
    head_step = [step for step in analyzer.plan.steps if step.op.kind == "linear"][-1]
    assert not head_step.nonnegative

    x = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
    hidden, head = model.get_layer("hidden"), model.get_layer("head")
    w1, b1 = (v.numpy().astype(np.float64) for v in hidden.weights)
    w2, b2 = (v.numpy().astype(np.float64) for v in head.weights)
    activations = np.maximum(x @ w1 + b1, 0)
    shifted = activations - 2.0
    logits = shifted @ w2 + b2
    relevance = np.eye(3)[logits.argmax(1)] * logits
    relevance = reference(rule, shifted, w2, b2, relevance, None)
    relevance = activations * safe_div(relevance, shifted, rule.epsilon)  # x + c: proportional
    relevance = reference(rule, x, w1, b1, relevance, None)
    np.testing.assert_allclose(analyzer.analyze(x), relevance, rtol=1e-4, atol=1e-5)
