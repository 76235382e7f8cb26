"""Consistency and sufficiency (Dasgupta et al. 2022) against loops over pairs of samples."""

import helpers
import numpy as np
import pytest

import keras_explain as kx
from keras_explain.metrics import registry


def predicted(model, x):
    return np.argmax(model(np.asarray(x, np.float32)).numpy(), axis=1)


def agreement_reference(related, classes):
    """Per sample: among the other samples related to it, the share with its class."""
    values = []
    for i in range(len(classes)):
        others = [j for j in range(len(classes)) if j != i and related(i, j)]
        same = [j for j in others if classes[j] == classes[i]]
        values.append(len(same) / len(others) if others else np.nan)
    return np.array(values)


# =====================================================================================
# Consistency
# =====================================================================================
def top_k_key(row, k, signs):
    """The explanation as a set: the k features of largest |a| (first ones on ties)."""
    chosen = sorted(range(len(row)), key=lambda f: (-abs(row[f]), f))[:k]
    return frozenset((f, np.sign(row[f]) if signs else 0) for f in chosen)


@pytest.mark.parametrize(
    ("discretisation", "k"), [("top_k_sign", 2), ("top_k", 2), ("top_k", 1), ("sign", 5)]
)
def test_consistency_against_a_loop_over_pairs(discretisation, k):
    model = helpers.linear_dense_model(inputs=4, outputs=3)
    x = helpers.data((4,), seed=1, batch=30)
    attributions = helpers.data((4,), seed=2, batch=30)
    attributions[::3, 1] = 0.0  # some signs 0
    result = kx.metrics.consistency(model, x, attributions, discretisation=discretisation, k=k)
    if discretisation == "sign":
        keys = [tuple(np.sign(row)) for row in attributions]
    else:
        keys = [top_k_key(row, k, discretisation == "top_k_sign") for row in attributions]
    expected = agreement_reference(lambda i, j: keys[i] == keys[j], predicted(model, x))
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_consistency_closed_forms_and_random_explanations():
    """One key for the whole batch: C(x) = (#same class - 1) / (B - 1). Keys that name
    the predicted class: C = 1. Keys drawn at random: well below 1."""
    model = helpers.linear_dense_model(inputs=4, outputs=3)
    x = helpers.data((4,), seed=3, batch=40)
    classes = predicted(model, x)
    same = (classes[:, None] == classes[None, :]).sum(axis=1)
    uniform = np.ones_like(x)
    np.testing.assert_allclose(
        kx.metrics.consistency(model, x, uniform, k=1), (same - 1) / 39, rtol=1e-6
    )
    naming = np.eye(4, dtype="float32")[classes]  # the top feature is the class
    np.testing.assert_array_equal(kx.metrics.consistency(model, x, naming, k=1), 1.0)
    rng = np.random.default_rng(4)
    random = np.eye(4, dtype="float32")[rng.integers(0, 4, 40)]
    assert np.nanmean(kx.metrics.consistency(model, x, random, k=1)) < 0.7


def test_consistency_of_images_uses_pixel_maps_and_depends_on_the_batch(conv_model):
    x = helpers.data((8, 8, 2), seed=5, batch=12)
    maps = np.zeros((12, 8, 8), "float32")
    maps[:, 0, 0] = 1.0
    maps[6:, 0, 0] = 0.0
    maps[6:, 7, 7] = 1.0  # two keys: the first and the last pixel
    full = np.repeat(maps[..., None], 2, axis=-1) / 2  # the same maps, summed over channels
    from_maps = kx.metrics.consistency(conv_model, x, maps, k=1)
    np.testing.assert_array_equal(kx.metrics.consistency(conv_model, x, full, k=1), from_maps)
    classes = predicted(conv_model, x)
    expected = agreement_reference(lambda i, j: (i < 6) == (j < 6), classes)
    np.testing.assert_allclose(from_maps, expected, rtol=1e-6)
    part = kx.metrics.consistency(conv_model, x[:3], maps[:3], k=1)  # other neighbours
    np.testing.assert_allclose(part, agreement_reference(lambda i, j: True, classes[:3]), rtol=1e-6)


def test_consistency_with_a_callable_key():
    model = helpers.linear_dense_model(inputs=4, outputs=3)
    x = helpers.data((4,), seed=6, batch=10)
    attributions = helpers.data((4,), seed=7, batch=10)

    def largest(row):
        return int(np.argmax(row))

    result = kx.metrics.consistency(model, x, attributions, discretisation=largest)
    keys = np.argmax(attributions, axis=1)
    expected = agreement_reference(lambda i, j: keys[i] == keys[j], predicted(model, x))
    np.testing.assert_allclose(result, expected, rtol=1e-6)


