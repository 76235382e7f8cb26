"""Relevance analyzers: conservation, coverage, errors, and every registry name by value.

Every relevance registry name is checked by value against a layer-by-layer numpy LRP.
The network (:func:`helpers.lrp_net`) has a Conv2D with bias and a BatchNormalization
right after it (folded), max pooling, a ReLU, two branches (a fused-ReLU Conv2D followed
by a BatchNormalization that is a linear layer under the rule, and a 1x1 Conv2D) joined
by ``Add``, average pooling, Flatten, Dense(ReLU) and Dense. The expected relevance is
:func:`helpers.lrp_net_reference`: the network unrolled into explicit matrices, each
rule's formula written in numpy (float64), composed layer by layer. It never calls
keras_explain.

For each registry name the table below writes, by hand, the rule every linear layer
must get, as the literal repr ``rule_of`` returns; the reference rule is built from
that literal text (:func:`helpers.ref_from_repr`), so the table pins both the rule
assignment and the values. Every name is checked at its default parameters and, where
it has any, with non-default parameters passed through (``epsilon=``, ``gamma=``,
``low``/``high``, α from β); a non-default case must change the expected value, so a
parameter that is silently dropped fails the test.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain import composites, rules

layers = keras.layers


CONSERVING = ["lrp.z", "lrp.epsilon", "lrp.z_plus", "lrp.alpha_1_beta_0"]


def selected_logit(model, x):
    logits = model(x).numpy() if not isinstance(model.output, list) else model(x)[0].numpy()
    return logits.max(axis=1)


@pytest.fixture(scope="module")
def residual():
    return helpers.bias_free(helpers.residual_model())


@pytest.mark.parametrize("name", CONSERVING)
def test_conservation_through_add_pooling_concat_and_folded_batchnorm(residual, name):
    x = helpers.data((8, 8, 2), seed=1)
    analyzer = kx.create_analyzer(
        name, residual, **({"epsilon": 1e-9} if name == "lrp.epsilon" else {})
    )
    total = analyzer.analyze(x).sum(axis=(1, 2, 3))
    logit = selected_logit(residual, x)
    error = np.max(np.abs(total / logit - 1))
    print(f"conservation {name}: max relative error {error:.2e}")
    assert error < 1e-5


def test_relevance_at_every_layer_is_conserved(residual):
    x = helpers.data((8, 8, 2), seed=2)
    relevances = kx.LRPZ(residual).analyze_layers(x)
    logit = selected_logit(residual, x)
    assert {
        "input",
        "stem",
        "add",
        "max_pool",
        "avg_pool",
        "concat",
        "conv3",
        "hidden",
        "logits",
    } <= set(relevances)
    assert "branch_conv" not in relevances  # folded into branch_bn
    for name in ("input", "stem", "add", "concat", "conv3", "hidden", "logits"):
        total = relevances[name].reshape(len(x), -1).sum(axis=1)
        np.testing.assert_allclose(total, logit, rtol=1e-5, err_msg=name)
    # the relevance at the input is what analyze returns
    np.testing.assert_allclose(relevances["input"], kx.LRPZ(residual).analyze(x), rtol=1e-6)


def test_at_layer_returns_conserved_layer_relevance(residual):
    x = helpers.data((8, 8, 2), seed=3)
    result = kx.LRPZ(residual, layer="concat").analyze(x)
    assert result.shape == (4, 4, 4, 8)
    np.testing.assert_allclose(result.sum(axis=(1, 2, 3)), selected_logit(residual, x), rtol=1e-5)
    # an at_layer Conv followed by BatchNorm is not folded away
    result = kx.LRPZ(residual, layer="branch_conv").analyze(x)
    assert result.shape == (4, 8, 8, 4)


def test_multi_input_and_nested_models_conserve():
    model = helpers.bias_free(helpers.multi_input())
    x = [helpers.data((6,)), helpers.data((4,), seed=1)]
    result = kx.LRPEpsilon(model, epsilon=1e-9).analyze(x)
    assert [r.shape for r in result] == [(4, 6), (4, 4)]
    total = result[0].sum(axis=1) + result[1].sum(axis=1)
    np.testing.assert_allclose(total, model(x)[0].numpy().max(axis=1), rtol=1e-5)
    result_b = kx.LRPZ(model, output_index=1).analyze(x, target=1)
    np.testing.assert_allclose(
        result_b[0].sum(1) + result_b[1].sum(1), model(x)[1].numpy()[:, 1], rtol=1e-5
    )

    nested = helpers.bias_free(helpers.nested())
    x = helpers.data((6,))
    result = kx.LRPZ(nested).analyze(x, target=2)
    # the explained value is the pre-softmax logit of class 2
    hidden = nested.layers[1](x)
    logit = (np.maximum(hidden.numpy(), 0) @ nested.layers[-1].kernel.numpy())[:, 2]
    np.testing.assert_allclose(result.sum(axis=1), logit, rtol=1e-5)


class Scale(layers.Layer):
    """A layer the table does not know, whose call cannot be opened (a TensorFlow op)."""

    def call(self, x):
        return tf.math.scalar_mul(2.0, x)


def test_unsupported_layer_error_at_construction():
    inputs = keras.Input((4,))
    h = Scale(name="scale")(layers.Dense(3)(inputs))
    model = keras.Model(inputs, layers.Dense(2)(h))
    with pytest.raises(
        ValueError,
        match=(
            r"LRPEpsilon: layer 'scale' of class Scale has no LRP rule in this configuration: its "
            r"call could not run on symbolic tensors to be opened into keras\.ops operations "
            r"\(ValueError: A KerasTensor cannot be used as input to a TensorFlow function.*\)\. "
            r"kx\.graph\.Plan\(model\)\.describe\(\) shows what every step of the model is\. "
            r"Supported: Dense, .*Embedding.* To proceed, add a composite entry for it, e\.g\. "
            r".*\(\[\(Scale, kx\.rules\.Gradient\(\)\), \.\.\.\]\).*gradient-based analyzer"
        ),
    ):
        kx.LRPEpsilon(model)
    # a composite entry for the layer lets the analysis go on
    composite = composites.Composite([(Scale, rules.Gradient()), ("linear", rules.Epsilon())])
    assert kx.LRP(model, composite).analyze(helpers.data((4,))).shape == (4, 4)

    # a final softmax is stripped; kept, it is an error (LRP explains the logits)
    assert kx.LRPZ(helpers.dense_sequential()).analyze(helpers.data((6,))).shape == (4, 6)
    with pytest.raises(ValueError, match=r"the explained output comes out of the softmax"):
        kx.LRPZ(helpers.dense_sequential(), strip_softmax=False)


def test_a_softmax_in_the_middle_gets_the_attn_lrp_softmax_rule():
    """``R_z = z (R_s - s sum(R_s))`` (Achtibat et al. 2024, Prop. 3.1), by hand in numpy."""
    helpers.seeded(0)
    inputs = keras.Input((4,))
    h = layers.Dense(3, activation="softmax", name="middle")(inputs)
    model = helpers.randomize(keras.Model(inputs, layers.Dense(2, name="top")(h)), 0)
    x = helpers.data((4,))
    w1, b1 = (v.numpy() for v in model.get_layer("middle").weights)
    w2, b2 = (v.numpy() for v in model.get_layer("top").weights)
    z = x @ w1 + b1
    s = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    logit = s @ w2[:, 1] + b2[1]
    r_s = s * w2[:, 1] / logit[:, None] * logit[:, None]  # LRP-0 at the top layer
    r_z = z * (r_s - s * r_s.sum(1, keepdims=True))
    expected = x[:, :, None] * w1[None] / z[:, None, :] * r_z[:, None, :]
    np.testing.assert_allclose(
        kx.create_analyzer("lrp.z", model).analyze(x, target=1),
        expected.sum(2),
        rtol=1e-4,
        atol=1e-6,
    )


def test_subclassed_model_gets_a_clear_error():
    with pytest.raises(TypeError, match="subclassed model with no layer graph"):
        kx.LRPZ(helpers.subclassed())


def test_model_weights_bit_identical_after_analysis():
    model = helpers.residual_model(seed=3)
    before = [w.numpy().copy() for w in model.weights]
    x = helpers.data((8, 8, 2))
    for name in ("lrp.epsilon", "lrp.alpha_2_beta_1", "lrp.epsilon_gamma_box", "deep_taylor"):
        kx.create_analyzer(name, model).analyze(x)
    kx.LRPZ(model).analyze_layers(x)
    after = [w.numpy() for w in model.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert any(isinstance(layer, layers.BatchNormalization) for layer in model.layers)


def test_analyzer_follows_the_current_weights():
    model = helpers.bias_free(helpers.dense_sequential(softmax=False))
    analyzer = kx.LRPZ(model)
    x = helpers.data((6,))
    first = analyzer.analyze(x, target=0)
    model.layers[-1].kernel.assign(model.layers[-1].kernel * 2.0)
    np.testing.assert_allclose(analyzer.analyze(x, target=0), 2 * first, rtol=1e-5)


def test_embedding_relevance_per_token():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,), dtype="int32")
    h = layers.Embedding(10, 4)(inputs)
    h = layers.Conv1D(3, 2, activation="relu", use_bias=False)(h)
    h = layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inputs, layers.Dense(2, use_bias=False)(h))
    tokens = np.random.default_rng(0).integers(0, 10, (3, 5)).astype("int32")
    result = kx.LRPZ(model).analyze(tokens)
    assert result.shape == (3, 5)
    np.testing.assert_allclose(
        result.sum(axis=1), model(tokens).numpy().max(axis=1), rtol=1e-5, atol=1e-6
    )


def layer_zoo():
    """Every supported layer kind in one bias-free net (1D, 2D and 3D branches)."""
    keras.utils.set_random_seed(5)
    seq = keras.Input((10, 3), name="seq")
    h = layers.Conv1D(4, 3, use_bias=False)(seq)
    h = layers.LeakyReLU(0.1)(h)
    h = layers.ZeroPadding1D(1)(h)
    h = layers.MaxPooling1D(2)(h)
    h = layers.Cropping1D((0, 1))(h)
    h = layers.AveragePooling1D(2)(h)
    h = layers.UpSampling1D(2)(h)
    h = layers.Permute((2, 1))(h)
    h = layers.Reshape((-1,))(h)
    h = layers.Dropout(0.5)(h)
    a = layers.Dense(6, activation="elu", use_bias=False)(h)

    img = keras.Input((8, 8, 2), name="img")
    g = layers.ZeroPadding2D(1)(img)
    g = layers.DepthwiseConv2D(3, use_bias=False)(g)
    g = layers.BatchNormalization()(g)  # folded into the depthwise conv
    g = layers.Activation("tanh")(g)
    g = layers.SeparableConv2D(4, 3, use_bias=False, activation="relu")(g)
    g = layers.Cropping2D(1)(g)
    g = layers.Conv2DTranspose(3, 2, strides=2, use_bias=False)(g)
    g = keras.ops.relu(g)
    b = layers.GlobalMaxPooling2D()(g)

    vol = keras.Input((4, 4, 4, 1), name="vol")
    v = layers.Conv3D(2, 2, use_bias=False, activation="relu")(vol)
    v = layers.MaxPooling3D(1)(v)
    v = layers.AveragePooling3D(1)(v)
    c = layers.GlobalAveragePooling3D()(v)

    h = layers.Concatenate()([a, b, c])
    h = layers.Dense(5, use_bias=False)(h)
    h = layers.Activation("relu")(h)
    outputs = layers.Dense(3, use_bias=False)(h)
    model = keras.Model([seq, img, vol], outputs, name="zoo")
    return helpers.bias_free(helpers.randomize(model))


def test_every_supported_layer_kind_conserves():
    model = layer_zoo()
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(3, *shape[1:])).astype("float32") for shape in model.input_shape]
    assert "other" not in {step.op.kind for step in helpers.analyzer_steps(kx.LRPZ(model))}
    logit = model(x).numpy().max(axis=1)
    for analyzer in (kx.LRPZ(model), kx.LRPEpsilon(model, epsilon=1e-9)):
        result = analyzer.analyze(x)
        total = sum(r.reshape(3, -1).sum(axis=1) for r in result)
        error = np.max(np.abs(total / logit - 1))
        print(f"conservation layer zoo {type(analyzer).__name__}: max relative error {error:.2e}")
        assert error < 1e-5


@pytest.mark.parametrize(
    "factory", [helpers.shared_layer, helpers.raw_ops, helpers.functional_relu_forms]
)
def test_shared_layers_and_raw_ops_conserve(factory):
    model = helpers.bias_free(factory())
    x = helpers.data((6,))
    result = kx.LRPZ(model).analyze(x)
    np.testing.assert_allclose(result.sum(axis=1), model(x).numpy().max(axis=1), rtol=1e-5)


@pytest.mark.parametrize("form", helpers.SIGMOID_FORMS)
def test_binary_model_conserves_its_logit(form):
    model, logits_model = helpers.binary_classifier(form)
    helpers.bias_free(model)
    helpers.bias_free(logits_model)
    x = helpers.data((6,))
    result = kx.LRPZ(model).analyze(x, target=0)
    # bias-free ReLU net: relevance sums to the logit, not to the probability
    np.testing.assert_allclose(result.sum(axis=1), logits_model(x).numpy()[:, 0], rtol=1e-5)


def test_softmax_output_kept_is_an_error():
    with pytest.raises(ValueError, match="comes out of the softmax.*keep strip_softmax=True"):
        kx.LRPEpsilon(helpers.dense_sequential(), strip_softmax=False)


def test_analyze_layers_on_multi_input_model():
    model = helpers.bias_free(helpers.multi_input())
    x = [helpers.data((6,)), helpers.data((4,), seed=1)]
    relevances = kx.LRPZ(model).analyze_layers(x)
    concat = next(layer.name for layer in model.layers if isinstance(layer, layers.Concatenate))
    assert {"input_0", "input_1", concat, "out_a"} <= set(relevances)
    assert "out_b" not in relevances  # output 0 does not depend on it
    logit = model(x)[0].numpy().max(axis=1)
    total = relevances["input_0"].sum(1) + relevances["input_1"].sum(1)
    np.testing.assert_allclose(total, logit, rtol=1e-5)
    np.testing.assert_allclose(relevances[concat].sum(1), logit, rtol=1e-5)


@pytest.mark.parametrize("combine", ["subtract", "negative"])
def test_a_difference_of_relus_is_not_marked_nonnegative(combine):
    """α-β keeps the x⁻ terms after Subtract / a raw negation of ReLU outputs (regression)."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((5,))
    a = layers.Dense(6, activation="relu")(inputs)
    b = layers.Dense(6, activation="relu")(inputs)
    h = layers.Subtract()([a, b]) if combine == "subtract" else keras.ops.negative(a)
    head = layers.Dense(3, name="head")
    model = helpers.randomize(keras.Model(inputs, head(h)))
    x = helpers.data((5,), seed=12)
    rule = "AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)"
    analyzer = kx.LRPAlpha2Beta1(model)
    (step,) = [s for s in helpers.analyzer_steps(analyzer) if s.op.name == "head"]
    assert not step.nonnegative
    hidden = keras.Model(inputs, h)(x).numpy()
    assert hidden.min() < 0  # the head really reads negative values
    logits = model(x).numpy()
    seed = np.zeros_like(logits)
    rows = np.arange(len(x))
    seed[rows, logits.argmax(1)] = logits.max(1)
    kernel, bias = (w.numpy() for w in head.weights)
    expected = helpers.rule_reference(
        helpers.ref_from_repr(rule), hidden, kernel, bias, seed, np.ones_like(kernel, bool)
    )
    name = h._keras_history.operation.name
    result = analyzer.analyze_layers(x)[name]
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)


