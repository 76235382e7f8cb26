"""AttnLRP (``lrp.attn``): equal to LXT's gradient × input form, and its rules by hand.

LXT (Achtibat et al. 2024) computes AttnLRP as gradient × input with modified
gradients; ``helpers.attn_lrp_transformer_reference`` is that recipe written with a
plain ``tf.GradientTape``. keras_explain propagates relevance rule by rule; both
must agree (the ε of the linear maps is a guard, 1e-9).
"""

import helpers
import keras
import numpy as np
import pytest
from keras import layers, ops

import keras_explain as kx
from keras_explain import composites


def transformer(seed=0, **block):
    helpers.seeded(seed)
    model = helpers.transformer_classifier(steps=5, features=8, blocks=2, **block)
    return helpers.randomize(model, seed)


@pytest.mark.parametrize(
    "block", [{}, {"rms": True}, {"causal": True}], ids=["layer_norm", "rms_norm", "causal"]
)
def test_attn_lrp_equals_lxt_gradient_times_input(block):
    model = transformer(**block)
    x = helpers.data((5, 8), batch=3)
    target = np.argmax(model(x), -1)
    expected, logits = helpers.attn_lrp_transformer_reference(
        model, x, target, causal=block.get("causal", False)
    )
    np.testing.assert_allclose(
        logits, np.take_along_axis(model(x).numpy(), target[:, None], 1)[:, 0], rtol=1e-5
    )
    result = kx.create_analyzer("lrp.attn", model).analyze(x, target)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * scale)
    # the same analyzer by composite name, and the rules it assigns
    again = kx.LRP(model, "attn_lrp").analyze(x, target)
    np.testing.assert_array_equal(again, result)
    # CP-LRP (the attention weights held constant, every preset's default) differs
    epsilon = kx.LRP(model, "epsilon", epsilon=1e-9).analyze(x, target)
    assert np.abs(epsilon - expected).max() > 100 * 1e-5 * scale


def test_the_rules_of_a_transformer_block():
    model = transformer()
    text = kx.create_analyzer("lrp.attn", model).describe()
    attention = next(line for line in text.splitlines() if " MultiHeadAttention " in line)
    for part in (
        "query: Epsilon(epsilon=1e-09)",
        "scores: Bilinear(epsilon=1e-09, gates=False)",
        "softmax: Softmax()",
        "attention: Bilinear(epsilon=1e-09, gates=False)",
    ):
        assert part in attention
    assert repr(kx.create_analyzer("lrp.attn", model, epsilon=0.1).rule_of(model.layers[-1])) == (
        "[Epsilon(epsilon=0.1)]"
    )


class OpsSelfAttention(layers.Layer):
    """Self-attention written in keras.ops (as KerasHub's Llama and custom layers are)."""

    def __init__(self, heads, key_dim, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.key_dim = heads, key_dim

    def build(self, input_shape):
        shape = (input_shape[-1], self.heads, self.key_dim)
        self.query = self.add_weight(shape=shape, name="query")
        self.key = self.add_weight(shape=shape, name="key")
        self.value = self.add_weight(shape=shape, name="value")
        self.out = self.add_weight(shape=shape[1:] + shape[:1], name="out")

    def call(self, x):
        q = ops.einsum("btd,dnh->btnh", x, self.query)
        k = ops.einsum("btd,dnh->btnh", x, self.key)
        v = ops.einsum("btd,dnh->btnh", x, self.value)
        scores = ops.einsum("bsnh,btnh->bnts", k, q) / float(self.key_dim) ** 0.5
        mixed = ops.einsum("bnts,bsnh->btnh", ops.softmax(scores, axis=-1), v)
        return ops.einsum("btnh,nhd->btd", mixed, self.out)


def attention_twins(seed=0):
    """The same bias-free attention classifier with keras' MultiHeadAttention and in ops."""
    models = []
    for attention in (
        layers.MultiHeadAttention(2, 4, use_bias=False),
        OpsSelfAttention(2, 4),
    ):
        helpers.seeded(seed)
        inputs = keras.Input((5, 8))
        if isinstance(attention, layers.MultiHeadAttention):
            h = attention(inputs, inputs)
        else:
            h = attention(inputs)
        h = layers.LayerNormalization()(layers.Add()([inputs, h]))
        outputs = layers.Dense(3)(layers.GlobalAveragePooling1D()(h))
        models.append(keras.Model(inputs, outputs))
    keras_model, ops_model = models
    helpers.randomize(keras_model, seed)
    mha = keras_model.layers[1]
    ops_model.layers[1].set_weights(
        [d.kernel.numpy() for d in (mha.query_dense, mha.key_dense, mha.value_dense)]
        + [mha.output_dense.kernel.numpy()]
    )
    for index in (3, 5):
        ops_model.layers[index].set_weights(keras_model.layers[index].get_weights())
    return keras_model, ops_model


def test_attention_written_in_keras_ops_is_opened_and_equals_multi_head_attention():
    keras_model, ops_model = attention_twins()
    x = helpers.data((5, 8), batch=3)
    np.testing.assert_allclose(ops_model(x), keras_model(x), rtol=1e-5, atol=1e-6)
    kinds = [
        (step.op.kind, type(step.op.layer).__name__) for step in helpers.plan_of(ops_model).steps
    ]
    assert kinds.count(("sum_pool", "Einsum")) == 4  # x W: a fixed linear map of x
    assert kinds.count(("bilinear", "Einsum")) == 2 and ("softmax", "Softmax") in kinds
    np.testing.assert_allclose(
        kx.create_analyzer("lrp.attn", ops_model).analyze(x, 1),
        kx.create_analyzer("lrp.attn", keras_model).analyze(x, 1),
        rtol=1e-4,
        atol=1e-7,
    )
    # other presets hold MultiHeadAttention's weights constant (a declared gate); an
    # einsum of two computed tensors in an opened layer has no gate: split evenly
    assert "Bilinear(epsilon=1e-07, gates=True)" in kx.LRP(ops_model, "epsilon").describe()


def outer_product_model(seed=0):
    """x -> a = x A, b = x B (no biases) -> the outer product a b^T -> Flatten -> Dense."""
    helpers.seeded(seed)
    inputs = keras.Input((4,))
    a = layers.Dense(3, use_bias=False, name="a")(inputs)
    b = layers.Dense(3, use_bias=False, name="b")(inputs)
    product = ops.matmul(ops.expand_dims(a, 2), ops.expand_dims(b, 1))
    outputs = layers.Dense(2, use_bias=False, name="top")(layers.Flatten()(product))
    return helpers.randomize(keras.Model(inputs, outputs), seed)


@pytest.mark.parametrize("name", ["lrp.attn", "lrp.z"])
def test_a_product_of_two_computed_tensors_splits_its_relevance_evenly(name):
    """``R_a_i = sum_j R_ij / 2``, ``R_b_j = sum_i R_ij / 2``; then LRP-0, in numpy."""
    model = outer_product_model()
    x = helpers.data((4,))
    (w_a,), (w_b,), (w_top,) = (model.get_layer(n).get_weights() for n in ("a", "b", "top"))
    a, b = x @ w_a, x @ w_b
    product = (a[:, :, None] * b[:, None, :]).reshape(len(x), -1)
    logit = product @ w_top[:, 1]
    r_product = (product * w_top[:, 1]).reshape(len(x), 3, 3)  # LRP-0: R_ij = p_ij w_ij
    r_a, r_b = r_product.sum(2) / 2, r_product.sum(1) / 2
    expected = (x[:, :, None] * w_a / a[:, None]) @ r_a[:, :, None]
    expected = expected[..., 0] + ((x[:, :, None] * w_b / b[:, None]) @ r_b[:, :, None])[..., 0]
    result = kx.create_analyzer(name, model).analyze(x, target=1)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.sum(1), logit, rtol=1e-5)  # bias-free: conserved


