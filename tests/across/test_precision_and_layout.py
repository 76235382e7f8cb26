"""float16 / mixed precision models, and BatchNorm folding in channels_first layout.

- A model whose layers compute in float16 (``mixed_float16``: float32 variables;
  ``float16``: float16 variables) is explained by every family and gives float32
  results equal to those of its float32 twin (same weights) to float16 accuracy.
- A channels_first Conv2D followed by BatchNormalization(axis=1) is folded (the
  BatchNormalization has no op left) and LRP-ε equals a numpy reference built from the
  folded weights; with folding off the BatchNormalization is a linear layer under the
  rule, which gives another, also exact, result.
"""

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

layers = keras.layers


def precision_model(dtype, seed=0):
    """Conv -> BatchNorm (folded) -> ReLU -> MaxPool -> Conv(ReLU) -> Flatten -> Dense."""
    helpers.seeded(seed)
    inputs = keras.Input((6, 6, 2))
    h = layers.Conv2D(4, 3, padding="same", dtype=dtype, name="conv")(inputs)
    h = layers.BatchNormalization(dtype=dtype, name="bn")(h)
    h = layers.ReLU(dtype=dtype)(h)
    h = layers.MaxPooling2D(dtype=dtype)(h)
    h = layers.Conv2D(5, 3, activation="relu", padding="same", dtype=dtype, name="conv2")(h)
    h = layers.Flatten(dtype=dtype)(h)
    outputs = layers.Dense(3, dtype=dtype, name="head")(h)
    return helpers.randomize(keras.Model(inputs, outputs, name=f"model_{dtype}"), seed)


PRECISION_METHODS = {
    "gradient": {},
    "input_t_gradient": {},
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 4, "seed": 0},
    "guided_backprop": {},
    "lrp.epsilon": {},
    "lrp.alpha_2_beta_1": {},
    "lrp.epsilon_gamma_box": {},
    "grad_cam": {},
    "occlusion": {"window": 2},
    "rise": {"samples": 16, "cells": 2, "seed": 0},
    "shapley_sampling": {"samples": 4, "seed": 0},
}


@pytest.fixture(scope="module")
def float32_twin():
    return precision_model("float32")


@pytest.mark.parametrize("dtype", ["mixed_float16", "float16"])
@pytest.mark.parametrize("name", sorted(PRECISION_METHODS))
def test_float16_models_agree_with_their_float32_twin(float32_twin, dtype, name):
    model = precision_model(dtype)
    model.set_weights(float32_twin.get_weights())
    x = np.random.default_rng(0).uniform(size=(3, 6, 6, 2)).astype("float32")
    assert model(x).dtype == "float16"
    params = PRECISION_METHODS[name]
    result = kx.create_analyzer(name, model, **params).analyze(x, 1)
    expected = kx.create_analyzer(name, float32_twin, **params).analyze(x, 1)
    assert result.dtype == np.float32 and result.shape == expected.shape
    assert np.isfinite(result).all()
    # float16 keeps ~3 significant digits (unit round-off 4.9e-4); a few dozen of them
    # accumulate through the layers. The float16 path really ran: not bit-equal.
    assert np.abs(result - expected).max() <= 2e-2 * np.abs(expected).max()
    assert not np.array_equal(result, expected)


# -- channels_first BatchNorm folding ------------------------------------------------------
def channels_first_model(seed=0):
    helpers.seeded(seed)
    inputs = keras.Input((2, 6, 6))
    h = layers.Conv2D(3, 3, padding="same", data_format="channels_first", name="conv")(inputs)
    h = layers.BatchNormalization(axis=1, name="bn")(h)
    h = layers.ReLU()(h)
    h = layers.Flatten(name="flatten")(h)  # (channels, height, width) order
    outputs = layers.Dense(3, name="head")(h)
    return helpers.randomize(keras.Model(inputs, outputs, name="channels_first"), seed)


def channels_first_reference(model, x, target, fold, epsilon):
    """LRP-ε in numpy; the convolution unrolled channels-last, inputs transposed to it."""
    rule = helpers.Ref("epsilon", epsilon=epsilon)
    batch = len(x)
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer("conv").get_weights())
    scale, shift = helpers.batch_norm_scale_shift(model.get_layer("bn"))
    head_kernel, head_bias = (
        np.asarray(w, np.float64) for w in model.get_layer("head").get_weights()
    )
    x_last = np.transpose(x, (0, 2, 3, 1)).reshape(batch, -1)  # (h, w, c) order
    if fold:
        matrix, full_bias, connected = helpers.conv_matrix(
            kernel * scale, bias * scale + shift, (6, 6, 2), "same"
        )
    else:
        matrix, full_bias, connected = helpers.conv_matrix(kernel, bias, (6, 6, 2), "same")
    # the Dense reads the channels_first flattening (c, h, w): reorder its rows to (h, w, c)
    order = np.arange(3 * 36).reshape(3, 6, 6).transpose(1, 2, 0).ravel()
    head = head_kernel[order]
    z = x_last @ matrix + full_bias
    if not fold:
        bn_input = z
        z = z * np.tile(scale, 36) + np.tile(shift, 36)
    hidden = np.maximum(z, 0)
    logits = hidden @ head + head_bias
    np.testing.assert_allclose(logits, model(x).numpy(), rtol=1e-5, atol=1e-5)
    relevance = np.zeros_like(logits)
    relevance[np.arange(batch), target] = logits[np.arange(batch), target]
    relevance = helpers.rule_reference(rule, hidden, head, head_bias, relevance, None)
    if not fold:
        diagonal = np.diag(np.tile(scale, 36))
        relevance = helpers.rule_reference(
            rule, bn_input, diagonal, np.tile(shift, 36), relevance, None
        )
    relevance = helpers.rule_reference(rule, x_last, matrix, full_bias, relevance, connected)
    return relevance.reshape(batch, 6, 6, 2).transpose(0, 3, 1, 2)