RELEVANCE_NAMES = sorted(n for n in kx.analyzers.names() if n.startswith(("lrp", "deep_taylor")))


Z = "Z()"


EPS7 = "Epsilon(epsilon=1e-07)"


EPS01 = "Epsilon(epsilon=0.1)"


EPS05 = "Epsilon(epsilon=0.5)"


AB10 = "AlphaBeta(alpha=1, beta=0, bias=True, epsilon=1e-07)"


AB21 = "AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)"


ZPLUS = "ZPlus(epsilon=1e-07)"


FLAT = "Flat(epsilon=1e-07)"


GAMMA = "Gamma(gamma=0.25, epsilon=1e-07)"


BOX01 = "ZBox(low=0.0, high=1.0, epsilon=1e-07)"


BOX11 = "ZBox(low=-1.0, high=1.0, epsilon=1e-07)"


WSQUARE = "WSquare(epsilon=1e-07)"


def layout(first, conv, dense, batch_norm=None):
    """Expected rule repr of each linear layer of lrp_net.

    ``first`` is conv1 (the only first linear layer; bn_fold is folded into it),
    ``conv`` conv2 and conv3, ``dense`` dense1, logits and (unless given) bn_linear,
    a BatchNormalization that is not folded: "other linear ops" in the presets.
    """
    return {
        "conv1": first,
        "conv2": conv,
        "conv3": conv,
        "bn_linear": dense if batch_norm is None else batch_norm,
        "dense1": dense,
        "logits": dense,
    }


