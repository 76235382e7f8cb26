"""Smooth and efficient MPRT, random logit: numpy references from the papers' definitions."""

import helpers
import keras
import numpy as np
import pytest
from scipy import stats
from skimage.metrics import structural_similarity

import keras_explain as kx
from keras_explain.metrics import registry

layers = keras.layers
constant = keras.initializers.Constant


# =====================================================================================
# A Dense-ReLU-Dense model whose re-drawn weights are known: constant initializers
# =====================================================================================
def known_model(seed=0, features=6, hidden=5, classes=3):
    """Trained weights T (set), randomized weights R (the initializers' constants).

    ``randomization`` re-draws a layer from its own initializers, so R is exactly
    what the fully randomized clone holds.
    """
    rng = np.random.default_rng(seed)
    shapes = [(features, hidden), (hidden,), (hidden, classes), (classes,)]
    randomized = [rng.normal(0, 1, s).astype("float32") for s in shapes]
    trained = [rng.normal(0, 1, s).astype("float32") for s in shapes]
    model = keras.Sequential(
        [
            keras.Input((features,)),
            layers.Dense(
                hidden,
                activation="relu",
                kernel_initializer=constant(randomized[0]),
                bias_initializer=constant(randomized[1]),
                name="hidden",
            ),
            layers.Dense(
                classes,
                kernel_initializer=constant(randomized[2]),
                bias_initializer=constant(randomized[3]),
                name="logits",
            ),
        ]
    )
    model.set_weights(trained)
    return model, trained, randomized


def gradient(weights, x, target):
    """d f_t / d x of relu(x W1 + b1) W2 + b2, one sample at a time (float64)."""
    w1, b1, w2, _ = (np.asarray(w, np.float64) for w in weights)
    rows = []
    for sample, t in zip(np.asarray(x, np.float64), np.broadcast_to(target, len(x))):
        active = (sample @ w1 + b1) > 0
        rows.append(w1 @ (active * w2[:, t]))
    return np.array(rows)


def spearman_abs(first, second):
    return np.array(
        [stats.spearmanr(np.abs(a), np.abs(b)).statistic for a, b in zip(first, second)]
    )


def entropy(values, bins):
    """-sum p log p of the histogram of one sample (bins of equal width over its range)."""
    counts = np.histogram(values, bins=bins)[0]
    p = counts[counts > 0] / counts.sum()
    return -np.sum(p * np.log(p))


# =====================================================================================
# Smooth MPRT
# =====================================================================================
def test_smooth_mprt_compares_the_averages_of_the_same_noisy_copies():
    model, trained, randomized = known_model()
    x = helpers.data((6,), seed=1)
    samples, noise_scale, seed = 6, 0.2, 3
    result = kx.metrics.smooth_mprt(
        "gradient", model, x, 1, samples=samples, noise_scale=noise_scale, seed=seed
    )
    assert list(result) == ["logits", "hidden"]
    # the noisy copies x + N(0, (0.2 (max - min))^2) the tunnel draws from `seed`
    tunnel = kx.NoiseTunnel(kx.Gradient(model), samples=samples, noise_scale=noise_scale)
    copies = helpers.noisy_copies(tunnel, x, seed)  # (samples, B, 6)
    spread = x.max(axis=1) - x.min(axis=1)
    noise = (copies - x[None]) / (noise_scale * spread)[None, :, None]
    assert abs(noise.std() - 1) < 0.3  # standard normal draws

    def smoothed(weights):
        return np.mean([gradient(weights, copy, 1) for copy in copies], axis=0)

    original = smoothed(trained)
    # cascading, top-down: logits re-drawn first, then hidden too
    top_only = [*trained[:2], *randomized[2:]]
    np.testing.assert_allclose(
        result["logits"], spearman_abs(original, smoothed(top_only)), atol=1e-5
    )
    np.testing.assert_allclose(
        result["hidden"], spearman_abs(original, smoothed(randomized)), atol=1e-5
    )


def test_smooth_mprt_of_the_gradient_is_randomization_of_smoothgrad():
    """Two paths to the same numbers: a tunnel around Gradient is SmoothGrad."""
    model, _, _ = known_model(seed=4)
    x = helpers.data((6,), seed=5)
    smooth = kx.metrics.smooth_mprt("gradient", model, x, 0, samples=5, noise_scale=0.1, seed=2)
    plain = kx.metrics.randomization("smoothgrad", model, x, 0, samples=5, noise_scale=0.1, seed=2)
    assert list(smooth) == list(plain)
    for name in smooth:
        np.testing.assert_allclose(smooth[name], plain[name], atol=1e-6)


