"""LRP through the blocks of today's architectures (SPEC 4.5 "Gates in images").

Conservation (bias-free, 1e-5 relative) through a squeeze-and-excitation block,
a ConvNeXt block (depthwise 7x7, LayerNormalization, Dense, GELU, Dense, layer
scale, residual Add) and an EfficientNet MBConv block (expand, BatchNorm, swish,
depthwise, SE, project, residual), with Rescaling and Normalization in front;
the rule each new op gets; the gate and LayerNormalization rules against
hand-written references.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain import rules

layers = keras.layers


class LayerScale(layers.Layer):
    """keras.applications.ConvNeXt's layer scale (a private class there): ``x * gamma``."""

    def __init__(self, init_values, projection_dim, **kwargs):
        super().__init__(**kwargs)
        self.init_values, self.projection_dim = init_values, projection_dim

    def build(self, _):
        self.gamma = self.add_weight(
            shape=(self.projection_dim,),
            initializer=keras.initializers.Constant(self.init_values),
        )

    def call(self, x):
        return x * self.gamma


def bias_free(model):
    """Zero every bias, BatchNorm shift and mean, LayerNorm beta: relevance is then conserved."""
    rng = np.random.default_rng(1)
    for layer in model._flatten_layers():
        for name in ("bias", "beta", "moving_mean"):
            variable = getattr(layer, name, None)
            if isinstance(variable, keras.Variable):
                variable.assign(np.zeros(variable.shape, "float32"))
        if isinstance(layer, layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
            layer.moving_variance.assign(
                rng.uniform(0.5, 2.0, layer.moving_variance.shape).astype("float32")
            )
        if isinstance(layer, layers.LayerNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
        if isinstance(layer, LayerScale):
            layer.gamma.assign(rng.uniform(0.1, 1.0, layer.gamma.shape).astype("float32"))
    return model


def squeeze_excite(h, channels, name):
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(h)
    gate = layers.Conv2D(max(1, channels // 4), 1, activation="swish", name=f"{name}_reduce")(gate)
    gate = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")(gate)
    return layers.Multiply(name=f"{name}_excite")([h, gate])


def preprocessing(inputs):
    h = layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    norm = layers.Normalization(mean=[0.0] * 3, variance=[0.3, 0.5, 0.7], name="normalization")
    return norm(h)


def se_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(preprocessing(inputs))
    h = squeeze_excite(h, 8, "se")
    h = layers.GlobalAveragePooling2D()(h)
    return bias_free(keras.Model(inputs, layers.Dense(3, name="head")(h), name="se"))


def convnext_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 2, strides=2, name="stem")(preprocessing(inputs))
    h = layers.DepthwiseConv2D(7, padding="same", name="dwconv")(x)
    h = layers.LayerNormalization(epsilon=1e-6, name="layernorm")(h)
    h = layers.Dense(32, name="pwconv1")(h)
    h = layers.Activation("gelu", name="gelu")(h)
    h = layers.Dense(8, name="pwconv2")(h)
    h = LayerScale(0.5, 8, name="layer_scale")(h)
    x = layers.Add(name="residual")([x, h])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.LayerNormalization(name="head_norm")(x)
    return bias_free(keras.Model(inputs, layers.Dense(3, name="head")(x), name="convnext"))


def mbconv_model():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(preprocessing(inputs))
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("swish", name="stem_act")(x)
    h = layers.Conv2D(24, 1, use_bias=False, name="expand")(x)
    h = layers.BatchNormalization(name="expand_bn")(h)
    h = layers.Activation("swish", name="expand_act")(h)
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dwconv")(h)
    h = layers.BatchNormalization(name="dw_bn")(h)
    h = layers.Activation("swish", name="dw_act")(h)
    h = squeeze_excite(h, 24, "se")
    h = layers.Conv2D(8, 1, use_bias=False, name="project")(h)
    h = layers.BatchNormalization(name="project_bn")(h)
    x = layers.Add(name="residual")([x, h])
    x = layers.GlobalAveragePooling2D()(x)
    return bias_free(keras.Model(inputs, layers.Dense(3, name="head")(x), name="mbconv"))


BLOCKS = {"squeeze_excite": se_model, "convnext": convnext_model, "mbconv": mbconv_model}


def images(batch=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("analyzer", ["lrp.z", "lrp.epsilon"])
def test_relevance_is_conserved_through_modern_blocks(name, analyzer):
    model = BLOCKS[name]()
    x = images()
    logits = model(x).numpy()
    target = logits.argmax(axis=1)
    params = {"epsilon": 1e-9} if analyzer == "lrp.epsilon" else {}
    relevance = kx.create_analyzer(analyzer, model, **params).analyze(x, target)
    total = relevance.reshape(len(x), -1).sum(axis=1)
    selected = logits[np.arange(len(x)), target]
    error = np.abs(total / selected - 1).max()
    print(f"conservation {name} {analyzer}: max relative error {error:.2e}")
    assert error < 1e-5


def test_new_ops_get_their_rules():
    model = mbconv_model()
    analyzer = kx.LRPEpsilonPlus(model)
    assert repr(analyzer.rule_of("se_excite")) == "[SignalTakesAll(epsilon=1e-07)]"
    # element-wise preprocessing passes relevance (each output reads one input; the
    # ε-rule would divide by (x - mean) / std, which vanishes near the channel mean),
    # and is never the first layer
    assert repr(analyzer.rule_of("rescaling")) == "[Pass()]"
    assert repr(analyzer.rule_of("normalization")) == "[Pass()]"
    assert [s.op.name for s in analyzer.plan.steps if s.first_linear] == ["stem+stem_bn"]
    gated = [s for s in analyzer.plan.steps if s.op.kind == "multiply"]
    assert [s.gates for s in gated] == [(1,)]
    norm = kx.LRPEpsilon(convnext_model())
    assert repr(norm.rule_of("layernorm")) == "[ConstantScale(epsilon=1e-07)]"
    assert repr(norm.rule_of("layer_scale")) == "[Epsilon(epsilon=1e-07)]"
    assert repr(norm.rule_of("gelu")) == "[Pass()]"
    box = kx.LRPEpsilonGammaBox(model, low=-2.0, high=2.0)
    assert repr(box.rule_of("stem")) == "[ZBox(low=-2.0, high=2.0, epsilon=1e-07)]"


def test_signal_takes_all_gives_the_gate_nothing():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4, 4, 2))
    signal = layers.Conv2D(3, 1, use_bias=False, name="signal")(inputs)
    gate = layers.GlobalAveragePooling2D(keepdims=True)(inputs)
    gate = layers.Conv2D(3, 1, activation="sigmoid", name="gate")(gate)
    product = layers.Multiply(name="product")([signal, gate])
    model = keras.Model(inputs, product)
    x = np.random.default_rng(4).normal(size=(2, 4, 4, 2)).astype("float32")
    analyzer = kx.LRPZ(model, layer="signal")
    relevance_at_signal = analyzer.analyze(x, target="all")
    # R(product) = product itself (target "all"); the signal takes all of it
    np.testing.assert_allclose(relevance_at_signal, model(x).numpy(), rtol=1e-6, atol=1e-7)
    gate_relevance = kx.LRPZ(model, layer="gate").analyze(x, target="all")
    np.testing.assert_array_equal(gate_relevance, np.zeros_like(gate_relevance))


def test_proportional_split_option_for_products():
    keras.utils.set_random_seed(5)
    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], layers.Multiply()([a, b]))
    x = [
        np.random.default_rng(6).uniform(0.5, 2, (2, 4)).astype("float32"),
        np.random.default_rng(7).uniform(0.5, 2, (2, 4)).astype("float32"),
    ]
    composite = kx.composites.Composite(
        [("multiply", rules.ProportionalSplit()), ("linear", rules.Epsilon())]
    )
    result = kx.LRP(model, composite).analyze(x, target="all")
    relevance = x[0] * x[1]
    share = x[0] / (x[0] + x[1])
    np.testing.assert_allclose(result[0], relevance * share, rtol=1e-5)
    np.testing.assert_allclose(result[1], relevance * (1 - share), rtol=1e-5)
    # no gate among two signals: the default rule falls back to the proportional split
    default = kx.LRPEpsilon(model).analyze(x, target="all")
    np.testing.assert_allclose(default[0], result[0], rtol=1e-6)


