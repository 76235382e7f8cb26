"""IROF and ROAD against slow numpy references written from the papers, and closed forms."""

import importlib.util

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx
from keras_explain.metrics import registry

layers = keras.layers
#: ROAD's neighbour weights (Rong et al. 2022): 1/6 direct, 1/12 diagonal.
WEIGHTS = {
    (dy, dx): (1 / 6 if dy == 0 or dx == 0 else 1 / 12)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if (dy, dx) != (0, 0)
}


def logits_of(model, x):
    return model(np.asarray(x, np.float32)).numpy().astype(np.float64)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def random_labels(seed, size=8, count=5):
    """A label map with ``count`` labels (each used), ragged superpixels."""
    labels = np.random.default_rng(seed).integers(0, count, (size, size))
    labels.ravel()[:count] = np.arange(count)
    return labels


# =====================================================================================
# IROF
# =====================================================================================
def irof_reference(model, x, attributions, target, labels, baseline, probabilities):
    """Rieger & Hansen 2020, one image and one removal at a time."""
    values = []
    for b in range(len(x)):
        label = labels[b]
        count = label.max() + 1
        maps = attributions[b].sum(axis=-1)
        means = np.array([maps[label == s].mean() for s in range(count)])
        order = np.argsort(-means, kind="stable")
        copy = x[b].astype(np.float64).copy()
        curve = []
        for step in range(count + 1):
            if step:
                copy[label == order[step - 1]] = baseline[b][label == order[step - 1]]
            z = logits_of(model, copy[None])[0]
            curve.append((softmax(z) if probabilities else z)[target[b]])
        curve = np.array(curve) / curve[0]
        t = np.arange(count + 1) / count
        area = np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(t))
        values.append(1.0 - area)
    return np.array(values)


@pytest.mark.parametrize("probabilities", [True, False])
def test_irof_against_a_numpy_loop(conv_model, probabilities):
    x = helpers.data((8, 8, 2), seed=1)
    attributions = helpers.data((8, 8, 2), seed=2)
    labels = np.stack([random_labels(seed, count=3 + seed) for seed in range(4)])  # 3..6
    target = np.array([0, 1, 2, 3])
    means = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    for baseline, values in (("mean", means), (0.25, np.full_like(x, 0.25))):
        result = kx.metrics.irof(
            conv_model,
            x,
            attributions,
            target,
            segmentation=labels,
            baseline=baseline,
            probabilities=probabilities,
        )
        expected = irof_reference(
            conv_model, x, attributions, target, labels, values, probabilities
        )
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_irof_is_largest_for_the_exact_order_on_a_linear_model():
    """f = w.x with w >= 0, x >= 0, zero baseline: removing the segments of largest
    sum w.x first makes every partial sum of the removed mass as large as possible, so
    the curve y_l = 1 - removed_l / f(x) is lowest and the area over it largest; the
    reversed order removes the complement first, y'_l = 1 - y_(L-l), so the two areas add
    up to 1."""
    helpers.seeded(0)
    model = keras.Sequential(
        [keras.Input((6, 6, 1)), layers.Flatten(), layers.Dense(1, use_bias=False)]
    )
    rng = np.random.default_rng(3)
    weights = rng.random((36, 1)).astype("float32")
    model.set_weights([weights])
    x = rng.random((2, 6, 6, 1)).astype("float32")
    labels = helpers.grid_labels(6, 2)  # 9 square superpixels of the same size
    exact = x * weights.reshape(1, 6, 6, 1)
    options = {"segmentation": labels, "baseline": 0.0, "probabilities": False}
    best = kx.metrics.irof(model, x, exact, 0, **options)
    worst = kx.metrics.irof(model, x, -exact, 0, **options)
    shuffled = [kx.metrics.irof(model, x, rng.random(x.shape), 0, **options) for _ in range(5)]
    assert np.all(best >= np.max(shuffled, axis=0) - 1e-6)
    assert np.all(worst <= np.min(shuffled, axis=0) + 1e-6)
    assert np.all(best > worst + 0.1)
    # the reversed order's curve is 1 - the exact one's, mirrored: the areas add up to 1
    np.testing.assert_allclose(best + worst, 1.0, rtol=1e-5)


def test_irof_with_scikit_image_segments_or_a_clear_import_error(conv_model):
    x = np.random.default_rng(4).random((2, 8, 8, 2)).astype("float32")
    attributions = helpers.data((8, 8, 2), seed=5, batch=2)
    if importlib.util.find_spec("skimage") is None:
        with pytest.raises(ImportError, match=r"keras-explainer\[metrics\]"):
            kx.metrics.irof(conv_model, x, attributions)
        return
    from keras_explain.analyzers.perturbation.segmentation import segment

    labels = segment(x, "slic")
    np.testing.assert_array_equal(
        kx.metrics.irof(conv_model, x, attributions),
        kx.metrics.irof(conv_model, x, attributions, segmentation=labels),
    )


