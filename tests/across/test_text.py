"""Token inputs: per-token attributions at the Embedding output, masks, baselines, errors."""

import helpers
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

TARGET = 1
SLOW = pytest.mark.slow


def kinds(default, smooth_only=False):
    """TOKEN_KINDS as parameters; those not in ``default`` run in the slow step."""
    chosen = [k for k in helpers.TOKEN_KINDS if not (smooth_only and k == "conv")]
    return [k if k in default else pytest.param(k, marks=SLOW) for k in chosen]


def masks_of(tokens):
    return tokens != 0


def embed(model, tokens):
    return model.layers[1](tf.constant(tokens)).numpy()


@pytest.mark.parametrize("kind", helpers.TOKEN_KINDS)
def test_reexecution_equals_model_call_on_padded_batches(kind):
    model, tail = helpers.token_model(kind)
    tokens = helpers.padded_tokens()
    plan = helpers.plan_of(model)
    values = plan.run([tf.constant(tokens)], targets=plan.output_keys)
    expected = model(tokens).numpy()
    # the same ops on the same values, in the same order: equal to float32 round-off
    np.testing.assert_allclose(values[plan.output_keys[0]].numpy(), expected, atol=1e-6)
    # the tail with the explicit mask is the model; except for the Conv1D body (which
    # drops the mask) it is not the model without the mask, so re-execution passes masks
    np.testing.assert_allclose(tail(embed(model, tokens), masks_of(tokens)), expected, atol=1e-5)
    unmasked = tail(embed(model, tokens), np.ones_like(tokens, bool)).numpy()
    assert (np.abs(unmasked - expected).max() > 1e-3) == (kind != "conv")


def hand_ig(tail, embeddings, baseline, mask, steps):
    """Integrated Gradients on the float tail, one tape per path point (trapezoid)."""
    alphas, weights = helpers.trapezoid_rule(steps)
    ig = helpers.reference_ig(
        lambda e: tail(e, mask), embeddings, baseline, TARGET, alphas, weights
    )
    return np.where(mask, ig.sum(-1), 0.0)


@pytest.mark.parametrize("kind", kinds(("lstm", "mha")))
def test_integrated_gradients_on_tokens_equals_ig_on_the_embedding_tail(kind):
    model, tail = helpers.token_model(kind)
    tokens = helpers.padded_tokens()
    embeddings = embed(model, tokens)
    baseline = np.broadcast_to(embed(model, np.zeros_like(tokens)), embeddings.shape)
    result = kx.IntegratedGradients(model, steps=16).analyze(tokens, target=TARGET)
    expected = hand_ig(tail, embeddings, baseline, masks_of(tokens), 16)
    assert result.shape == tokens.shape and result.dtype == np.float32
    # the same path points and weights, the gradient summed in another order: float32
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    assert np.all(result[tokens == 0] == 0.0)


# the Conv1D body (ReLU, max pooling) has kinks, where quadrature converges slowly; its
# DeepLIFT sums to the difference exactly (test_deeplift_on_tokens_sums_to_delta)
@pytest.mark.parametrize("kind", kinds(("gru",), smooth_only=True))
def test_integrated_gradients_completeness_at_the_embedding_output(kind):
    model, tail = helpers.token_model(kind)
    tokens = helpers.padded_tokens()
    mask = masks_of(tokens)
    ig = kx.IntegratedGradients(model, steps=24, method="gausslegendre")
    result = ig.analyze(tokens, target=TARGET)
    zero = embed(model, np.zeros_like(tokens))
    # f(baseline) runs the baseline embeddings with the explained tokens' mask
    delta = model(tokens).numpy()[:, TARGET] - tail(zero, mask).numpy()[:, TARGET]
    # 24-point Gauss-Legendre is exact for polynomials of degree 47 along the path; on
    # these smooth (tanh, sigmoid, softmax, piecewise-linear) nets what remains is float32
    # round-off of 24 gradients; padded positions hold E[0] in x and x', so no path there
    np.testing.assert_allclose(result.sum(1), delta, atol=1e-4)
    assert np.abs(delta).max() > 1e-3  # the check is not 0 == 0