def test_layer_norm_rule_against_reference():
    keras.utils.set_random_seed(8)
    inputs = keras.Input((6,))
    norm = layers.LayerNormalization(epsilon=1e-3, name="norm")
    model = keras.Model(inputs, norm(inputs))
    norm.gamma.assign(np.random.default_rng(9).uniform(0.5, 2, 6).astype("float32"))
    norm.beta.assign(np.random.default_rng(10).normal(0, 0.3, 6).astype("float32"))
    x = np.random.default_rng(11).normal(size=(3, 6)).astype("float64")
    relevance_out = np.random.default_rng(12).normal(size=(3, 6))
    # reference: y = gamma * (x - mean) * s + beta with s held constant, so the linear part
    # is L = diag(gamma * s) (I - 11^T / n); R_in = x * L^T (R / y)
    n = 6
    mean = x.mean(1, keepdims=True)
    scale = 1 / np.sqrt(x.var(1, keepdims=True) + 1e-3)
    y = norm.gamma.numpy() * (x - mean) * scale + norm.beta.numpy()
    center = np.eye(n) - 1.0 / n
    expected = np.stack(
        [
            x[i]
            * ((np.diag(norm.gamma.numpy() * scale[i, 0]) @ center).T @ (relevance_out[i] / y[i]))
            for i in range(3)
        ]
    )
    step = kx.graph.Plan(model).steps[0]
    assert step.op.kind == "normalization"
    tensor = tf.constant(x.astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        output = rules.ConstantScale(0.0)(step, [tensor])
    result = tape.gradient(output, tensor, output_gradients=tf.constant(relevance_out, tf.float32))
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-4, atol=1e-6)