def test_irof_and_road_refuse_inputs_that_are_not_images(logit_model):
    x = helpers.data((6,))
    for function in (kx.metrics.irof, kx.metrics.road):
        name = function.__name__
        with pytest.raises(ValueError, match=rf"{name} is defined on images \(B, H, W, C\) only"):
            function(logit_model, x, x)
    sequences = helpers.data((5, 3))
    with pytest.raises(ValueError, match=r"Received: x of shape \(4, 5, 3\)"):
        kx.metrics.road(lambda inputs: inputs.sum(axis=1), sequences, sequences)


# =====================================================================================
# ROAD: the imputation
# =====================================================================================
def imputation_reference(image, removed):
    """The dense system of Rong et al. (eq. 5), one equation per removed pixel, by loops."""
    height, width, channels = image.shape
    unknown = [(i, j) for i in range(height) for j in range(width) if removed[i, j]]
    index = {pixel: n for n, pixel in enumerate(unknown)}
    matrix = np.zeros((len(unknown), len(unknown)))
    right = np.zeros((len(unknown), channels))
    for n, (i, j) in enumerate(unknown):
        for (dy, dx), weight in WEIGHTS.items():
            y, x = i + dy, j + dx
            if not (0 <= y < height and 0 <= x < width):
                continue
            matrix[n, n] += weight
            if removed[y, x]:
                matrix[n, index[(y, x)]] -= weight
            else:
                right[n] += weight * image[y, x]
    solution = np.linalg.solve(matrix, right)
    result = image.astype(np.float64).copy()
    for n, (i, j) in enumerate(unknown):
        result[i, j] = solution[n]
    return result


def test_imputation_solves_the_neighbour_equations_and_keeps_the_rest():
    rng = np.random.default_rng(6)
    image = rng.normal(size=(5, 6, 2))
    removed = rng.random((5, 6)) < 0.5
    removed[0, 0] = removed[4, 5] = True  # corners: three neighbours only
    imputed = kx.metrics.noisy_linear_imputation(image, removed)
    np.testing.assert_array_equal(imputed[~removed], image[~removed])  # untouched
    for i, j in zip(*np.nonzero(removed)):  # v_i = weighted mean of its neighbours
        total, weights = np.zeros(2), 0.0
        for (dy, dx), weight in WEIGHTS.items():
            if 0 <= i + dy < 5 and 0 <= j + dx < 6:
                total += weight * imputed[i + dy, j + dx]
                weights += weight
        np.testing.assert_allclose(imputed[i, j], total / weights, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(imputed, imputation_reference(image, removed), atol=1e-12)


def test_imputation_noise_is_added_to_the_solution():
    rng = np.random.default_rng(7)
    image = rng.normal(size=(4, 4, 3))
    removed = rng.random((4, 4)) < 0.4
    clean = kx.metrics.noisy_linear_imputation(image, removed)
    noisy = kx.metrics.noisy_linear_imputation(image, removed, 0.3, np.random.default_rng(8))
    noise = np.random.default_rng(8).normal(0.0, 0.3, (removed.sum(), 3))
    np.testing.assert_allclose(noisy[removed] - clean[removed], noise, atol=1e-12)
    np.testing.assert_array_equal(noisy[~removed], image[~removed])
    nothing = kx.metrics.noisy_linear_imputation(image, np.zeros((4, 4), bool))
    np.testing.assert_array_equal(nothing, image)


# =====================================================================================
# ROAD: the curves
# =====================================================================================
def road_reference(model, x, attributions, target, percentages, order, noise, seed, measure):
    """Rong et al. 2022, one copy at a time; the noise drawn sample by sample, then by p."""
    rng = np.random.default_rng(seed)
    maps = attributions.sum(axis=-1).reshape(len(x), -1)
    rows = []
    for b in range(len(x)):
        ranking = np.argsort(-maps[b] if order == "morf" else maps[b], kind="stable")
        clean = logits_of(model, x[b : b + 1])[0]
        row = []
        for percentage in percentages:
            removed = np.zeros(maps.shape[1], bool)
            removed[ranking[: int(maps.shape[1] * percentage / 100)]] = True
            removed = removed.reshape(x.shape[1:3])
            copy = imputation_reference(x[b], removed)
            copy[removed] += rng.normal(0.0, noise, (removed.sum(), x.shape[-1]))
            z = logits_of(model, copy[None])[0]
            label = np.argmax(clean) if target is None else target[b]
            if measure == "accuracy":
                row.append(float(np.argmax(z) == label))
            else:
                row.append(softmax(z)[label] if measure == "probability" else z[label])
        rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize(
    ("order", "measure", "target"),
    [("morf", "accuracy", None), ("lerf", "score", [0, 1, 2, 3]), ("morf", "score", None)],
)
def test_road_against_a_numpy_loop(conv_model, order, measure, target):
    x = helpers.data((8, 8, 2), seed=9)
    attributions = helpers.data((8, 8, 2), seed=10)
    percentages = [0, 10, 35, 70, 95]
    curve = kx.metrics.road(
        conv_model,
        x,
        attributions,
        target,
        percentages=percentages,
        order=order,
        noise_scale=0.2,
        measure=measure,
        seed=11,
    )
    expected = road_reference(
        conv_model, x, attributions, target, percentages, order, 0.2, 11, measure
    )
    np.testing.assert_allclose(curve.scores, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(curve.fractions, np.array(percentages) / 100)


def test_road_accuracy_against_given_labels_and_probabilities(conv_model):
    x = helpers.data((8, 8, 2), seed=12)
    attributions = helpers.data((8, 8, 2), seed=13)
    labels = np.array([3, 3, 0, 1])
    curve = kx.metrics.road(conv_model, x, attributions, labels, percentages=[0, 50])
    predicted = np.argmax(logits_of(conv_model, x), axis=1)
    np.testing.assert_array_equal(curve.scores[:, 0], (predicted == labels).astype(np.float32))
    probabilities = kx.metrics.road(
        conv_model,
        x,
        attributions,
        labels,
        percentages=[0, 50],
        noise_scale=0.0,
        measure="score",
        probabilities=True,
    )
    expected = road_reference(
        conv_model, x, attributions, labels, [0, 50], "morf", 0.0, 0, "probability"
    )
    np.testing.assert_allclose(probabilities.scores, expected, rtol=1e-4, atol=1e-6)


def test_road_morf_is_low_for_exact_attributions_and_high_for_random_ones():
    """f = sum of a 3x3 bright patch: removing it (exact attributions w.x) and imputing it
    from the dark surroundings drops the score to about 0 from 15 % on; random removal
    only takes about p of it."""
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(1, use_bias=False)]
    )
    weights = np.zeros((8, 8), "float32")
    weights[2:5, 3:6] = 1.0
    model.set_weights([weights.reshape(64, 1)])
    rng = np.random.default_rng(14)
    x = rng.normal(0.0, 0.1, (3, 8, 8, 1)).astype("float32")
    x[:, 2:5, 3:6] += 5.0
    exact = x * weights[None, :, :, None]
    options = {"measure": "score", "percentages": [20, 40, 60, 80], "noise_scale": 0.01}
    good = kx.metrics.road(model, x, exact, 0, **options).scores
    bad = kx.metrics.road(model, x, rng.random(x.shape), 0, **options).scores
    assert np.all(np.abs(good) < 1.0)  # the patch is gone, about 0 left of about 45
    assert np.all(bad.mean(axis=1) > 10 * np.abs(good).mean(axis=1))


