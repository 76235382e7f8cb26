"""Canonizers: BatchNormalization folded into the linear layer before it, or kept, or disabled."""

import helpers
import keras
import numpy as np

import keras_explain as kx
from keras_explain import canonizers, composites

layers = keras.layers


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


def test_canonizer_can_be_disabled_and_kx_exports():
    model = helpers.residual_model()
    assert any("+" in s.op.name for s in helpers.analyzer_steps(kx.LRPZ(model)))
    unfolded = kx.LRPZ(model, canonizers=[])
    assert not any("+" in s.op.name for s in helpers.analyzer_steps(unfolded))
    assert [repr(rule) for rule in unfolded.rule_of("branch_bn")] == ["Z()"]
    assert repr(canonizers.BatchNormFold()) == "BatchNormFold()"
    assert "deep_taylor_bounded" in composites.names()
    # a preset name resolves to the preset composite (its values: analyzers/test_relevance.py)
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


def test_broadcast_gates_compare_shapes_axis_by_axis():
    gates = kx.lrp.canonizers.broadcast_gates
    # an RMS scale beside x, with a sequence length unknown when the plan is built
    assert gates([(None, None, 16), (None, None, 1)]) == (1,)
    assert gates([(None, 1, 1, 4), (None, 5, 5, 4)]) == (0,)  # a squeeze-and-excitation gate
    assert gates([(None, 3), (None, 3)]) == ()  # SwiGLU's factors: no gate
    assert gates([(None, 3, 1), (None, 1, 2)]) == ()  # an outer product: neither scales
    assert gates([(None, 1, 1), (None, 4, 4)]) == (0,)  # one value per sample
    assert gates([(None, 3), None]) == ()
