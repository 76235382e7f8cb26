"""Occlusion, Shapley sampling, RISE and meaningful perturbation: the mathematics."""

import itertools
import math

import keras
import models
import numpy as np
import pytest
import tensorflow as tf

from keras_explain.analyzers import create_analyzer
from keras_explain.analyzers.perturbation import (
    RISE,
    MeaningfulPerturbation,
    Occlusion,
    ShapleySampling,
)


def linear_image_model(seed=0):
    models.seeded(seed)
    return keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)],
        name="linear_image",
    )


def patch_model(size=16):
    """Class 1 logit = 4 (mean(patch) - mean(background)); class 0 logit = 0."""
    patch = np.zeros((size, size, 1), "float32")
    patch[2:8, 8:14] = 1
    weights = patch.ravel() / patch.sum() - (1 - patch.ravel()) / (1 - patch).sum()
    inputs = keras.Input((size, size, 1))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)), name="patch")
    dense.set_weights(
        [np.stack([0 * weights, 4 * weights], 1).astype("float32"), np.zeros(2, "float32")]
    )
    images = 0.2 * np.random.default_rng(0).random((2, size, size, 1)) + 0.8 * patch[None]
    return model, images.astype("float32"), patch[..., 0] > 0


def window_starts(length, window, stride):
    starts = list(range(0, length - window + 1, stride))
    return starts if starts[-1] == length - window else starts + [length - window]


def occlusion_reference(f, x, window, stride, baseline=0.0):
    """Slow loop straight from the definition (2-D spatial, windows span channels)."""
    clean = f(x)
    total = np.zeros(x.shape[:3], np.float64)
    count = np.zeros(x.shape[1:3], np.float64)
    for i in window_starts(x.shape[1], window, stride):
        for j in window_starts(x.shape[2], window, stride):
            occluded = x.copy()
            occluded[:, i : i + window, j : j + window, :] = baseline
            total[:, i : i + window, j : j + window] += (clean - f(occluded))[:, None, None]
            count[i : i + window, j : j + window] += 1
    return np.repeat((total / count)[..., None], x.shape[-1], axis=-1)


def test_occlusion_linear_model_is_windowed_input_times_weight():
    model = linear_image_model()
    x = models.data((6, 6, 2), seed=1, batch=3)
    kernel = model.layers[-1].kernel.numpy()[:, 1].reshape(6, 6, 2)
    result = Occlusion(model, window=3, stride=2).analyze(x, target=1)
    expected = np.zeros((3, 6, 6))
    count = np.zeros((6, 6))
    for i in (0, 2, 3):  # stride 2 reaches 2; the flush window starts at 3
        for j in (0, 2, 3):
            window_sum = (kernel * x)[:, i : i + 3, j : j + 3].sum(axis=(1, 2, 3))
            expected[:, i : i + 3, j : j + 3] += window_sum[:, None, None]
            count[i : i + 3, j : j + 3] += 1
    expected = np.repeat((expected / count)[..., None], 2, axis=-1)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_occlusion_nonlinear_model_matches_hand_loop_and_callable_path():
    model = models.conv_sequential()
    x = models.data((8, 8, 2), seed=2, batch=3)
    target = np.array([0, 3, 1])

    def f(batch):
        return model(batch).numpy()[np.arange(len(batch)), target]

    expected = occlusion_reference(f, x, window=3, stride=2, baseline=0.5)
    result = Occlusion(model, window=3, stride=2, baseline=0.5).analyze(x, target=target)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    # A numpy-only callable runs eagerly on the host; both paths must agree.
    eager = Occlusion(
        lambda z: model(z).numpy(), window=3, stride=2, baseline=0.5, internal_batch_size=7
    ).analyze(x, target=target)
    np.testing.assert_allclose(eager, result, rtol=1e-5, atol=1e-6)


