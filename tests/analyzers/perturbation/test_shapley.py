"""Shapley value sampling: exact enumeration, efficiency, and the estimator tested as sampling.

Shapley value sampling with 7 feature groups (7! = 5040 orders) and 64 sampled
orders: the exact Shapley values and the exact variance of each group's marginal
contribution come from enumerating all 5040 orders (numpy, from the 2**7 coalition
values), and each estimate must lie within 4 standard errors, ``4 σ / √K``; with
antithetic pairs the standard error is that of the mean of K/2 pair means. A fixed
seed makes every check deterministic; the bounds say why a correct sampler passes and
why a broken one (one repeated order, wrong pairing) cannot.
"""

import helpers
import keras
import numpy as np
import pytest
from helpers import K_SIGMA

import keras_explain as kx


def test_shapley_exact_enumeration_and_efficiency():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), seed=4, batch=3)
    mask = np.array([0, 0, 1, 2, 3, 3])
    baseline = np.linspace(-0.5, 0.5, 6).astype("float32")

    def f(batch):
        return model(batch).numpy()[:, 2]

    expected = helpers.exact_shapley(f, x, baseline, mask, 4)
    analyzer = kx.ShapleySampling(model, samples=24, feature_mask=mask, baseline=baseline)
    result = analyzer.analyze(x, target=2)
    np.testing.assert_allclose(result[:, [0, 2, 3, 4]], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result[:, 0], result[:, 1])
    np.testing.assert_allclose(result[:, [0, 2, 3, 4]].sum(1), f(x) - f(baseline[None]), rtol=1e-5)
    # samples >= 4! = 24 enumerates every order: the seed cannot matter. (Sampling with
    # fewer samples than orders is tested below, in this file.)
    for seed in (1, 2):
        again = kx.ShapleySampling(
            model, samples=24, feature_mask=mask, baseline=baseline, seed=seed
        ).analyze(x, target=2)
        np.testing.assert_array_equal(again, result)


def test_shapley_efficiency_on_images_with_few_samples():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=5, batch=2)
    mask = np.arange(64).reshape(8, 8) // 8  # 8 row groups spanning both channels
    result = kx.ShapleySampling(model, samples=5, feature_mask=mask, seed=3).analyze(x, target=1)
    values = result[:, ::1, 0, 0]  # one value per row group
    difference = model(x).numpy()[:, 1] - model(np.zeros_like(x)).numpy()[:, 1]
    np.testing.assert_allclose(values.sum(1), difference, rtol=1e-4, atol=1e-5)
    assert np.all(result == result[:, :, :1, :1])  # every element of a group gets its value


def test_shapley_superpixels_and_sklearn_pipeline():
    pytest.importorskip("skimage")
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=6, batch=2)
    result = kx.ShapleySampling(model, samples=4, segmentation="slic", seed=0).analyze(x)
    assert result.shape == x.shape and np.isfinite(result).all()

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = helpers.data((6,), seed=7, batch=60)
    labels = (data[:, 0] > 0).astype(int) + (data[:, 1] > 0)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(data, labels)
    rows = data[:3]
    result = kx.create_analyzer(
        "shapley_sampling", pipeline.predict_proba, samples=6, seed=0
    ).analyze(rows)
    probabilities = pipeline.predict_proba(rows)
    chosen = probabilities.argmax(1)
    empty = pipeline.predict_proba(np.zeros_like(rows))[np.arange(3), chosen]
    np.testing.assert_allclose(result.sum(1), probabilities.max(1) - empty, atol=1e-5)


def test_same_seed_same_result():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=8, batch=2)
    for cls, kwargs in (
        (kx.RISE, {"samples": 40, "cells": 3}),
        (kx.ShapleySampling, {"samples": 3}),
    ):
        first = cls(model, seed=11, **kwargs).analyze(x)
        np.testing.assert_array_equal(first, cls(model, seed=11, **kwargs).analyze(x))
        assert not np.allclose(first, cls(model, seed=12, **kwargs).analyze(x))


