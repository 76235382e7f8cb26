"""Influence functions on L2-regularized logistic regression: closed form and leave-one-out."""

import helpers
import keras
import numpy as np
import pytest
from scipy import optimize, stats

import keras_explain as kx

LOSS = keras.losses.BinaryCrossentropy(from_logits=True)
L2 = 0.01  # Keras' L2(l2) adds l2 * sum(w²) to the mean loss


def logistic_data(n=120, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    w = rng.normal(size=features)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ w)))).astype(np.float64)
    return x, y


def objective(theta, x, y, weights):
    """``sum_i weights_i L_i / n + L2 |w|²`` and its gradient, in float64 (bias last)."""
    w, b = theta[:-1], theta[-1]
    z = x @ w + b
    losses = np.logaddexp(0, z) - y * z
    p = 1 / (1 + np.exp(-z))
    n = len(x)
    value = (weights * losses).sum() / n + L2 * (w @ w)
    grad_z = weights * (p - y) / n
    return value, np.concatenate([x.T @ grad_z + 2 * L2 * w, [grad_z.sum()]])


def fitted(x, y, weights=None, start=None):
    weights = np.ones(len(x)) if weights is None else weights
    start = np.zeros(x.shape[1] + 1) if start is None else start
    result = optimize.minimize(
        objective,
        start,
        (x, y, weights),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000},
    )
    return result.x


def keras_logistic(theta):
    helpers.seeded(0)
    model = keras.Sequential(
        [
            keras.Input((len(theta) - 1,)),
            keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(L2)),
        ]
    )
    model.set_weights([theta[:-1, None].astype("float32"), theta[-1:].astype("float32")])
    return model


def closed_form(theta, x, y, x_test, y_test):
    """Koh & Liang's g_testᵀ H⁻¹ g_i with H = mean p(1-p) x̃x̃ᵀ + 2 L2 (kernel only)."""
    tilde = np.hstack([x, np.ones((len(x), 1))])
    test_tilde = np.hstack([x_test, np.ones((len(x_test), 1))])
    p = 1 / (1 + np.exp(-(tilde @ theta)))
    hessian = (tilde * (p * (1 - p))[:, None]).T @ tilde / len(x)
    hessian += np.diag([2 * L2] * x.shape[1] + [0.0])
    gradients = tilde * (p - y)[:, None]
    test_p = 1 / (1 + np.exp(-(test_tilde @ theta)))
    test_gradients = test_tilde * (test_p - y_test)[:, None]
    return test_gradients @ np.linalg.solve(hessian, gradients.T), gradients, hessian


def test_exact_hessian_equals_the_closed_form():
    x, y = logistic_data()
    theta = fitted(x, y)
    model = keras_logistic(theta)
    function = kx.influence.InfluenceFunction(model, (x.astype("float32"), y[:, None]), loss=LOSS)
    expected, gradients, hessian = closed_form(theta, x, y, x[:4], y[:4])
    np.testing.assert_allclose(function.influence(x[:4], y[:4, None]), expected, rtol=2e-4)
    self_expected = np.einsum("ip,pi->i", gradients, np.linalg.solve(hessian, gradients.T))
    np.testing.assert_allclose(function.self_influence(), self_expected, rtol=2e-4)
    # Arnoldi with a full Krylov space (6 parameters) is the exact inverse
    arnoldi = kx.influence.InfluenceFunction(
        model,
        (x.astype("float32"), y[:, None]),
        loss=LOSS,
        hessian="arnoldi",
        arnoldi_dim=6,
        projection_dim=6,
    )
    np.testing.assert_allclose(arnoldi.influence(x[:4], y[:4, None]), expected, rtol=2e-4)


def test_predicted_loss_changes_match_leave_one_out_retraining():
    """Koh & Liang's Figure 2: the 50 most influential removals, retrained one by one."""
    x, y = logistic_data(n=120, seed=1)
    theta = fitted(x, y)
    model = keras_logistic(theta)
    x_test, y_test = x[:1] + 0.5, 1 - y[:1]  # a test point the model gets partly wrong
    function = kx.influence.InfluenceFunction(model, (x.astype("float32"), y[:, None]), loss=LOSS)
    predicted = function.influence(x_test, y_test[:, None])[0] / len(x)

    def test_loss(parameters):
        z = float((x_test @ parameters[:-1])[0] + parameters[-1])
        return float(np.logaddexp(0, z) - y_test[0] * z)

    removed = np.argsort(-np.abs(predicted))[:50]
    actual = []
    for i in removed:
        weights = np.ones(len(x))
        weights[i] = 0.0  # removing example i: its loss term dropped from the sum
        actual.append(test_loss(fitted(x, y, weights, start=theta)) - test_loss(theta))
    correlation = stats.pearsonr(predicted[removed], actual).statistic
    assert correlation >= 0.95, correlation
    np.testing.assert_allclose(predicted[removed], actual, rtol=0.25, atol=1e-5)


def test_bad_input_is_named():
    x, y = logistic_data(n=20)
    model = keras_logistic(np.zeros(6))
    train = (x.astype("float32"), y[:, None])
    with pytest.raises(ValueError, match=r"InfluenceFunction: Unknown hessian. Received"):
        kx.influence.InfluenceFunction(model, train, loss=LOSS, hessian="lissa")
    with pytest.raises(ValueError, match=r"InfluenceFunction: damping must be"):
        kx.influence.InfluenceFunction(model, train, loss=LOSS, damping=-1.0)
    helpers.seeded(0)
    big = keras.Sequential([keras.Input((80,)), keras.layers.Dense(60), keras.layers.Dense(1)])
    with pytest.raises(
        ValueError,
        match=r"InfluenceFunction: the exact Hessian of 4921 parameters is too large \(at most "
        r"4096\). Received: layers=None. Pass layers=",
    ):
        kx.influence.InfluenceFunction(big, (np.zeros((4, 80)), np.zeros((4, 1))), loss=LOSS)
    helpers.seeded(0)
    plain = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])  # no regularization
    plain.set_weights([np.zeros((5, 1), "float32"), np.zeros(1, "float32")])
    duplicated = (np.repeat(x[:2], 10, 0).astype("float32"), np.repeat(y[:2, None], 10, 0))
    singular = kx.influence.InfluenceFunction(plain, duplicated, loss=LOSS)
    with pytest.raises(ValueError, match=r"InfluenceFunction: the Hessian is singular"):
        singular.self_influence()


def test_negative_eigenvalues_are_inverted_with_a_warning():
    """A tanh network's Hessian over every layer at random weights is indefinite."""
    helpers.seeded(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(3)]
    )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype("float32"), rng.integers(0, 3, 40)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    function = kx.influence.InfluenceFunction(model, (x, y), loss=loss, damping=0.01)
    with pytest.warns(
        RuntimeWarning,
        match=r"InfluenceFunction: the Hessian plus damping has \d+ "
        r"negative eigenvalue\(s\) \(smallest -",
    ):
        scores = function.influence(x[:2], y[:2])
    values, vectors = function._eigen
    assert values.min() < 0
    gradients = function.gradients.features(iter([(x, y)])).full  # coordinates in the basis
    np.testing.assert_allclose(scores, (gradients[:2] / values) @ gradients.T, rtol=1e-4)