def uniform(rule):
    return layout(rule, rule, rule)


USER_COMPOSITE = composites.Composite(
    [
        ("conv", rules.Gamma(0.6)),
        ("dense", rules.Epsilon(0.2)),
        ("batch_norm", rules.AlphaBeta(2, 1)),
    ],
    first=rules.WSquare(),
)


# (name, keyword arguments, expected rule per linear layer). Defaults first.
DEFAULTS = [
    ("lrp", {}, uniform(EPS7)),
    ("lrp.z", {}, uniform(Z)),
    ("lrp.epsilon", {}, uniform(EPS7)),
    ("lrp.w_square", {}, uniform(WSQUARE)),
    ("lrp.flat", {}, uniform(FLAT)),
    ("lrp.gamma", {}, uniform(GAMMA)),
    ("lrp.alpha_beta", {}, uniform("AlphaBeta(alpha=1.0, beta=0.0, bias=True, epsilon=1e-07)")),
    ("lrp.alpha_2_beta_1", {}, uniform(AB21)),
    ("lrp.alpha_2_beta_1_IB", {}, uniform("AlphaBeta(alpha=2, beta=1, bias=False, epsilon=1e-07)")),
    ("lrp.alpha_1_beta_0", {}, uniform(AB10)),
    ("lrp.alpha_1_beta_0_IB", {}, uniform("AlphaBeta(alpha=1, beta=0, bias=False, epsilon=1e-07)")),
    ("lrp.z_plus", {}, uniform(ZPLUS)),
    ("lrp.z_plus_fast", {}, uniform("ZPlusFast(epsilon=1e-07)")),
    ("lrp.sequential_preset_a", {}, layout(AB10, AB10, EPS01)),
    ("lrp.sequential_preset_b", {}, layout(AB21, AB21, EPS01)),
    ("lrp.sequential_preset_a_flat", {}, layout(FLAT, AB10, EPS01)),
    ("lrp.sequential_preset_b_flat", {}, layout(FLAT, AB21, EPS01)),
    ("lrp.epsilon_plus", {}, layout(AB10, AB10, EPS7)),
    ("lrp.epsilon_plus_flat", {}, layout(FLAT, AB10, EPS7)),
    ("lrp.epsilon_alpha_2_beta_1", {}, layout(AB21, AB21, EPS7)),
    ("lrp.epsilon_gamma_box", {}, layout(BOX01, GAMMA, EPS7)),
    ("deep_taylor", {}, uniform(ZPLUS)),
    ("deep_taylor.bounded", {}, layout(BOX01, ZPLUS, ZPLUS)),
    ("lrp.attn", {}, uniform("Epsilon(epsilon=1e-09)")),
]