def test_occlusion_none_target_is_clean_argmax_and_batch_invariant():
    model = models.conv_sequential()
    x = models.data((8, 8, 2), seed=3, batch=4)
    argmax = model(x).numpy().argmax(1)
    analyzer = create_analyzer("occlusion", model, window=(2, 4), stride=(2, 2))
    result = analyzer.analyze(x)
    np.testing.assert_allclose(result, analyzer.analyze(x, target=argmax), atol=1e-6)
    np.testing.assert_allclose(result, analyzer.analyze(x, batch_size=3), atol=1e-5)
    function = next(iter(analyzer._functions.values()))
    traces = function.experimental_get_tracing_count()
    analyzer.analyze(x + 1)
    assert function.experimental_get_tracing_count() == traces


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window": 9}, r"window \(9, 9\) is larger than the spatial shape \(8, 8\)"),
        ({"window": 0}, r"window must be a positive int .* Received: window=0"),
        ({"window": (2, 2, 2)}, r"window needs one entry per spatial axis \(8, 8\)"),
        ({"stride": -1}, r"stride must be a positive int"),
    ],
)
def test_occlusion_bad_window(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Occlusion(models.conv_sequential(), **kwargs)


def test_callable_with_wrong_output_shape():
    x = models.data((6,), batch=4)
    with pytest.raises(
        ValueError,
        match=r"must return one row of scores per input row.*"
        r"Received: shape \(1, 3\) for an input of shape",
    ):
        Occlusion(lambda z: np.zeros((1, 3)), window=1).analyze(x)


def exact_shapley(f, x, baseline, mask, groups):
    """Shapley values by enumerating all coalitions (subset formula)."""

    def value(coalition):
        keep = np.isin(mask, list(coalition))
        return f(np.where(keep, x, baseline))

    result = np.zeros((len(x), groups))
    for g in range(groups):
        others = [h for h in range(groups) if h != g]
        for size in range(groups):
            weight = (
                math.factorial(size) * math.factorial(groups - size - 1) / math.factorial(groups)
            )
            for coalition in itertools.combinations(others, size):
                result[:, g] += weight * (value(coalition + (g,)) - value(coalition))
    return result


def test_shapley_exact_enumeration_and_efficiency():
    model = models.dense_sequential(softmax=False)
    x = models.data((6,), seed=4, batch=3)
    mask = np.array([0, 0, 1, 2, 3, 3])
    baseline = np.linspace(-0.5, 0.5, 6).astype("float32")

    def f(batch):
        return model(batch).numpy()[:, 2]

    expected = exact_shapley(f, x, baseline, mask, 4)
    analyzer = ShapleySampling(model, samples=24, feature_mask=mask, baseline=baseline)
    result = analyzer.analyze(x, target=2)
    np.testing.assert_allclose(result[:, [0, 2, 3, 4]], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result[:, 0], result[:, 1])
    # Sampled orders (antithetic pairs) approach the exact values and stay efficient.
    sampled = ShapleySampling(
        model, samples=400, feature_mask=mask, baseline=baseline, seed=1
    ).analyze(x, target=2)[:, [0, 2, 3, 4]]
    np.testing.assert_allclose(sampled, expected, atol=0.05)
    np.testing.assert_allclose(sampled.sum(1), f(x) - f(baseline[None]), rtol=1e-4, atol=1e-5)


def test_shapley_efficiency_on_images_with_few_samples():
    model = models.conv_sequential()
    x = models.data((8, 8, 2), seed=5, batch=2)
    mask = np.arange(64).reshape(8, 8) // 8  # 8 row groups spanning both channels
    result = ShapleySampling(model, samples=5, feature_mask=mask, seed=3).analyze(x, target=1)
    values = result[:, ::1, 0, 0]  # one value per row group
    difference = model(x).numpy()[:, 1] - model(np.zeros_like(x)).numpy()[:, 1]
    np.testing.assert_allclose(values.sum(1), difference, rtol=1e-4, atol=1e-5)
    assert np.all(result == result[:, :, :1, :1])  # every element of a group gets its value


def test_shapley_superpixels_and_sklearn_pipeline():
    pytest.importorskip("skimage")
    model = models.conv_sequential()
    x = models.data((8, 8, 2), seed=6, batch=2)
    result = ShapleySampling(model, samples=4, segmentation="slic", seed=0).analyze(x)
    assert result.shape == x.shape and np.isfinite(result).all()

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = models.data((6,), seed=7, batch=60)
    labels = (data[:, 0] > 0).astype(int) + (data[:, 1] > 0)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(data, labels)
    rows = data[:3]
    result = create_analyzer("shapley_sampling", pipeline.predict_proba, samples=6, seed=0).analyze(
        rows
    )
    probabilities = pipeline.predict_proba(rows)
    chosen = probabilities.argmax(1)
    empty = pipeline.predict_proba(np.zeros_like(rows))[np.arange(3), chosen]
    np.testing.assert_allclose(result.sum(1), probabilities.max(1) - empty, atol=1e-5)


def test_same_seed_same_result():
    model = models.conv_sequential()
    x = models.data((8, 8, 2), seed=8, batch=2)
    for cls, kwargs in ((RISE, {"samples": 40, "cells": 3}), (ShapleySampling, {"samples": 3})):
        first = cls(model, seed=11, **kwargs).analyze(x)
        np.testing.assert_array_equal(first, cls(model, seed=11, **kwargs).analyze(x))
        assert not np.allclose(first, cls(model, seed=12, **kwargs).analyze(x))


def rise_reference(f, x, masks, probability):
    """sum_i f(x * M_i) M_i / (N p), straight from the paper."""
    total = sum(f(x * mask[None, :, :, None])[:, None, None] * mask[None] for mask in masks)
    return total / (len(masks) * probability)


def test_rise_constant_model_and_linearity():
    x = models.data((8, 8, 1), seed=9, batch=2)
    constant = RISE(lambda z: np.full((len(z), 2), 3.0), samples=800, cells=4, seed=0)
    np.testing.assert_allclose(constant.analyze(x, target=0), 3.0, atol=0.25)
    # For a fixed mask set the saliency is linear in the score: with the masks of
    # a constant score c, saliency(c) = c * mean(M) / p, so f = 2c doubles it.
    one = RISE(lambda z: np.ones((len(z), 1)), samples=50, cells=3, seed=4).analyze(x)
    two = RISE(lambda z: 2 * np.ones((len(z), 1)), samples=50, cells=3, seed=4).analyze(x)
    np.testing.assert_allclose(two, 2 * one, rtol=1e-6)


def test_rise_matches_reference_with_the_same_masks():
    # Record the masked copies that a plain callable receives (baseline 0, so a
    # copy is M_i * x), recover the masks, and apply the paper's formula.
    model = models.conv_sequential(seed=1)
    x2 = np.abs(models.data((8, 8, 2), seed=10, batch=2)) + 0.5
    analyzer = RISE(model, samples=30, cells=3, probability=0.4, seed=5)
    result = analyzer.analyze(x2, target=2)
    recorded = []

    def recorder(z):
        recorded.append(np.asarray(z))
        return model(z).numpy()

    RISE(recorder, samples=30, cells=3, probability=0.4, seed=5).analyze(x2, target=2)
    copies = np.concatenate(recorded)[-60:]  # before: output size and clean target
    masks = copies[0::2, :, :, 0] / x2[0, :, :, 0]  # copies alternate sample 0, 1

    def f(batch):
        return model(batch).numpy()[:, 2]

    expected = rise_reference(f, x2, masks, 0.4)
    np.testing.assert_allclose(result[..., 0], expected, rtol=1e-3, atol=1e-4)


def localisation(saliency, patch):
    """Fraction of the above-mean saliency mass that lies on the patch."""
    excess = np.maximum(saliency - saliency.mean(), 0)
    return float(excess[patch].sum() / excess.sum())


def test_rise_localises_the_patch():
    model, images, patch = patch_model()
    result = RISE(model, samples=1000, cells=8, seed=0).analyze(images)[..., 0]
    fractions = [localisation(r, patch) for r in result]
    print(f"RISE above-mean mass on the patch: {fractions} (patch area {patch.mean():.3f})")
    assert min(fractions) > 0.6


def test_meaningful_perturbation_deletes_the_patch():
    model, images, patch = patch_model()
    result = MeaningfulPerturbation(model, deletion="constant").analyze(images, target=1)
    deletion = result[..., 0]
    fractions = [float(d[patch].sum() / d.sum()) for d in deletion]
    print(
        f"meaningful perturbation deletion mass on the patch: {fractions} "
        f"(patch area {patch.mean():.3f}); mean deletion patch "
        f"{deletion[:, patch].mean():.3f}, background {deletion[:, ~patch].mean():.3f}"
    )
    assert deletion[:, patch].mean() > 0.9 and deletion[:, ~patch].mean() < 0.3
    assert min(fractions) > 0.4
    blurred = MeaningfulPerturbation(model, iterations=60, blur_sigma=2.0).analyze(images)[..., 0]
    print(
        f"blur deletion: patch {blurred[:, patch].mean():.3f}, background "
        f"{blurred[:, ~patch].mean():.3f}"
    )
    assert blurred[:, patch].mean() > 0.9 and blurred[:, ~patch].mean() < 0.7


def test_meaningful_perturbation_needs_a_differentiable_model():
    x = models.data((6,), batch=2)
    with pytest.raises(TypeError, match="needs a differentiable model"):
        MeaningfulPerturbation(lambda z: np.asarray(z)[:, :3], iterations=2).analyze(x)
    with pytest.raises(ValueError, match=r"Unknown deletion. Received: deletion='erase'"):
        MeaningfulPerturbation(models.conv_sequential(), deletion="erase")


def test_progress_bar_and_multi_input_error(capsys):
    model = models.conv_sequential()
    x = models.data((8, 8, 2), batch=1)
    RISE(model, samples=20, cells=2, seed=0, internal_batch_size=4, progress=True).analyze(x)
    assert "RISE" in capsys.readouterr().err
    with pytest.raises(ValueError, match="explains models with one input"):
        Occlusion(models.multi_input())
    with pytest.raises(ValueError, match=r"probability must be in \(0, 1\]"):
        RISE(model, probability=0.0)
    assert tf.executing_eagerly()