def test_token_baseline_id_and_embedding_array_agree():
    model, _ = helpers.token_model("lstm")
    tokens = helpers.padded_tokens()
    by_id = kx.IntegratedGradients(model, steps=8, baseline=5).analyze(tokens, target=TARGET)
    rows = embed(model, np.full((1, 12), 5))[0]  # (T, D)
    by_array = kx.IntegratedGradients(model, steps=8, baseline=rows).analyze(tokens, target=TARGET)
    # the same baseline embeddings: the same arithmetic
    np.testing.assert_allclose(by_array, by_id, atol=1e-6)
    padding = kx.IntegratedGradients(model, steps=8).analyze(tokens, target=TARGET)
    assert np.abs(padding - by_id).max() > 1e-4  # the baseline is used


def test_integrated_gradients_from_a_non_padding_baseline_is_zero_at_padding():
    # with the padding id as baseline, x − x' = E[0] − E[0] = 0 at padded positions, so
    # they get 0 whether or not the mask is applied; from token 5, x − x' = E[0] − E[5]
    # there, and the Conv1D body (which drops the mask) has a gradient there too
    model, tail = helpers.token_model("conv")
    tokens = helpers.padded_tokens()
    mask = masks_of(tokens)
    embeddings = embed(model, tokens)
    baseline = np.broadcast_to(embed(model, np.full_like(tokens, 5)), embeddings.shape)
    result = kx.IntegratedGradients(model, steps=8, baseline=5).analyze(tokens, target=TARGET)
    assert np.all(result[~mask] == 0.0)
    assert np.all(result[mask & (tokens != 5)] != 0.0)  # where a token is 5, x = x'
    alphas, weights = helpers.trapezoid_rule(8)
    unmasked = helpers.reference_ig(
        lambda e: tail(e, mask), embeddings, baseline, TARGET, alphas, weights
    ).sum(-1)
    # without the mask, IG is not 0 at any padded position: the zeros are the mask's
    assert np.abs(unmasked[~mask]).min() > 1e-5
    # the same path points and weights, the gradient summed in another order: float32
    np.testing.assert_allclose(result, np.where(mask, unmasked, 0.0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name, params",
    [
        ("gradient", {}),
        ("input_t_gradient", {}),
        ("smoothgrad", {"samples": 3, "seed": 0}),
        ("vargrad", {"samples": 3, "seed": 0}),
        ("integrated_gradients", {"steps": 4}),
        ("deeplift", {}),
        ("deeplift_shap", {"background": helpers.padded_tokens(seed=1)}),
        ("gradient_shap", {"background": helpers.padded_tokens(seed=1), "seed": 0}),
        ("guided_backprop", {}),
        ("lrp.epsilon", {}),
    ],
)
def test_masked_positions_get_exactly_zero(name, params):
    model, tail = helpers.token_model("conv")
    tokens = helpers.padded_tokens()
    result = kx.create_analyzer(name, model, **params).analyze(tokens, target=TARGET)
    assert result.shape == tokens.shape and result.dtype == np.float32
    assert np.all(result[tokens == 0] == 0.0)
    assert np.abs(result[tokens != 0]).max() > 0
    # Conv1D drops the mask, so the model's own gradient at padding is not 0
    raw = helpers.tape_gradient(lambda e: tail(e, masks_of(tokens)), embed(model, tokens), TARGET)
    assert np.abs(raw.sum(-1)[tokens == 0]).max() > 1e-3


def test_gradient_on_tokens_is_the_embedding_gradient_summed():
    model, tail = helpers.token_model("mha")
    tokens = helpers.padded_tokens()
    mask = masks_of(tokens)
    expected = helpers.tape_gradient(lambda e: tail(e, mask), embed(model, tokens), TARGET)
    result = kx.Gradient(model).analyze(tokens, target=TARGET)
    np.testing.assert_allclose(result, np.where(mask, expected.sum(-1), 0.0), atol=1e-5)


def test_smoothgrad_noise_is_on_the_embeddings():
    model, _ = helpers.token_model("gru")
    tokens = helpers.padded_tokens()
    gradient = kx.Gradient(model).analyze(tokens, target=TARGET)
    silent = kx.SmoothGrad(model, samples=2, noise_scale=0.0, seed=0).analyze(tokens, target=TARGET)
    np.testing.assert_allclose(silent, gradient, atol=1e-6)  # no noise: every copy is x
    noisy = kx.SmoothGrad(model, samples=2, noise_scale=0.5, seed=0).analyze(tokens, target=TARGET)
    assert np.abs(noisy - gradient).max() > 1e-4


def test_deeplift_on_tokens_sums_to_delta():
    model, _ = helpers.token_model("conv")  # ReLU, max pooling, Dense: DeepLIFT is exact
    tokens = helpers.padded_tokens()
    result = kx.DeepLift(model, baseline=0).analyze(tokens, target=TARGET)
    # the Conv1D body ignores the mask, so f(baseline) is the model on padding ids
    delta = helpers.selected(model, tokens, TARGET) - helpers.selected(
        model, np.zeros_like(tokens), TARGET
    )
    np.testing.assert_allclose(result.sum(1), delta, rtol=1e-5, atol=1e-5)
    assert np.abs(delta).min() > 1e-3


@pytest.mark.parametrize("cls", [kx.IntegratedGradients, kx.DeepLift])
@pytest.mark.parametrize("baseline", [50, -1, 2.5])
def test_baseline_token_out_of_range_is_refused(cls, baseline):
    model, _ = helpers.token_model("lstm")
    with pytest.raises(
        ValueError,
        match=rf"{cls.__name__}: the baseline of token input 0 .*"
        rf"\[0, 50\)\. Received: baseline={baseline}\. Pass a token id",
    ):
        cls(model, baseline=baseline)


def test_float_input_to_an_embedding_model_is_refused():
    model, _ = helpers.token_model("lstm")
    floats = helpers.padded_tokens().astype("float32")
    with pytest.raises(
        TypeError,
        match=r"Gradient: input 0 of model .* takes integer token ids "
        r"\(dtype int32\)\. Received: dtype float32\. Pass the token ids",
    ):
        kx.Gradient(model).analyze(floats)


@pytest.mark.parametrize("bad, received", [(50, "from 0 to 50"), (-3, "from -3 to 49")])
def test_token_ids_outside_the_vocabulary_are_refused(bad, received):
    model, _ = helpers.token_model("lstm")
    tokens = helpers.padded_tokens()
    tokens[0, 0] = bad
    tokens[1, 0] = 49
    with pytest.raises(
        ValueError,
        match=rf"IntegratedGradients: input 0 of model .* outside the "
        rf"Embedding vocabulary \[0, 50\)\. Received: ids {received}\. Map unknown",
    ):
        kx.IntegratedGradients(model).analyze(tokens)


@pytest.mark.parametrize("length", [10, 14])
def test_sequences_of_another_length_are_refused(length):
    model, _ = helpers.token_model("conv")
    tokens = np.ones((2, length), "int32")
    with pytest.raises(
        ValueError,
        match=rf"DeepLift: Input 0 of model .* must have shape "
        rf"\(batch, 12\)\. Received: shape \(2, {length}\)\. Pad or truncate .*"
        r"maxlen=12",
    ):
        kx.DeepLift(model).analyze(tokens)


def test_deeplift_shap_and_deeplift_agree_on_a_single_padding_background():
    model, _ = helpers.token_model("conv")
    tokens = helpers.padded_tokens()
    single = kx.DeepLift(model, baseline=0).analyze(tokens, target=TARGET)
    # background token ids (embedded inside) vs a baseline id: the same [e; e'] pass
    background = np.zeros((1, 12), "int32")
    shap = kx.DeepLiftShap(model, background=background).analyze(tokens, target=TARGET)
    np.testing.assert_allclose(shap, single, atol=1e-6)
    rows = embed(model, np.zeros((1, 12), "int32"))[0]
    by_array = kx.DeepLift(model, baseline=rows).analyze(tokens, target=TARGET)
    np.testing.assert_allclose(by_array, single, atol=1e-6)


def test_metrics_accept_whole_number_floats_for_tokens_and_refuse_fractions():
    model, _ = helpers.token_model("lstm")
    tokens = helpers.padded_tokens()
    scores = kx.Gradient(model).analyze(tokens, target=TARGET)
    as_ints = kx.metrics.deletion(model, tokens, scores, TARGET, baseline=0, steps=4)
    as_floats = kx.metrics.deletion(
        model, tokens.astype("float32"), scores, TARGET, baseline=0, steps=4
    )
    np.testing.assert_array_equal(as_floats.auc, as_ints.auc)
    # deleting every token leaves f(all padding): the curve's last point
    np.testing.assert_allclose(
        as_ints.scores[:, -1], helpers.selected(model, np.zeros_like(tokens), TARGET), atol=1e-5
    )
    with pytest.raises(TypeError, match=r"input 0 of model .* takes integer token ids"):
        kx.metrics.deletion(model, tokens + 0.5, scores, TARGET, baseline=0, steps=4)