def test_smooth_mprt_leaves_the_model_untouched_and_validates():
    model, trained, _ = known_model()
    x = helpers.data((6,), seed=1)
    kx.metrics.smooth_mprt("gradient", model, x, 0, samples=2, measure="pearson")
    for old, new in zip(trained, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(ValueError, match="smooth_mprt: samples must be a positive int"):
        kx.metrics.smooth_mprt("gradient", model, x, 0, samples=0)
    with pytest.raises(ValueError, match="smooth_mprt: unknown measure"):
        kx.metrics.smooth_mprt("gradient", model, x, 0, measure="kendall")
    with pytest.raises(ValueError, match="smooth_mprt: unknown layer 'nope'"):
        kx.metrics.smooth_mprt("gradient", model, x, 0, layers=["nope"])
    with pytest.raises(TypeError, match="smooth_mprt re-initializes a clone of a Keras model"):
        kx.metrics.smooth_mprt("gradient", lambda z: z, x, 0)


# =====================================================================================
# Efficient MPRT
# =====================================================================================
def test_discrete_entropy_closed_forms():
    from keras_explain.metrics.model_randomization import discrete_entropy

    uniform = np.arange(100.0)[None]  # one value per bin of 100
    two_bins = np.array([[0.0, 0.0, 0.0, 1.0]])  # p = (3/4, 1/4)
    np.testing.assert_allclose(discrete_entropy(uniform, 100), [np.log(100)])
    np.testing.assert_allclose(
        discrete_entropy(two_bins, 2), [-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))]
    )
    np.testing.assert_array_equal(discrete_entropy(np.ones((1, 5)), 10), [0.0])


