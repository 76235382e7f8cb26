"""Relevance analyzers: conservation, BatchNorm folding, composites, coverage, errors."""

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx
from keras_explain import canonizers, composites, rules

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


def test_batchnorm_fold_equals_linear_then_batchnorm():
    keras.utils.set_random_seed(0)
    cases = {
        "dense": [keras.Input((5,)), layers.Dense(4)],
        "conv": [keras.Input((6, 6, 2)), layers.Conv2D(3, 3)],
        "conv_no_bias": [keras.Input((6, 6, 2)), layers.Conv2D(3, 3, use_bias=False)],
        "depthwise": [keras.Input((6, 6, 2)), layers.DepthwiseConv2D(3, depth_multiplier=2)],
        "separable": [keras.Input((6, 6, 2)), layers.SeparableConv2D(3, 3)],
        "transpose": [keras.Input((3, 3, 2)), layers.Conv2DTranspose(3, 3, strides=2)],
        "conv1d": [keras.Input((6, 2)), layers.Conv1D(3, 2)],
    }
    for name, head in cases.items():
        model = helpers.randomize(
            keras.Sequential([*head, layers.BatchNormalization(), layers.ReLU()])
        )
        x = helpers.data(model.input_shape[1:], seed=4)
        bn_output = keras.Model(model.inputs[0], model.layers[-2].output)(x).numpy()
        analyzer = kx.LRPZ(model)
        steps = helpers.analyzer_steps(analyzer)
        merged = [s for s in steps if s.op.kind == "linear" and "+" in s.op.name]
        assert len(merged) == 1, name
        assert all(not isinstance(s.op.layer, layers.BatchNormalization) for s in steps)
        assert analyzer.rule_of(model.layers[1]) == []  # the BatchNormalization has no op left
        folded = helpers.step_output(analyzer, x, merged[0])
        np.testing.assert_allclose(folded, bn_output, rtol=1e-5, atol=1e-5, err_msg=name)


def test_batchnorm_elsewhere_is_a_linear_layer_under_the_rule():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    h = layers.Dense(5, activation="relu", name="dense")(inputs)  # BN not right after linear
    h = layers.BatchNormalization(name="bn_after_relu")(h)
    shared = layers.Dense(4, name="shared_output")(h)
    a = layers.BatchNormalization(name="bn_on_shared")(shared)  # Dense output read twice
    outputs = layers.Dense(2, name="head")(layers.Concatenate()([a, shared]))
    model = helpers.randomize(keras.Model(inputs, outputs))
    analyzer = kx.LRPEpsilon(model, epsilon=0.01)
    kinds = {s.op.name: s.op.kind for s in helpers.analyzer_steps(analyzer)}
    assert kinds["bn_after_relu"] == "linear" and kinds["bn_on_shared"] == "linear"
    assert analyzer.rule_of("bn_after_relu") == analyzer.rule_of("shared_output")
    # value: each BatchNormalization is the diagonal map x k + s under LRP-ε
    x = helpers.data((6,))
    rule = helpers.Ref("epsilon", epsilon=0.01)

    def eps(a, kernel, bias, relevance):
        return helpers.rule_reference(rule, a, kernel, bias, relevance, None)

    w1, b1 = model.get_layer("dense").get_weights()
    k1, s1 = helpers.batch_norm_scale_shift(model.get_layer("bn_after_relu"))
    w2, b2 = model.get_layer("shared_output").get_weights()
    k2, s2 = helpers.batch_norm_scale_shift(model.get_layer("bn_on_shared"))
    w3, b3 = model.get_layer("head").get_weights()
    a1 = np.maximum(x @ w1 + b1, 0)
    a2 = a1 * k1 + s1
    a3 = a2 @ w2 + b2
    a4 = a3 * k2 + s2
    logits = np.concatenate([a4, a3], 1) @ w3 + b3
    np.testing.assert_allclose(logits, model(x).numpy(), rtol=1e-5, atol=1e-6)
    relevance = np.eye(2)[logits.argmax(1)] * logits
    r5 = eps(np.concatenate([a4, a3], 1), w3, b3, relevance)
    r3 = r5[:, 4:] + eps(a3, np.diag(k2), s2, r5[:, :4])
    r1 = eps(a2, w2, b2, r3)
    expected = eps(x, w1, b1, eps(a1, np.diag(k1), s1, r1))
    np.testing.assert_allclose(analyzer.analyze(x), expected, rtol=1e-4, atol=1e-6)