def gated_mlp(seed=0):
    """A bias-free SwiGLU block under an RMS norm written in keras.ops (Llama's MLP)."""
    helpers.seeded(seed)
    inputs = keras.Input((5, 8))
    h = inputs * ops.rsqrt(ops.mean(ops.square(inputs), axis=-1, keepdims=True) + 1e-6)
    gate = layers.Dense(16, use_bias=False, activation="silu")(h)
    up = layers.Dense(16, use_bias=False)(h)
    h = layers.Dense(8, use_bias=False)(gate * up)
    outputs = layers.Dense(3, use_bias=False)(layers.GlobalAveragePooling1D()(h))
    return helpers.randomize(keras.Model(inputs, outputs), seed)


def test_attn_lrp_conserves_relevance_through_a_bias_free_gated_mlp():
    """SwiGLU's product splits R evenly, the RMS scale (a broadcast gate) takes none."""
    model = gated_mlp()
    x = helpers.data((5, 8), batch=3)
    target = np.argmax(model(x), -1)
    logit = np.take_along_axis(model(x).numpy(), target[:, None], 1)[:, 0]
    result = kx.create_analyzer("lrp.attn", model).analyze(x, target)
    np.testing.assert_allclose(result.sum((1, 2)), logit, rtol=1e-4, atol=1e-6)
    # the product's factors share R evenly: each Dense before it holds half of R
    per_layer = kx.create_analyzer("lrp.attn", model).analyze_layers(x, target)
    gate, up = (layer.name for layer in model.layers if layer.output.shape[-1] == 16)
    for name in (gate, up):
        np.testing.assert_allclose(
            per_layer[name].sum((1, 2)), logit / 2, rtol=1e-4, atol=1e-6, err_msg=name
        )


def test_a_bias_free_transformer_with_constant_attention_weights_conserves():
    """CP-LRP (every preset's default on attention): conservation through every block."""
    model = helpers.bias_free(transformer())
    x = helpers.data((5, 8), batch=3)
    target = np.argmax(model(x), -1)
    logit = np.take_along_axis(model(x).numpy(), target[:, None], 1)[:, 0]
    result = kx.LRP(model, "epsilon", epsilon=1e-9).analyze(x, target)
    np.testing.assert_allclose(result.sum((1, 2)), logit, rtol=1e-4, atol=1e-6)
    # AttnLRP's softmax rule is not conservative (the paper's Prop. 3.1 leaves the rest
    # to the bias of its Taylor expansion): the totals differ
    attn = kx.create_analyzer("lrp.attn", model).analyze(x, target)
    assert np.abs(attn.sum((1, 2)) - logit).max() > 1e-3


def test_attn_lrp_preset_parameters():
    composite = composites.get("attn_lrp", epsilon=0.25)
    assert composite.name == "attn_lrp" and composite.rules[0][0] == "linear"
    assert repr(composite.rules[0][1]) == "Epsilon(epsilon=0.25)"
    with pytest.raises(ValueError, match=r"Preset 'attn_lrp' has no parameter 'gamma'"):
        composites.get("attn_lrp", gamma=0.25)
    assert "epsilon" in kx.analyzers.registry.parameters("lrp.attn")
