"""Faithfulness metrics against closed forms, published numbers and slow numpy references."""

import helpers
import keras
import numpy as np
import pytest
from helpers import linear_dense_model as linear_model

import keras_explain as kx

layers = keras.layers


def scores_of(model, x, target):
    """f_t of a batch, straight from the model (no keras_explain)."""
    return helpers.selected(model, np.asarray(x, np.float32), target).astype(np.float64)


# =====================================================================================
# Infidelity
# =====================================================================================
def infidelity_reference(model, x, attributions, target, noise, samples, normalize):
    """Yeh et al. / Captum, one perturbation at a time: I = noise[b * samples + s]."""
    values = []
    for b in range(len(x)):
        dots, drops = [], []
        for s in range(samples):
            perturbation = noise[b * samples + s].astype(np.float64)
            dots.append(np.sum(attributions[b].astype(np.float64) * perturbation))
            clean = scores_of(model, x[b : b + 1], target)[0]
            perturbed = scores_of(model, (x[b] - perturbation)[None], target)[0]
            drops.append(clean - perturbed)
        dots, drops = np.array(dots), np.array(drops)
        if normalize:
            dots = dots * (np.sum(dots * drops) / np.sum(dots**2))
        values.append(np.mean((dots - drops) ** 2))
    return np.array(values)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_follows_captums_convention(logit_model, normalize):
    x = helpers.data((6,), seed=1)
    attributions = helpers.data((6,), seed=2)
    samples = 3
    noise = np.random.default_rng(3).normal(0, 0.5, (len(x) * samples, 6)).astype("float32")
    received = []

    def perturbation(inputs):
        received.append(inputs)
        return noise

    result = kx.metrics.infidelity(
        logit_model,
        x,
        attributions,
        1,
        perturbation=perturbation,
        samples=samples,
        normalize=normalize,
    )
    np.testing.assert_array_equal(received[0], np.repeat(x, samples, axis=0))  # sample-major
    expected = infidelity_reference(logit_model, x, attributions, 1, noise, samples, normalize)
    # float32 model outputs of magnitude ~1 squared: relative error ~1e-5
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-7)


def test_infidelity_of_integrated_gradients_is_the_completeness_gap_squared(logit_model):
    """Derivation: with I = x - x' the model sees x - I = x', so f(x) - f(x - I) = f(x) - f(x').

    (1) With the baseline x' = x - 1, I = 1 and sum(a * I) = sum(a), so the
    unnormalized infidelity of IG is (sum(a) - (f(x) - f(x')))^2 = delta^2 for every
    sample of I. (2) For any baseline, Captum's multiply_by_inputs convention divides by
    x - x': sum((a / (x - x')) * (x - x')) = sum(a), again delta^2.
    """
    x = helpers.data((6,), seed=5)  # every sample has a live ReLU path
    for baseline in (x - 1.0, np.full_like(x, 0.25)):
        relevance = kx.IntegratedGradients(logit_model, steps=3, baseline=baseline).analyze(x, 0)
        delta = relevance.astype(np.float64).sum(axis=1) - (
            scores_of(logit_model, x, 0) - scores_of(logit_model, baseline, 0)
        )
        assert np.max(np.abs(delta)) > 1e-2  # 3 steps leave a gap: delta^2 is no zero check
        result = kx.metrics.infidelity(
            logit_model,
            x,
            relevance / (x - baseline),
            0,
            perturbation=lambda inputs, b=baseline: inputs - np.repeat(b, 2, axis=0),
            samples=2,
            normalize=False,
        )
        np.testing.assert_allclose(result, delta**2, rtol=1e-3, atol=1e-8)


def test_normalized_infidelity_does_not_depend_on_the_scale(logit_model):
    x = helpers.data((6,), seed=5)
    attributions = helpers.data((6,), seed=6)
    small = kx.metrics.infidelity(logit_model, x, attributions, 2, samples=8)
    large = kx.metrics.infidelity(logit_model, x, 100 * attributions, 2, samples=8)
    np.testing.assert_allclose(large, small, rtol=1e-5)
    raw = kx.metrics.infidelity(logit_model, x, 100 * attributions, 2, samples=8, normalize=False)
    assert np.all(raw > 10 * small)  # the scale matters without normalize