PASSED_THROUGH = [
    (
        "lrp",
        {"composite": USER_COMPOSITE},
        layout(WSQUARE, "Gamma(gamma=0.6, epsilon=1e-07)", "Epsilon(epsilon=0.2)", AB21),
    ),
    ("lrp", {"composite": "deep_taylor"}, uniform(ZPLUS)),
    ("lrp.epsilon", {"epsilon": 0.5}, uniform(EPS05)),
    ("lrp.gamma", {"gamma": 0.7, "epsilon": 0.1}, uniform("Gamma(gamma=0.7, epsilon=0.1)")),
    (
        "lrp.alpha_beta",
        {"alpha": 3},
        uniform("AlphaBeta(alpha=3, beta=2, bias=True, epsilon=1e-07)"),
    ),
    ("lrp.alpha_beta", {"beta": 1}, uniform(AB21)),  # alpha = beta + 1
    (
        "lrp.alpha_beta",
        {"alpha": 2, "beta": 1, "bias": False, "epsilon": 0.1},
        uniform("AlphaBeta(alpha=2, beta=1, bias=False, epsilon=0.1)"),
    ),
    (
        "lrp.alpha_2_beta_1",
        {"bias": False, "epsilon": 0.1},
        uniform("AlphaBeta(alpha=2, beta=1, bias=False, epsilon=0.1)"),
    ),
    (
        "lrp.alpha_2_beta_1_IB",
        {"epsilon": 0.1},
        uniform("AlphaBeta(alpha=2, beta=1, bias=False, epsilon=0.1)"),
    ),
    (
        "lrp.alpha_1_beta_0",
        {"bias": False, "epsilon": 0.1},
        uniform("AlphaBeta(alpha=1, beta=0, bias=False, epsilon=0.1)"),
    ),
    (
        "lrp.alpha_1_beta_0_IB",
        {"epsilon": 0.1},
        uniform("AlphaBeta(alpha=1, beta=0, bias=False, epsilon=0.1)"),
    ),
    ("lrp.z_plus", {"epsilon": 0.1}, uniform("ZPlus(epsilon=0.1)")),
    ("lrp.z_plus_fast", {"epsilon": 0.1}, uniform("ZPlusFast(epsilon=0.1)")),
    ("lrp.sequential_preset_a", {"epsilon": 0.5}, layout(AB10, AB10, EPS05)),
    ("lrp.sequential_preset_b", {"epsilon": 0.5}, layout(AB21, AB21, EPS05)),
    ("lrp.sequential_preset_a_flat", {"epsilon": 0.5}, layout(FLAT, AB10, EPS05)),
    ("lrp.sequential_preset_b_flat", {"epsilon": 0.5}, layout(FLAT, AB21, EPS05)),
    ("lrp.epsilon_plus", {"epsilon": 0.5}, layout(AB10, AB10, EPS05)),
    ("lrp.epsilon_plus_flat", {"epsilon": 0.5}, layout(FLAT, AB10, EPS05)),
    ("lrp.epsilon_alpha_2_beta_1", {"epsilon": 0.5}, layout(AB21, AB21, EPS05)),
    (
        "lrp.epsilon_gamma_box",
        {"low": -1.0, "high": 1.0, "gamma": 0.6, "epsilon": 0.5},
        layout(BOX11, "Gamma(gamma=0.6, epsilon=1e-07)", EPS05),
    ),
    ("deep_taylor.bounded", {"low": -1.0, "high": 1.0}, layout(BOX11, ZPLUS, ZPLUS)),
    ("lrp.attn", {"epsilon": 0.5}, uniform(EPS05)),
]


