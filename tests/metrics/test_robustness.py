"""Sensitivity-max against a tape reference and closed forms."""

import helpers
import numpy as np
from helpers import linear_dense_model as linear_model

import keras_explain as kx


# =====================================================================================
# Sensitivity
# =====================================================================================
def test_gradient_of_a_linear_model_has_sensitivity_zero():
    model = linear_model()
    x = helpers.data((6,), seed=7)
    result = kx.metrics.sensitivity_max(kx.Gradient(model), x, noise_scale=0.5)
    np.testing.assert_array_equal(result, np.zeros(len(x)))


def test_sensitivity_max_against_a_tape_reference(logit_model):
    x = helpers.data((6,), seed=9)  # non-zero clean gradients
    samples = 4
    delta = np.random.default_rng(9).uniform(-0.3, 0.3, (len(x) * samples, 6)).astype("float32")
    result = kx.metrics.sensitivity_max(
        kx.Gradient(logit_model), x, 1, samples=samples, perturbation=lambda inputs: delta
    )
    clean = helpers.tape_gradient(logit_model, x, 1).astype(np.float64)
    noisy = helpers.tape_gradient(logit_model, np.repeat(x, samples, axis=0) + delta, 1)
    expected = [
        max(
            np.linalg.norm(noisy[b * samples + s] - clean[b]) / np.linalg.norm(clean[b])
            for s in range(samples)
        )
        for b in range(len(x))
    ]
    assert np.max(expected) > 0.01  # the ReLUs switch: a non-trivial value
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


def test_sensitivity_max_of_a_callable_and_a_zero_explanation():
    """Captum divides by 1 where ||e(x)|| = 0; any explain(x, target) callable is accepted."""
    x = np.zeros((2, 3), "float32")
    delta = np.random.default_rng(10).uniform(-1, 1, (6, 3)).astype("float32")
    result = kx.metrics.sensitivity_max(
        lambda inputs, target: inputs**2, x, samples=3, perturbation=lambda inputs: delta
    )
    expected = np.linalg.norm(delta.astype(np.float64) ** 2, axis=1).reshape(2, 3).max(axis=1)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_sensitivity_max_fixes_the_clean_argmax():
    """target=None explains the clean prediction at every noisy copy, not each copy's argmax."""
    model = linear_model(inputs=2, outputs=2, bias=False)
    model.set_weights([np.array([[1.0, -1.0], [0.0, 0.0]], "float32")])
    x = np.array([[0.01, 0.0]], "float32")  # class 0; noise of radius 0.5 flips it often
    result = kx.metrics.sensitivity_max(kx.Gradient(model), x, noise_scale=0.5, samples=16)
    np.testing.assert_array_equal(result, [0.0])