# =====================================================================================
# Pixel flipping, deletion, insertion
# =====================================================================================
def test_pixel_flipping_reproduces_innvestigates_test():
    """iNNvestigate's tests/tools/test_perturb.py: Flatten -> Dense(1, no bias), w = arange(16)."""
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(1, use_bias=False)]
    )
    model.set_weights([np.arange(16, dtype="float32").reshape(16, 1)])
    x = np.arange(32, dtype="float32").reshape(2, 4, 4, 1)
    attributions = np.abs(helpers.tape_gradient(model, x, 0))
    curve = kx.metrics.pixel_flipping(
        model, x, attributions, 0, region=(2, 2), steps=3, baseline=0.0
    )
    assert curve.scores.shape == (2, 4)
    # iNNvestigate reduces each step to the mean over the batch of (f(x_perturbed) - 0)^2
    mse = np.mean(curve.scores.astype(np.float64) ** 2, axis=0)
    np.testing.assert_array_equal(mse, [5761600, 1654564, 182672, 21284])


def test_pixel_flipping_flips_all_channels_and_orders():
    """A region's channels all go to the baseline; lerf flips in the reverse order."""
    helpers.seeded(1)
    model = keras.Sequential([keras.Input((4, 4, 3)), layers.Flatten(), layers.Dense(2)])
    x = helpers.data((4, 4, 3), seed=10, batch=2)
    attributions = helpers.data((4, 4, 3), seed=11, batch=2)
    for order in ("morf", "lerf"):
        curve = kx.metrics.pixel_flipping(
            model, x, attributions, 1, region=2, steps=4, order=order, baseline=0.5
        )
        totals = attributions.sum(axis=-1).reshape(2, 2, 2, 2, 2).sum(axis=(2, 4))
        expected = np.empty((2, 5))
        for b in range(2):
            ranking = np.argsort(-totals[b].ravel() if order == "morf" else totals[b].ravel())
            copy = x[b].copy()
            expected[b, 0] = scores_of(model, copy[None], 1)[0]
            for step, region in enumerate(ranking):
                row, column = divmod(int(region), 2)
                copy[2 * row : 2 * row + 2, 2 * column : 2 * column + 2, :] = 0.5
                expected[b, step + 1] = scores_of(model, copy[None], 1)[0]
        np.testing.assert_allclose(curve.scores, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            curve.aopc, np.mean(expected[:, :1] - expected, axis=1), rtol=1e-5, atol=1e-5
        )