def seven_feature_model(seed=0):
    """A small non-linear model on 7 features: every group interacts with the others."""
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((7,)),
            keras.layers.Dense(12, activation="tanh"),
            keras.layers.Dense(3),
        ],
        name="seven_features",
    )
    return helpers.randomize(model, seed, scale=0.5)


@pytest.fixture(scope="module")
def shapley_problem():
    model = seven_feature_model()
    x = helpers.data((7,), seed=5, batch=3)
    baseline = np.linspace(-0.3, 0.3, 7).astype("float32")
    mask = np.arange(7)

    def f(batch):
        return model(batch).numpy()[:, 1]

    values = helpers.coalition_values(f, x, baseline, mask, 7)
    marginals, orders = helpers.permutation_marginals(values, 7)  # (5040, B, 7)
    return model, x, baseline, f, marginals, orders


def test_the_exact_reference_is_the_subset_formula(shapley_problem):
    model, x, baseline, f, marginals, _ = shapley_problem
    exact = helpers.exact_shapley(f, x, baseline, np.arange(7), 7)
    np.testing.assert_allclose(marginals.mean(0), exact, rtol=1e-9, atol=1e-12)
    # every group's contribution depends on the order, far above float32 round-off
    assert marginals.std(0).min() > 1e-4


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_shapley_sampling_is_within_its_standard_error(shapley_problem, antithetic, seed):
    model, x, baseline, f, marginals, orders = shapley_problem
    samples = 64  # far fewer than 7! = 5040 orders: the orders are sampled
    exact = marginals.mean(0)
    if antithetic:
        # mean of K/2 independent pair means (order, reversed order)
        reverse = {tuple(order): index for index, order in enumerate(orders)}
        partner = np.array([reverse[tuple(order[::-1])] for order in orders])
        pair_means = (marginals + marginals[partner]) / 2
        standard_error = pair_means.std(0) / np.sqrt(samples // 2)
    else:
        standard_error = marginals.std(0) / np.sqrt(samples)
    analyzer = kx.ShapleySampling(
        model, samples=samples, baseline=baseline, antithetic=antithetic, seed=seed
    )
    estimate = analyzer.analyze(x, target=1)
    z = np.abs(estimate - exact) / standard_error
    print(f"antithetic={antithetic} seed={seed}: largest |error| / standard error {z.max():.2f}")
    assert z.max() < K_SIGMA
    assert np.abs(estimate - exact).max() > 1e-4  # sampled, not enumerated
    # efficiency holds for any set of orders (every order telescopes)
    np.testing.assert_allclose(estimate.sum(1), f(x) - f(baseline[None]), rtol=1e-4, atol=1e-5)
    # the same seed gives the same orders
    again = kx.ShapleySampling(
        model, samples=samples, baseline=baseline, antithetic=antithetic, seed=seed
    ).analyze(x, target=1)
    np.testing.assert_array_equal(again, estimate)


def test_antithetic_orders_come_in_reversed_pairs():
    """With antithetic pairs, the marginal contributions of an order and its reverse are
    averaged: on an additive model plus one pairwise interaction, each pair splits the
    interaction exactly in half, so every estimate is exact; independent orders are not."""

    # f(x) = sum(x) + x0 * x1 (baseline 0): the interaction goes to whichever of groups
    # 0 and 1 comes second in an order, and to the other one in the reversed order.
    def f(batch):
        batch = np.asarray(batch)
        return np.stack([batch.sum(1) + batch[:, 0] * batch[:, 1]] * 2, 1)

    x = np.array([[1.0, 2.0, 0.5, -1.0, 0.3, 0.7, 1.5]], "float32")
    exact = x[0] + np.r_[x[0, 0] * x[0, 1] / 2, x[0, 0] * x[0, 1] / 2, np.zeros(5)]
    paired = kx.ShapleySampling(f, samples=6, antithetic=True, seed=3).analyze(x, 0)
    np.testing.assert_allclose(paired[0], exact, rtol=1e-6)
    single = kx.ShapleySampling(f, samples=6, antithetic=False, seed=3).analyze(x, 0)
    assert np.abs(single[0] - exact).max() > 0.1