WITHOUT_PARAMETERS = ["lrp.z", "lrp.w_square", "lrp.flat", "deep_taylor"]


CASES = [(*case, "default") for case in DEFAULTS] + [(*case, "passed") for case in PASSED_THROUGH]


TARGET = np.array([0, 1, 2, 1])


DEFAULTS_BY_NAME = {name: expected for name, _, expected in DEFAULTS}


def case_id(case):
    name, kwargs, _, _ = case
    return name + ("" if not kwargs else "[" + ",".join(sorted(kwargs)) + "]")


@pytest.fixture(scope="module")
def net():
    return helpers.lrp_net()


def inputs(kind):
    """Defaults run on [0, 1] inputs (the default ZBox bounds hold); passed-through
    parameters on signed inputs in [-1, 1] (the first layer's x⁻ terms run)."""
    low = 0.0 if kind == "default" else -1.0
    return np.random.default_rng(1).uniform(low, 1.0, (4, 8, 8, 2)).astype("float32")


def reference(model, x, expected_layout):
    """The numpy relevance and logits, checked to be insensitive to round-off.

    float32 arithmetic perturbs every sum by about 1e-7 of its terms' magnitude; where
    a denominator nearly cancels, that is amplified. The fixture must be robust: a
    relative perturbation of the input ten times larger than float32 round-off (1e-6)
    may move the reference by at most 1e-5 of its scale, a tenth of the 1e-4
    tolerance. A wrong formula (a dropped bias part, a wrong parameter) moves the
    result by far more.
    """
    rules_by_layer = {name: helpers.ref_from_repr(text) for name, text in expected_layout.items()}
    relevance, logits = helpers.lrp_net_reference(model, x, TARGET, rules_by_layer)
    jitter = 1 + 1e-6 * np.random.default_rng(3).uniform(-1, 1, x.shape)
    moved, _ = helpers.lrp_net_reference(model, x * jitter, TARGET, rules_by_layer)
    sensitivity = np.abs(moved - relevance).max() / np.abs(relevance).max()
    assert sensitivity < 1e-5, f"ill-conditioned fixture: {sensitivity:.1e}"
    return relevance, logits