@pytest.mark.parametrize("bins", [100, 7])
def test_efficient_mprt_is_the_relative_rise_of_histogram_entropy(bins):
    model, trained, randomized = known_model(seed=2, features=40, hidden=16)
    x = helpers.data((40,), seed=3)
    result = kx.metrics.efficient_mprt("gradient", model, x, 2, bins=bins)
    before = np.array([entropy(row, bins) for row in gradient(trained, x, 2)])
    after = np.array([entropy(row, bins) for row in gradient(randomized, x, 2)])
    np.testing.assert_allclose(result, (after - before) / before, rtol=1e-6)
    for old, new in zip(trained, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_efficient_mprt_is_zero_when_the_explanation_ignores_the_randomized_weights():
    """Re-drawing only the last layer's bias leaves the gradient unchanged: no rise."""
    model, trained, _ = known_model(seed=2, features=40, hidden=16)
    logits = model.get_layer("logits")
    logits.kernel_initializer = constant(trained[2])  # the kernel is re-drawn as it is
    x = helpers.data((40,), seed=3)
    result = kx.metrics.efficient_mprt("gradient", model, x, 0, layers=["logits"])
    np.testing.assert_array_equal(result, np.zeros(len(x)))


def test_efficient_mprt_validates():
    model, _, _ = known_model()
    x = helpers.data((6,), seed=1)
    with pytest.raises(ValueError, match="efficient_mprt: bins must be a positive int"):
        kx.metrics.efficient_mprt("gradient", model, x, 0, bins=0)
    with pytest.raises(ValueError, match="efficient_mprt compares the trained model with a"):
        kx.metrics.efficient_mprt("gradient", model, x, 0, layers=[])
    # a constant explanation has zero entropy: the relative rise is undefined
    flat = keras.Sequential([keras.Input((6,)), layers.Dense(1, kernel_initializer="ones")])
    assert np.isnan(kx.metrics.efficient_mprt("gradient", flat, x, 0)).all()


# =====================================================================================
# Random logit
# =====================================================================================
def image_model(classes=4, same_columns=False, seed=0):
    """Flatten -> Dense(classes) on 8x8x2 images: the gradient of class c is W[:, c]."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0, 1, (128, classes)).astype("float32")
    if same_columns:
        kernel[:] = kernel[:, :1]
    model = keras.Sequential([keras.Input((8, 8, 2)), layers.Flatten(), layers.Dense(classes)])
    model.set_weights([kernel, rng.normal(0, 1, classes).astype("float32")])
    return model, kernel


def ssim_of_abs_maps(first, second):
    """Adebayo et al.'s SSIM: |a| summed over channels, each map divided by its maximum."""

    def normalized(a):
        m = np.abs(a).sum(axis=-1)
        return m / m.max()

    return np.array(
        [
            structural_similarity(normalized(a), normalized(b), data_range=1.0)
            for a, b in zip(first, second)
        ]
    )


def test_random_logit_compares_with_a_seeded_other_class():
    classes, seed = 4, 7
    model, kernel = image_model(classes)
    x = helpers.data((8, 8, 2), seed=1, batch=5)
    target = np.array([0, 1, 2, 3, 0])
    result = kx.metrics.random_logit(kx.Gradient(model), x, target, seed=seed)
    # the documented draw: c' = (c + k) mod K, k uniform in 1 .. K - 1
    others = (target + np.random.default_rng(seed).integers(1, classes, size=5)) % classes
    assert np.all(others != target)
    maps = kernel.T.reshape(classes, 8, 8, 2)  # the gradient of each class
    np.testing.assert_allclose(result, ssim_of_abs_maps(maps[target], maps[others]), atol=1e-5)
    # tabular inputs: Spearman of |a| by default
    dense = keras.Sequential([keras.Input((6,)), layers.Dense(3)])
    w = dense.get_weights()[0]
    tabular = kx.metrics.random_logit(kx.Gradient(dense), helpers.data((6,)), 2, seed=seed)
    others = (2 + np.random.default_rng(seed).integers(1, 3, size=4)) % 3
    np.testing.assert_allclose(tabular, spearman_abs(w.T[[2] * 4], w.T[others]), atol=1e-6)
    # Grad-CAM maps (B, H, W) of images: still SSIM by default (the input decides)
    cam = kx.GradCAM(helpers.conv_sequential())  # maps upsampled to 8x8
    mapped = kx.metrics.random_logit(cam, x, target, seed=seed)
    others = (target + np.random.default_rng(seed).integers(1, classes, size=5)) % classes
    first, second = cam.analyze(x, target), cam.analyze(x, others)
    assert first.ndim == 3
    np.testing.assert_allclose(
        mapped, ssim_of_abs_maps(first[..., None], second[..., None]), atol=1e-5
    )


def test_random_logit_flags_a_class_insensitive_model_and_takes_a_callable():
    """Every class with the same weights: the explanations are identical (SSIM 1, bad)."""
    model, _ = image_model(same_columns=True)
    x = helpers.data((8, 8, 2), seed=1)
    np.testing.assert_allclose(kx.metrics.random_logit(kx.Gradient(model), x), 1.0, atol=1e-6)
    received = []

    def explain(inputs, target):
        received.append(np.asarray(target))
        return kx.Gradient(model).analyze(inputs, target)

    result = kx.metrics.random_logit(explain, x, 1, classes=4, measure="pearson")
    np.testing.assert_allclose(result, 1.0, atol=1e-6)
    assert received[0][:4].tolist() == [1] * 4 and np.all(received[0][4:] != 1)


def test_random_logit_validates():
    model, _ = image_model()
    x = helpers.data((8, 8, 2), seed=1)
    gradient_method = kx.Gradient(model)
    with pytest.raises(ValueError, match="random_logit compares the explanations of two classes"):
        kx.metrics.random_logit(gradient_method, x, "all")
    with pytest.raises(ValueError, match="random_logit: pass classes=K"):
        kx.metrics.random_logit(lambda inputs, target: inputs, x, 0)
    with pytest.raises(ValueError, match="random_logit needs at least 2 classes"):
        kx.metrics.random_logit(gradient_method, x, 0, classes=1)
    with pytest.raises(ValueError, match="random_logit: pass the target classes"):
        kx.metrics.random_logit(lambda inputs, target: inputs, x, None, classes=3)
    with pytest.raises(TypeError, match="random_logit needs an analyzer"):
        kx.metrics.random_logit(3, x, 0, classes=3)


# =====================================================================================
# The registered columns
# =====================================================================================
def test_the_columns_are_the_functions():
    model, _, _ = known_model(seed=2, features=40, hidden=16)
    x = helpers.data((40,), seed=3)
    rows = kx.metrics.evaluate(
        {"gradient": {}},
        model,
        x,
        0,
        metrics=["smooth_mprt", "efficient_mprt", "random_logit"],
    )
    row = rows[0]
    smooth = kx.metrics.smooth_mprt("gradient", model, x, 0)
    assert row["smooth_mprt"] == pytest.approx(float(np.nanmean(smooth["hidden"])), abs=1e-6)
    assert row["efficient_mprt"] == pytest.approx(
        float(np.nanmean(kx.metrics.efficient_mprt("gradient", model, x, 0))), abs=1e-6
    )
    assert row["random_logit"] == pytest.approx(
        float(np.nanmean(kx.metrics.random_logit(kx.Gradient(model), x, 0))), abs=1e-6
    )
    for name in ("smooth_mprt", "efficient_mprt", "random_logit"):
        assert not registry.get_metric(name).default