# =====================================================================================
# Sufficiency
# =====================================================================================
def sufficiency_reference(model, x, attributions, threshold, absolute, normalize, metric):
    a = attributions.reshape(len(x), -1).astype(np.float64)
    if absolute:
        a = np.abs(a)
    if normalize:
        a = a / np.abs(a).max(axis=1, keepdims=True)
    variance = a.var(axis=0, ddof=1)
    n = len(x)
    distances = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            difference = a[i] - a[j]
            if metric == "seuclidean":  # each feature in units of its spread over the batch
                kept = variance > 0
                distances[i, j] = np.sqrt(np.sum(difference[kept] ** 2 / variance[kept]))
            else:
                distances[i, j] = np.sum(np.abs(difference))
    relative = distances / distances.max()
    return agreement_reference(lambda i, j: relative[i, j] <= threshold, predicted(model, x))


@pytest.mark.parametrize(
    ("threshold", "absolute", "normalize", "metric"),
    [
        (0.6, True, True, "seuclidean"),
        (0.4, False, False, "seuclidean"),
        (0.5, True, False, "cityblock"),
    ],
)
def test_sufficiency_against_a_loop_over_pairs(threshold, absolute, normalize, metric):
    model = helpers.linear_dense_model(inputs=5, outputs=3)
    x = helpers.data((5,), seed=8, batch=30)
    attributions = helpers.data((5,), seed=9, batch=30)
    attributions[:, 4] = 2.0  # a feature constant over the batch: no spread, left out
    result = kx.metrics.sufficiency(
        model,
        x,
        attributions,
        threshold=threshold,
        distance=metric,
        absolute=absolute,
        normalize=normalize,
    )
    expected = sufficiency_reference(model, x, attributions, threshold, absolute, normalize, metric)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_sufficiency_closed_forms():
    """Threshold 1: every other sample is a neighbour, S(x) = (#same class - 1) / (B - 1).
    Explanations in one tight cluster per predicted class, far apart: S = 1."""
    model = helpers.linear_dense_model(inputs=4, outputs=3)
    x = helpers.data((4,), seed=10, batch=24)
    classes = predicted(model, x)
    same = (classes[:, None] == classes[None, :]).sum(axis=1)
    attributions = helpers.data((4,), seed=11, batch=24)
    np.testing.assert_allclose(
        kx.metrics.sufficiency(model, x, attributions, threshold=1.0), (same - 1) / 23, rtol=1e-6
    )
    noise = np.random.default_rng(12).normal(0, 0.01, (24, 4))
    clusters = np.eye(4)[classes] + noise
    values = kx.metrics.sufficiency(model, x, clusters, threshold=0.2, distance="euclidean")
    lonely = same == 1  # a class predicted once has no neighbour: NaN
    np.testing.assert_array_equal(values[~lonely], 1.0)
    assert np.all(np.isnan(values[lonely]))


def test_errors_are_pinned(logit_model):
    x = helpers.data((6,))
    with pytest.raises(ValueError, match=r"consistency compares the samples of a batch"):
        kx.metrics.consistency(logit_model, x[:1], x[:1])
    with pytest.raises(ValueError, match=r"sufficiency compares the samples of a batch"):
        kx.metrics.sufficiency(logit_model, x[:1], x[:1])
    with pytest.raises(ValueError, match=r"consistency: .*discretisation"):
        kx.metrics.consistency(logit_model, x, x, discretisation="rank")
    with pytest.raises(ValueError, match=r"consistency: .*k"):
        kx.metrics.consistency(logit_model, x, x, k=0)
    with pytest.raises(ValueError, match=r"sufficiency: threshold is a share .* in \[0, 1\]"):
        kx.metrics.sufficiency(logit_model, x, x, threshold=1.5)
    with pytest.raises(ValueError, match=r"sufficiency: attributions must be shaped like x"):
        kx.metrics.sufficiency(logit_model, x, x[:, :3])


def test_registered_columns_are_the_functions(logit_model):
    x = helpers.data((6,), seed=13, batch=20)
    attributions = helpers.data((6,), seed=14, batch=20)
    context = {"analyzer": None, "name": None, "params": {}, "masks": None, "steps": 10, "seed": 0}
    for name, function in (
        ("consistency", kx.metrics.consistency),
        ("sufficiency", kx.metrics.sufficiency),
    ):
        column = registry.metric_values(name, logit_model, x, attributions, None, **context)
        np.testing.assert_array_equal(column, function(logit_model, x, attributions))
        metric = registry.get_metric(name)
        assert metric.better == "higher" and not metric.default
    table = kx.metrics.evaluate(
        ["gradient"], logit_model, x, metrics=["consistency", "sufficiency"]
    )
    gradient = kx.Gradient(logit_model).analyze(x)
    expected = np.nanmean(kx.metrics.sufficiency(logit_model, x, gradient))
    np.testing.assert_allclose(table[0]["sufficiency"], expected, rtol=1e-6)