def test_channels_first_batchnorm_is_folded_and_lrp_equals_numpy():
    model = channels_first_model()
    x = helpers.data((2, 6, 6), seed=1, batch=3)
    target = np.array([0, 2, 1])
    folded = kx.LRPEpsilon(model, epsilon=0.01)
    assert folded.rule_of("bn") == []  # folded into the convolution
    assert [repr(rule) for rule in folded.rule_of("conv")] == ["Epsilon(epsilon=0.01)"]
    expected = channels_first_reference(model, x, target, fold=True, epsilon=0.01)
    result = folded.analyze(x, target)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)
    unfolded = kx.LRPEpsilon(model, epsilon=0.01, canonizers=[])
    assert [repr(rule) for rule in unfolded.rule_of("bn")] == ["Epsilon(epsilon=0.01)"]
    expected_unfolded = channels_first_reference(model, x, target, fold=False, epsilon=0.01)
    np.testing.assert_allclose(unfolded.analyze(x, target), expected_unfolded, rtol=1e-4, atol=1e-6)
    assert np.abs(expected - expected_unfolded).max() > 1e-2  # folding changes the result


def test_channels_first_fold_conserves_on_a_bias_free_model():
    model = helpers.bias_free(channels_first_model(seed=1))
    x = helpers.data((2, 6, 6), seed=2, batch=3)
    result = kx.LRPZ(model).analyze(x)
    np.testing.assert_allclose(result.sum((1, 2, 3)), model(x).numpy().max(1), rtol=1e-5)


# -- Transformers in mixed precision -------------------------------------------------------
@pytest.mark.parametrize(
    ("family", "policy"), [("gpt2", "mixed_float16"), ("llama", "mixed_bfloat16")]
)
def test_mixed_precision_transformers_agree_with_their_float32_twin(family, policy):
    """AttnLRP on a KerasHub causal LM computing in float16 / bfloat16.

    The rules divide and map relevance back in float32 (an ε of 1e-9 is 0 in float16:
    GPT-2's AttnLRP was NaN before), and Llama's decoder blocks, whose opened operations
    round differently from the fused call in half precision, are still opened (AttnLRP
    refused them before: "could not run on symbolic tensors"). Gradient methods in half
    precision: ``test_float16_models_agree_with_their_float32_twin``.
    """
    pytest.importorskip("keras_hub")
    twin = helpers.keras_hub_causal_lm(family)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = helpers.keras_hub_causal_lm(family)
    finally:
        keras.config.set_dtype_policy(previous)
    model.set_weights(twin.get_weights())
    x = helpers.keras_hub_lm_batch()
    logits = model(x)
    assert model.backbone.compute_dtype == policy.removeprefix("mixed_")
    # the float32 twin's prediction: the half-precision argmax may pick another token
    target = np.argmax(np.asarray(twin(x)).reshape(len(logits), -1), axis=1)
    # float16 keeps 11 significant bits, bfloat16 8: a few units of round-off per layer
    # (relevance carried in the layers' dtype between ops: 1.6e-3 and 1.7e-2; in
    # float32: 4.2e-4 and 8.1e-3)
    tolerance = 1e-3 if policy == "mixed_float16" else 1.2e-2
    result = kx.LRP(model, "attn_lrp").analyze(x, target)["token_ids"]
    expected = kx.LRP(twin, "attn_lrp").analyze(x, target)["token_ids"]
    assert result.dtype == np.float32 and np.isfinite(result).all()
    assert np.abs(result - expected).max() <= tolerance * np.abs(expected).max()
    assert not np.array_equal(result, expected)  # half precision really ran


def test_relevance_between_the_ops_of_a_float16_model_is_float32():
    """Relevance far below float16's normal range (6.1e-5) is carried in float32.

    A logit of about 1e-4 spreads over 64 hidden units and 256 inputs: relevance of
    1e-6 to 1e-7 per value, which float16 holds with 1 to 4 significant bits (a
    relevance carried in the layers' dtype was off by 11% of the largest here).
    """

    def chain(policy):
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            inputs = keras.Input((256,))
            h = keras.layers.Dense(64, "relu", use_bias=False, name="first")(inputs)
            h = keras.layers.Dense(64, "relu", use_bias=False, name="second")(h)
            outputs = keras.layers.Dense(2, use_bias=False, name="logits")(h)
            return keras.Model(inputs, outputs)
        finally:
            keras.config.set_dtype_policy(previous)

    rng = np.random.default_rng(0)
    weights = [
        rng.normal(0, 1 / np.sqrt(256), (256, 64)),
        rng.normal(0, 1 / np.sqrt(64), (64, 64)),
        rng.normal(0, 1e-4 / np.sqrt(64), (64, 2)),
    ]
    weights = [w.astype(np.float16).astype(np.float32) for w in weights]  # the same in both
    half, full = chain("mixed_float16"), chain("float32")
    half.set_weights(weights)
    full.set_weights(weights)
    x = rng.uniform(0, 1, (4, 256)).astype(np.float16).astype(np.float32)
    assert np.abs(np.asarray(full(x))[:, 0]).max() < 1e-3
    result = kx.LRP(half, "epsilon", epsilon=1e-12).analyze(x, 0)
    expected = kx.LRP(full, "epsilon", epsilon=1e-12).analyze(x, 0)
    assert np.abs(result - expected).max() <= 2e-3 * np.abs(expected).max()