def test_the_table_covers_every_relevance_name_at_defaults_and_with_its_parameters():
    assert len(RELEVANCE_NAMES) == 24
    assert sorted(name for name, _, _ in DEFAULTS) == RELEVANCE_NAMES
    with_parameters = {name for name, _, _ in PASSED_THROUGH}
    assert with_parameters == set(RELEVANCE_NAMES) - set(WITHOUT_PARAMETERS)


def test_reference_network_is_faithful(net):
    """The numpy forward pass of the reference is the model's own output."""
    for kind in ("default", "passed"):
        x = inputs(kind)
        _, logits = reference(net, x, uniform(EPS7))
        np.testing.assert_allclose(logits, net(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rule_of_every_layer(net, case):
    name, kwargs, expected_layout, _ = case
    analyzer = kx.create_analyzer(name, net, **kwargs)
    fused = ("conv2", "dense1")  # split into a linear op and its ReLU, which passes
    # sums split in proportion, with AttnLRP's guard or the default ε
    proportional = f"Proportional(epsilon={1e-09 if name == 'lrp.attn' else 1e-07})"
    got = {layer.name: [repr(rule) for rule in analyzer.rule_of(layer)] for layer in net.layers[1:]}
    expected = {
        layer: [text] + (["Pass()"] if layer in fused else [])
        for layer, text in expected_layout.items()
    }
    expected.update(
        {
            "bn_fold": [],  # folded into conv1: no op of its own
            "max_pool": ["Gradient()"],
            "relu1": ["Pass()"],
            "add": [proportional],
            "avg_pool": [proportional],
            "flatten": ["Gradient()"],
        }
    )
    assert got == expected


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_relevance_equals_the_numpy_layer_by_layer_reference(net, case):
    name, kwargs, expected_layout, kind = case
    x = inputs(kind)
    expected, _ = reference(net, x, expected_layout)
    result = kx.create_analyzer(name, net, **kwargs).analyze(x, TARGET)
    assert result.dtype == np.float32 and result.shape == x.shape
    scale = np.abs(expected).max()
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * scale)
    if kind == "passed":
        # the parameters matter on this network: dropping them would fail the check above
        defaults = {
            rule: helpers.ref_from_repr(text) for rule, text in DEFAULTS_BY_NAME[name].items()
        }
        at_defaults, _ = helpers.lrp_net_reference(net, x, TARGET, defaults)
        assert np.abs(at_defaults - expected).max() > 100 * 1e-5 * scale


@pytest.mark.parametrize("per_sample", [False, True])
def test_array_bounds_pass_through_the_box_presets(net, per_sample):
    x = inputs("passed")
    rng = np.random.default_rng(2)
    shape = x.shape if per_sample else x.shape[1:]
    low = (-1.0 - rng.uniform(0, 0.5, shape)).astype("float32")
    high = (1.0 + rng.uniform(0, 0.5, shape)).astype("float32")
    box = helpers.Ref("zbox", low=low.reshape(-1, 128), high=high.reshape(-1, 128))
    for name in ("lrp.epsilon_gamma_box", "deep_taylor.bounded"):
        rules_by_layer = {
            layer: helpers.ref_from_repr(text) for layer, text in DEFAULTS_BY_NAME[name].items()
        }
        rules_by_layer["conv1"] = box
        expected, _ = helpers.lrp_net_reference(net, x, TARGET, rules_by_layer)
        result = kx.create_analyzer(name, net, low=low, high=high).analyze(x, TARGET)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("name", WITHOUT_PARAMETERS)
def test_names_without_parameters_reject_them(net, name):
    with pytest.raises(TypeError, match="epsilon"):
        kx.create_analyzer(name, net, epsilon=0.1)
