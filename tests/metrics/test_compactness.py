"""Complexity (Bhatt et al. 2020) and effective complexity (Nguyen & Martinez 2020), by hand.

The conventions were checked against Quantus 0.6.0 ``Complexity`` and
``EffectiveComplexity`` on the same arrays (agreement to float32 rounding; Quantus
normalises by the largest value of the whole batch, we per sample).
"""

import math

import helpers
import numpy as np
import pytest

import keras_explain as kx


# =====================================================================================
# Complexity: the entropy of |a_i| / sum |a|
# =====================================================================================
def entropy_reference(attributions):
    """-sum p_i log p_i with p_i = |a_i| / sum_j |a_j|, one element at a time (0 log 0 = 0)."""
    values = []
    for sample in attributions:
        flat = [abs(float(v)) for v in np.ravel(sample)]
        total = sum(flat)
        if total == 0:
            values.append(np.nan)
            continue
        values.append(-sum(v / total * math.log(v / total) for v in flat if v > 0))
    return np.array(values)


def test_complexity_closed_forms():
    d = 12
    uniform = np.full((1, 3, 4), -0.7)  # log d, whatever the sign and the scale
    one_hot = np.zeros((1, 3, 4))
    one_hot[0, 1, 2] = 5.0
    halves = np.zeros((1, 3, 4))
    halves[0, 0, :2] = [2.0, -2.0]
    got = kx.metrics.complexity(np.concatenate([uniform, one_hot, halves]))
    np.testing.assert_allclose(got, [math.log(d), 0.0, math.log(2)], atol=1e-6)
    # scaling and signs do not matter
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 4, 4, 3))
    np.testing.assert_allclose(kx.metrics.complexity(-3.0 * a), kx.metrics.complexity(a), rtol=1e-6)
    assert np.isnan(kx.metrics.complexity(np.zeros((1, 4)))[0])


def test_complexity_matches_the_definition_and_random_maps_are_complex():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 6, 5, 2)) * rng.random((4, 6, 5, 2)) ** 3
    a[0, :3] = 0.0  # zeros contribute 0 log 0 = 0
    np.testing.assert_allclose(kx.metrics.complexity(a), entropy_reference(a), rtol=1e-6)
    # Gaussian attributions are close to the maximum log d (a bad, spread explanation) ...
    spread = kx.metrics.complexity(rng.normal(size=(20, 256)))
    assert np.all(spread > math.log(256) - 0.4)
    # ... and a concentrated one far below it
    concentrated = np.zeros((20, 256))
    concentrated[:, :4] = rng.normal(size=(20, 4))
    assert np.all(kx.metrics.complexity(concentrated) <= math.log(4) + 1e-6)


# =====================================================================================
# Effective complexity: #{|a_i| > eps}
# =====================================================================================
def count_reference(attributions, eps, normalize):
    values = []
    for sample in attributions:
        flat = [abs(float(v)) for v in np.ravel(sample)]
        largest = max(flat)
        if normalize and largest > 0:
            flat = [v / largest for v in flat]
        values.append(sum(v > eps for v in flat))
    return np.array(values, dtype=float)


@pytest.mark.parametrize("eps", [0.0, 1e-5, 0.3])
@pytest.mark.parametrize("normalize", [False, True])
def test_effective_complexity_matches_the_definition(eps, normalize):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 5, 5, 3)) * 0.4
    a[1] = 0.0
    a[2, :2] = 0.0
    got = kx.metrics.effective_complexity(a, eps=eps, normalize=normalize)
    np.testing.assert_array_equal(got, count_reference(a, eps, normalize))


def test_effective_complexity_closed_forms():
    one_hot = np.zeros((1, 50))
    one_hot[0, 7] = -1e-3
    uniform = np.full((1, 50), 1e-3)
    a = np.concatenate([one_hot, uniform])
    # relative to the largest |a|: 1 and d, whatever the scale
    np.testing.assert_array_equal(kx.metrics.effective_complexity(a), [1, 50])
    np.testing.assert_array_equal(kx.metrics.effective_complexity(a * 1e6), [1, 50])
    # absolute: the values 1e-3 are below eps = 0.01
    np.testing.assert_array_equal(
        kx.metrics.effective_complexity(a, eps=0.01, normalize=False), [0, 0]
    )
    # eps = 0 counts the non-zero elements; all-zero attributions count 0
    np.testing.assert_array_equal(kx.metrics.effective_complexity(np.zeros((2, 3)), eps=0), 0)


# =====================================================================================
# Input validation and the registered columns
# =====================================================================================
def test_complexity_metrics_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"complexity needs a batch .* shape \(4,\)"):
        kx.metrics.complexity(np.ones(4))
    with pytest.raises(ValueError, match=r"effective_complexity: eps must be >= 0. Received: eps"):
        kx.metrics.effective_complexity(np.ones((1, 4)), eps=-1.0)
    with pytest.raises(TypeError, match=r"effective_complexity: normalize must be True or False"):
        kx.metrics.effective_complexity(np.ones((1, 4)), normalize=None)


def test_registered_columns_are_the_functions():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=4)
    names = ["complexity", "effective_complexity"]
    for name in names:
        metric = kx.metrics.registry.get_metric(name)
        assert (metric.better, metric.needs_masks, metric.default) == ("lower", False, False)
        assert name not in kx.metrics.registry.default_metrics(masks=False)
    (row,) = kx.metrics.evaluate({"gradient": {}}, model, x, metrics=names, verbose=0)
    relevance = kx.Gradient(model).analyze(x)
    assert row["complexity"] == pytest.approx(
        float(np.nanmean(kx.metrics.complexity(relevance))), rel=1e-6
    )
    assert row["effective_complexity"] == float(np.mean(kx.metrics.effective_complexity(relevance)))
