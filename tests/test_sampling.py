"""Sampled estimators tested as sampling: against exact values, within bounds from the sample count.

- Shapley value sampling with 7 feature groups (7! = 5040 orders) and 64 sampled
  orders: the exact Shapley values and the exact variance of each group's marginal
  contribution come from enumerating all 5040 orders (numpy, from the 2**7 coalition
  values), and each estimate must lie within 4 standard errors, ``4 σ / √K``; with
  antithetic pairs the standard error is that of the mean of K/2 pair means.
- KernelSHAP on a linear model with 12 features and 60 sampled coalitions (of 4096):
  exact for every sample of coalitions, whatever the seed.
- RISE: the masks a model receives are recovered and each is shown to be a bilinearly
  upsampled binary grid cropped at a shift of less than one cell; the share of kept
  cells and the shifts match their distributions within bounds from the mask count,
  and a constant model's saliency is within its standard error of the constant.

A fixed seed makes every check deterministic; the bounds say why a correct sampler
passes and why a broken one (one repeated order, wrong pairing, wrong probability, no
shift) cannot.
"""

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

# Four standard errors: under the central limit theorem a correct estimator leaves this
# band with probability 6e-5 per check (about 1e-3 over the 21 checks of one test).
K_SIGMA = 4.0


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


# -- KernelSHAP ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 7])
def test_kernel_shap_is_exact_on_a_linear_model_with_sampled_coalitions(seed):
    pytest.importorskip("shap")
    rng = np.random.default_rng(1)
    weights = rng.normal(size=12)
    inputs = keras.Input((12,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([weights[:, None].astype("float32"), np.array([0.4], "float32")])
    background = rng.normal(size=(8, 12)).astype("float32")
    x = rng.normal(size=(3, 12)).astype("float32")
    # 60 of the 2**12 = 4096 coalitions: the regression is still exact for an additive
    # model, whatever coalitions the seed draws
    values = kx.KernelShap(model, background=background, samples=60, seed=seed).analyze(x, 0)
    np.testing.assert_allclose(values, weights * (x - background.mean(0)), rtol=1e-4, atol=1e-4)


# -- RISE -----------------------------------------------------------------------------------
def bilinear_basis(cells, size, shift, length):
    """(length**2, cells**2): mask = basis @ grid for one crop shift (numpy, half-pixel)."""
    columns = []
    for index in range(cells * cells):
        grid = np.zeros((1, cells, cells))
        grid.flat[index] = 1.0
        up = helpers.resize_reference(grid, (size, size))[0]
        columns.append(up[shift[0] : shift[0] + length, shift[1] : shift[1] + length].ravel())
    return np.stack(columns, 1)


def recorded_rise_masks(samples, cells, probability, seed, length=8):
    """The masks RISE applies, recovered from what a callable model receives (x = 1)."""
    recorded = []

    def constant(z):
        recorded.append(np.asarray(z).copy())
        return np.full((len(z), 2), 3.0)

    x = np.ones((1, length, length, 1), "float32")
    saliency = kx.RISE(
        constant, samples=samples, cells=cells, probability=probability, seed=seed
    ).analyze(x, 0)
    masks = np.concatenate(recorded)[-samples:, :, :, 0]  # baseline 0, x = 1: copy = mask
    return masks, saliency[0, :, :, 0]


def test_rise_masks_are_shifted_upsampled_binary_grids_with_the_right_statistics():
    samples, cells, probability, length = 300, 3, 0.3, 8
    cell = -(-length // cells)  # 3: grids are upsampled to (cells + 1) * cell = 12
    masks, saliency = recorded_rise_masks(samples, cells, probability, seed=4, length=length)
    bases = {
        (dy, dx): bilinear_basis(cells, (cells + 1) * cell, (dy, dx), length)
        for dy in range(cell)
        for dx in range(cell)
    }
    grids, shifts = [], []
    for mask in masks:
        fits = []
        for shift, basis in bases.items():
            grid, *_ = np.linalg.lstsq(basis, mask.ravel(), rcond=None)
            binary = np.round(grid)
            if np.abs(basis @ binary - mask.ravel()).max() < 1e-5 and set(binary) <= {0, 1}:
                fits.append((shift, binary))
        assert fits, "a mask that is no shifted upsampled binary grid"
        grids.append(fits[0][1])
        if 0 < fits[0][1].sum() < cells * cells and len(fits) == 1:
            shifts.append(fits[0][0])
    grids = np.array(grids)
    # each cell is kept with probability p: binomial over samples * cells**2 cells
    kept = grids.mean()
    assert abs(kept - probability) < K_SIGMA * np.sqrt(probability * (1 - probability) / grids.size)
    # the crop shift is uniform over 0 .. cell - 1 on each axis
    shifts = np.array(shifts)
    assert len(shifts) > samples // 2
    for axis in range(2):
        counts = np.bincount(shifts[:, axis], minlength=cell)
        n = len(shifts)
        assert np.all(
            np.abs(counts - n / cell) < K_SIGMA * np.sqrt(n * (1 / cell) * (1 - 1 / cell))
        )
    # a constant score c gives saliency c * mean(M) / p: E[M(u)] = p and Var[M(u)] <= p(1-p),
    # so each pixel is within 4 standard errors of c
    np.testing.assert_allclose(saliency, 3.0 * masks.mean(0) / probability, rtol=1e-5)
    bound = K_SIGMA * 3.0 * np.sqrt(probability * (1 - probability) / samples) / probability
    assert np.abs(saliency - 3.0).max() < bound