def ordered_reference(model, x, attributions, target, baseline, steps, insert):
    """Deletion/insertion one copy at a time: the top floor(k n / steps) features change."""
    maps = attributions.sum(axis=-1) if x.ndim > 2 else attributions
    features = maps[0].size
    rows = []
    for b in range(len(x)):
        order = np.argsort(-maps[b].ravel(), kind="stable")
        row = []
        for k in range(steps + 1):
            chosen = np.zeros(features, bool)
            chosen[order[: k * features // steps]] = True
            chosen = chosen.reshape(maps[b].shape)
            if x.ndim > 2:
                chosen = chosen[..., None]
            copy = (
                np.where(chosen, x[b], baseline[b])
                if insert
                else np.where(chosen, baseline[b], x[b])
            )
            row.append(copy)
        rows.append(row)
    copies = np.asarray(rows, np.float32)
    flat = copies.reshape(-1, *x.shape[1:])
    indices = np.repeat(np.broadcast_to(target, (len(x),)), steps + 1)
    return helpers.selected(model, flat, indices).reshape(len(x), steps + 1)


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_deletion_and_insertion_against_a_numpy_loop(conv_model, kind):
    x = helpers.data((8, 8, 2), seed=12)
    attributions = helpers.data((8, 8, 2), seed=13)
    target = np.array([0, 1, 2, 3])
    constant = np.full_like(x, 0.3)
    blurred = helpers.gaussian_blur_reference(x, 5.0).astype(np.float32)
    means = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    for baseline, values in ((0.3, constant), ("blur", blurred), ("mean", means)):
        function = getattr(kx.metrics, kind)
        curve = function(conv_model, x, attributions, target, baseline=baseline, steps=7)
        expected = ordered_reference(
            conv_model, x, attributions, target, values, 7, kind == "insertion"
        )
        np.testing.assert_allclose(curve.scores, expected, rtol=1e-4, atol=1e-4)
        ends = (scores_of(conv_model, x, target), scores_of(conv_model, values, target))
        first, last = ends if kind == "deletion" else ends[::-1]
        np.testing.assert_allclose(curve.scores[:, 0], first, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(curve.scores[:, -1], last, rtol=1e-4, atol=1e-4)
        fractions = np.arange(8) * 64 // 7 / 64
        auc = np.sum((expected[:, 1:] + expected[:, :-1]) / 2 * np.diff(fractions), axis=1)
        np.testing.assert_allclose(curve.auc, auc, rtol=1e-4, atol=1e-4)


def test_deletion_probabilities_tabular_and_callables(dense_model):
    """probabilities=True scores the softmax; a numpy callable gives the Keras model's curve."""
    x = helpers.data((6,), seed=14)
    attributions = helpers.data((6,), seed=15)
    baseline = helpers.data((6,), seed=16, batch=1)[0]
    curve = kx.metrics.deletion(
        dense_model, x, attributions, 2, baseline=baseline, steps=6, probabilities=True
    )
    expected = ordered_reference(
        dense_model, x, attributions, 2, np.broadcast_to(baseline, x.shape), 6, False
    )  # dense_model ends in a softmax: its outputs are the probabilities
    np.testing.assert_allclose(curve.scores, expected, rtol=1e-5, atol=1e-6)

    def predict(batch):
        return dense_model(batch).numpy()

    hosted = kx.metrics.deletion(
        predict, x, attributions, 2, baseline=baseline, steps=6
    )  # a callable's output is used as is: the probabilities
    np.testing.assert_allclose(hosted.scores, expected, rtol=1e-5, atol=1e-6)
    logits = kx.metrics.deletion(dense_model, x, attributions, 2, baseline=baseline, steps=6)
    assert not np.allclose(logits.scores, expected)  # the softmax is stripped by default


def test_cam_maps_broadcast_over_channels(conv_model):
    x = helpers.data((8, 8, 2), seed=17)
    maps = helpers.data((8, 8), seed=18)
    from_maps = kx.metrics.deletion(conv_model, x, maps, 0, steps=5)
    from_images = kx.metrics.deletion(conv_model, x, np.repeat(maps[..., None], 2, -1), 0, steps=5)
    np.testing.assert_array_equal(from_maps.scores, from_images.scores)
    gap = kx.metrics.completeness(conv_model, x, maps, 0)
    expected = 2 * maps.sum(axis=(1, 2)) - (
        scores_of(conv_model, x, 0) - scores_of(conv_model, np.zeros_like(x), 0)
    )
    np.testing.assert_allclose(gap, expected, rtol=1e-4, atol=1e-4)


# =====================================================================================
# Faithfulness correlation, completeness
# =====================================================================================
def test_faithfulness_correlation_is_one_for_exact_linear_attributions():
    """On f = w.x + b, f(x) - f(x_S<-x') = sum_S w (x - x'), so a = w (x - x') correlates at 1."""
    model = linear_model()
    x = helpers.data((6,), seed=19)
    weights = model.get_weights()[0][:, 1]
    exact = weights * (x - 0.2)
    for attributions, expected in ((exact, 1.0), (-exact, -1.0)):
        result = kx.metrics.faithfulness_correlation(
            model, x, attributions, 1, subset=0.5, samples=30, baseline=0.2
        )
        np.testing.assert_allclose(result, expected, atol=1e-5)
    noisy = exact + helpers.data((6,), seed=20)
    result = kx.metrics.faithfulness_correlation(model, x, noisy, 1, samples=30, baseline=0.2)
    assert np.all(result < 0.999)  # any other attribution correlates less


def test_completeness_against_the_model():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=21)
    attributions = helpers.data((8, 8, 2), seed=22)
    gap = kx.metrics.completeness(model, x, attributions, 3, baseline=0.5)
    expected = attributions.sum(axis=(1, 2, 3)) - (
        scores_of(model, x, 3) - scores_of(model, np.full_like(x, 0.5), 3)
    )
    np.testing.assert_allclose(gap, expected, rtol=1e-4, atol=1e-4)


def test_the_faithfulness_correlation_column_is_the_function(logit_model):
    x = helpers.data((6,), seed=4, batch=5)
    relevance = kx.Gradient(logit_model).analyze(x, 1)
    row = kx.metrics.evaluate(
        ["gradient"], logit_model, x, 1, metrics=["faithfulness_correlation"], seed=3, verbose=0
    )[0]
    direct = kx.metrics.faithfulness_correlation(logit_model, x, relevance, 1, seed=3)
    assert row["faithfulness_correlation"] == pytest.approx(float(np.nanmean(direct)), rel=1e-6)