def test_road_errors(conv_model):
    x = helpers.data((8, 8, 2), seed=15)
    with pytest.raises(ValueError, match=r"road: percentages are the shares of pixels removed"):
        kx.metrics.road(conv_model, x, x, percentages=[50, 100])
    with pytest.raises(ValueError, match=r"road: measure='accuracy' compares predicted classes"):
        kx.metrics.road(conv_model, x, x, "all")
    with pytest.raises(ValueError, match=r"road: .*order"):
        kx.metrics.road(conv_model, x, x, order="random")
    with pytest.raises(ValueError, match=r"road: .*measure"):
        kx.metrics.road(conv_model, x, x, measure="auc")
    with pytest.raises(ValueError, match=r"road: attributions must be shaped like x"):
        kx.metrics.road(conv_model, x, x[:, :4])


# =====================================================================================
# The registered columns
# =====================================================================================
def test_registered_columns_are_the_functions(conv_model):
    x = helpers.data((8, 8, 2), seed=16)
    attributions = helpers.data((8, 8, 2), seed=17)
    context = {
        "analyzer": None,
        "name": None,
        "params": {},
        "masks": None,
        "steps": 10,
        "seed": 3,
    }
    column = registry.metric_values("road", conv_model, x, attributions, None, **context)
    expected = kx.metrics.road(conv_model, x, attributions, seed=3).scores.mean(axis=1)
    np.testing.assert_array_equal(column, expected)
    assert registry.get_metric("road").better == "lower"
    assert registry.get_metric("irof").better == "higher"
    assert not registry.get_metric("road").default and not registry.get_metric("irof").default
    if importlib.util.find_spec("skimage") is not None:
        images = np.random.default_rng(18).random((2, 8, 8, 2)).astype("float32")
        column = registry.metric_values("irof", conv_model, images, x[:2], None, **context)
        np.testing.assert_array_equal(column, kx.metrics.irof(conv_model, images, x[:2]))