def test_presets_put_the_right_rule_on_the_right_layer():
    model = helpers.randomize(
        keras.Sequential(
            [
                keras.Input((8, 8, 2)),
                layers.Conv2D(4, 3, activation="relu", name="first"),
                layers.Conv2D(4, 3, activation="relu", name="conv"),
                layers.BatchNormalization(name="bn"),  # after a ReLU: not folded
                layers.Flatten(),
                layers.Dense(5, activation="relu", name="dense"),
                layers.Dense(3, name="last"),
            ]
        )
    )

    def rule_names(analyzer):
        return {
            name: repr(analyzer.rule_of(name)[0])
            for name in ("first", "conv", "bn", "dense", "last")
        }

    eps01 = "Epsilon(epsilon=0.1)"
    ab10 = "AlphaBeta(alpha=1, beta=0, bias=True, epsilon=1e-07)"
    ab21 = "AlphaBeta(alpha=2, beta=1, bias=True, epsilon=1e-07)"
    assert rule_names(kx.LRPSequentialPresetA(model)) == {
        "first": ab10,
        "conv": ab10,
        "bn": eps01,
        "dense": eps01,
        "last": eps01,
    }
    assert rule_names(kx.LRPSequentialPresetBFlat(model)) == {
        "first": "Flat(epsilon=1e-07)",
        "conv": ab21,
        "bn": eps01,
        "dense": eps01,
        "last": eps01,
    }
    assert rule_names(kx.create_analyzer("lrp.epsilon_gamma_box", model, low=-1.0, high=2.0)) == {
        "first": "ZBox(low=-1.0, high=2.0, epsilon=1e-07)",
        "conv": "Gamma(gamma=0.25, epsilon=1e-07)",
        "bn": "Epsilon(epsilon=1e-07)",
        "dense": "Epsilon(epsilon=1e-07)",
        "last": "Epsilon(epsilon=1e-07)",
    }
    bounded = rule_names(kx.create_analyzer("deep_taylor.bounded", model, low=0.0, high=1.0))
    assert bounded["first"] == "ZBox(low=0.0, high=1.0, epsilon=1e-07)"
    assert {bounded[k] for k in ("conv", "bn", "dense", "last")} == {"ZPlus(epsilon=1e-07)"}
    uniform = rule_names(kx.LRPEpsilon(model, epsilon=0.5))
    assert set(uniform.values()) == {"Epsilon(epsilon=0.5)"}
    # fused activations pass, reshapes follow the gradient
    analyzer = kx.LRPEpsilon(model)
    assert [repr(rule) for rule in analyzer.rule_of("first")] == [
        "Epsilon(epsilon=1e-07)",
        "Pass()",
    ]
    assert [repr(rule) for rule in analyzer.rule_of(model.layers[3])] == ["Gradient()"]


def test_user_composite_first_match_wins_and_layer_classes():
    model = helpers.conv_sequential()
    composite = composites.Composite(
        [
            (layers.Dense, rules.Z()),
            ("linear", rules.Epsilon(0.3)),
            ("conv", rules.Flat()),  # never reached: "linear" matched first
        ],
        first=rules.WSquare(),
    )
    analyzer = kx.LRP(model, composite)
    assert [repr(analyzer.rule_of(layer)[0]) for layer in model.layers if layer.weights] == [
        "WSquare(epsilon=1e-07)",
        "Epsilon(epsilon=0.3)",
        "Z()",
    ]
    # a class entry matches the Dense's linear op, not its fused activation
    assert len(analyzer.rule_of(model.layers[-1])) == 1
    assert analyzer.analyze(helpers.data((8, 8, 2))).shape == (4, 8, 8, 2)
    with pytest.raises(ValueError, match="Unknown composite.*'nope'"):
        kx.LRP(model, "nope")
    with pytest.raises(TypeError, match="layer_kind, rule"):
        composites.Composite([("conv", "epsilon")])


class Scale(layers.Layer):
    def call(self, x):
        return x * 2.0


def test_unsupported_layer_error_at_construction():
    inputs = keras.Input((4,))
    h = Scale(name="scale")(layers.Dense(3)(inputs))
    model = keras.Model(inputs, layers.Dense(2)(h))
    with pytest.raises(
        ValueError,
        match=(
            r"LRPEpsilon: layer 'scale' of class Scale has no LRP rule \(op kind 'other'\)\. "
            r"Supported: Dense, .*Embedding.* To proceed, add a composite entry for it, e\.g\. "
            r".*\(\[\(Scale, kx\.rules\.Gradient\(\)\), \.\.\.\]\).*gradient-based analyzer"
        ),
    ):
        kx.LRPEpsilon(model)
    # a composite entry for the layer lets the analysis go on
    composite = composites.Composite([(Scale, rules.Gradient()), ("linear", rules.Epsilon())])
    assert kx.LRP(model, composite).analyze(helpers.data((4,))).shape == (4, 4)

    inputs = keras.Input((4,))
    h = layers.Dense(3, activation="softmax", name="middle")(inputs)
    model = keras.Model(inputs, layers.Dense(2)(h))
    with pytest.raises(
        ValueError,
        match=r"'middle/activation' of class Dense is a softmax in "
        r"the middle of the network",
    ):
        kx.create_analyzer("lrp.z", model)
    # a final softmax is stripped instead
    assert kx.LRPZ(helpers.dense_sequential()).analyze(helpers.data((6,))).shape == (4, 6)


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


def test_canonizer_can_be_disabled_and_kx_exports():
    model = helpers.residual_model()
    assert any("+" in s.op.name for s in helpers.analyzer_steps(kx.LRPZ(model)))
    unfolded = kx.LRPZ(model, canonizers=[])
    assert not any("+" in s.op.name for s in helpers.analyzer_steps(unfolded))
    assert [repr(rule) for rule in unfolded.rule_of("branch_bn")] == ["Z()"]
    assert repr(canonizers.BatchNormFold()) == "BatchNormFold()"
    assert "deep_taylor_bounded" in composites.names()
    # a preset name resolves to the preset composite (its values: test_relevance_values.py)
    by_name = kx.LRP(model, "deep_taylor")
    assert repr(by_name.composite) == (
        "Composite([('conv', ZPlus(epsilon=1e-07)), ('linear', ZPlus(epsilon=1e-07))], "
        "name='deep_taylor')"
    )
    analyzer = kx.create_analyzer("lrp.epsilon", model, epsilon=1e-3)
    assert repr(analyzer.composite) == (
        "Uniform([('linear', Epsilon(epsilon=0.001))], name='epsilon')"
    )
    # the registry name is LRP with a preset, and says so
    assert type(analyzer) is kx.LRP and analyzer.name == "lrp.epsilon"
    assert kx.LRP(model).name == "lrp" and kx.LRPEpsilon(model).name == "lrp.epsilon"


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
