"""Integrated Gradients, SmoothGrad, SquareGrad, VarGrad and GradientShap against their definitions.

GradientShap: exact on a linear model with one baseline and no noise, and within 4
standard errors of its expectation otherwise.
"""

import helpers
import keras
import numpy as np
import pytest
from helpers import data, dense_chain, randomize, seeded

import keras_explain as kx

layers = keras.layers


def half_square_model():
    """f(x) = 0.5 * sum(x**2), so grad f(x) = x: noisy gradients are the noisy copies."""
    inputs = keras.Input((16, 16, 1))
    squared = layers.Flatten()(keras.ops.square(inputs))
    head = layers.Dense(1, use_bias=False, kernel_initializer="zeros")
    outputs = head(squared)
    head.set_weights([np.full((256, 1), 0.5, "float32")])
    return keras.Model(inputs, outputs, name="half_square")


def smooth_dense(seed=0):
    """Smooth activations: the trapezoid rule converges as 1/steps**2."""
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(8, activation="tanh"),
            layers.Dense(8, activation="softplus"),
            layers.Dense(3),
        ]
    )
    return helpers.randomize_biases(model)


def smooth_conv(seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, activation="softplus"),
            layers.AveragePooling2D(2),
            layers.Conv2D(6, 3, activation="tanh"),
            layers.Flatten(),
            layers.Dense(4),
        ]
    )
    return helpers.randomize_biases(model)


# -- integrated gradients ---------------------------------------------------------
@pytest.mark.parametrize("method", ["trapezoid", "riemann_middle", "gausslegendre"])
def test_integrated_gradients_equals_reference(conv_model, method):
    x = helpers.data((8, 8, 2))
    target = [0, 3, 1, 2]
    steps = 5
    if method == "trapezoid":
        alphas, weights = np.linspace(0, 1, steps), np.r_[0.5, 1, 1, 1, 0.5] / (steps - 1)
    elif method == "riemann_middle":
        alphas, weights = (np.arange(steps) + 0.5) / steps, np.full(steps, 1 / steps)
    else:
        nodes, w = np.polynomial.legendre.leggauss(steps)
        alphas, weights = (nodes + 1) / 2, w / 2
    expected = helpers.reference_ig(conv_model, x, np.zeros_like(x), target, alphas, weights)
    result = kx.IntegratedGradients(conv_model, steps=steps, method=method).analyze(x, target)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("factory", [smooth_dense, smooth_conv])
@pytest.mark.parametrize("method", ["trapezoid", "gausslegendre"])
def test_integrated_gradients_completeness(factory, method):
    model = factory()
    x = helpers.data(tuple(model.inputs[0].shape[1:]))
    target = np.array([0, 1, 2, 0])
    attribution = kx.IntegratedGradients(model, steps=64, method=method).analyze(x, target)
    delta = helpers.selected(model, x, target) - helpers.selected(model, np.zeros_like(x), target)
    np.testing.assert_allclose(attribution.reshape(len(x), -1).sum(axis=1), delta, rtol=0.01)


@pytest.mark.parametrize("name", ["conv", "relu_forms", "raw_ops", "nested", "shared"])
def test_integrated_gradients_completeness_on_relu_networks(name):
    # Piecewise-linear nets: kinks make the quadrature error O(1/steps), so a sample
    # with a tiny f(x) - f(x') can be off by more than 1% of itself at 64 steps; the
    # error is bounded relative to the batch's largest change and vanishes with steps.
    model = helpers.ALL_GRAPH_MODELS[name]()
    x = helpers.data(tuple(model.inputs[0].shape[1:]))
    target = np.array([0, 1, 2, 0]) % model.outputs[0].shape[-1]
    delta = helpers.selected(model, x, target) - helpers.selected(model, np.zeros_like(x), target)
    errors = []
    for steps in (64, 512):
        analyzer = kx.IntegratedGradients(model, steps=steps, strip_softmax=False)
        total = analyzer.analyze(x, target).reshape(len(x), -1).sum(axis=1)
        errors.append(np.abs(total - delta).max() / np.abs(delta).max())
    assert errors[0] < 0.07 and errors[1] < 0.01


@pytest.mark.parametrize("kind", ["scalar", "sample", "batch"])
def test_integrated_gradients_with_a_baseline(kind):
    model = smooth_dense()
    x = helpers.data((6,))
    rng = np.random.default_rng(5)
    baseline = {
        "scalar": np.float32(0.3),
        "sample": rng.normal(size=6).astype("float32"),
        "batch": rng.normal(size=(4, 6)).astype("float32"),
    }[kind]
    target = [0, 1, 2, 0]
    analyzer = kx.IntegratedGradients(model, steps=64, baseline=baseline)
    attribution = analyzer.analyze(x, target)
    full = np.broadcast_to(baseline, x.shape).astype("float32")
    delta = helpers.selected(model, x, target) - helpers.selected(model, full, target)
    np.testing.assert_allclose(attribution.sum(axis=1), delta, rtol=0.01)
    alphas, weights = np.linspace(0, 1, 64), np.r_[0.5, np.ones(62), 0.5] / 63
    np.testing.assert_allclose(
        attribution,
        helpers.reference_ig(model, x, full, target, alphas, weights),
        rtol=1e-4,
        atol=1e-5,
    )


def test_integrated_gradients_multi_input_completeness(multi_input_model, multi_input_data):
    # both inputs move along one path; a ReLU network, so the error is bounded relative to
    # the batch's largest change (see the test above)
    baselines = [np.full((6,), 0.5, "float32"), np.zeros((4,), "float32")]
    attribution = kx.IntegratedGradients(
        multi_input_model, baseline=baselines, output_index=1
    ).analyze(multi_input_data, target=1)
    total = attribution[0].sum(axis=1) + attribution[1].sum(axis=1)
    full = [np.broadcast_to(b, x.shape) for b, x in zip(baselines, multi_input_data)]
    delta = np.asarray(
        multi_input_model(multi_input_data)[1][:, 1] - multi_input_model(full)[1][:, 1]
    )
    assert np.abs(total - delta).max() < 0.01 * np.abs(delta).max()
    only_first = kx.IntegratedGradients(
        multi_input_model, baseline=[baselines[0], 0.0], output_index=1
    ).analyze(multi_input_data, target=1)
    np.testing.assert_array_equal(only_first[0], attribution[0])
    np.testing.assert_array_equal(only_first[1], attribution[1])


def test_integrated_gradients_errors(dense_model, x6):
    with pytest.raises(
        ValueError,
        match=r"steps must be an int >= 2 for method='trapezoid'"
        r"\. Received: steps=1",
    ):
        kx.IntegratedGradients(dense_model, steps=1)
    with pytest.raises(ValueError, match=r"steps must be an int >= 1.*Received: steps=2.5"):
        kx.IntegratedGradients(dense_model, steps=2.5, method="riemann_left")
    with pytest.raises(
        ValueError,
        match=r"Unknown method\. Received: method='simpson'\. "
        r"Expected one of \('trapezoid'",
    ):
        kx.IntegratedGradients(dense_model, method="simpson")
    # baselines are checked when the analyzer is built (SPEC 1.1), not at trace time
    with pytest.raises(
        ValueError,
        match=r"baseline must be a scalar, shaped like one sample \(6,\) or like a batch "
        r"\(batch, 6\)\. Received: shape \(5,\)",
    ):
        kx.IntegratedGradients(dense_model, steps=4, baseline=np.zeros(5, "float32"))
    with pytest.raises(ValueError, match=r"baseline needs one entry per model input \(1\)"):
        kx.IntegratedGradients(dense_model, steps=4, baseline=[0.0, 0.0])
    # a batch-shaped baseline is checked against the batch before anything is traced
    analyzer = kx.IntegratedGradients(dense_model, steps=4, baseline=np.zeros((3, 6), "float32"))
    with pytest.raises(
        ValueError,
        match=r"like the batch \(4, 6\)\. Received: shape \(3, 6\)\. A batch-shaped baseline",
    ):
        analyzer.analyze(x6)
    batch_baseline = kx.IntegratedGradients(dense_model, steps=4, baseline=np.zeros((4, 6)))
    with pytest.raises(ValueError, match=r"needs the whole batch in one call"):
        batch_baseline.analyze(x6, batch_size=2)
    assert batch_baseline.analyze(x6).shape == (4, 6)


# -- SmoothGrad, SquareGrad, VarGrad ----------------------------------------------
def test_noise_scale_zero_equals_plain_gradient(conv_model):
    x = helpers.data((8, 8, 2))
    plain = kx.Gradient(conv_model).analyze(x)
    for samples in (1, 4):
        smooth = kx.SmoothGrad(conv_model, samples=samples, noise_scale=0.0, seed=1).analyze(x)
        np.testing.assert_array_equal(smooth, plain)
    square = kx.SquareGrad(conv_model, samples=4, noise_scale=0.0, seed=1).analyze(x)
    np.testing.assert_array_equal(square, plain**2)
    var = kx.VarGrad(conv_model, samples=4, noise_scale=0.0, seed=1).analyze(x)
    np.testing.assert_array_equal(var, np.zeros_like(x))


def test_noise_scale_is_a_fraction_of_each_samples_range():
    # grad f = x, so VarGrad is the empirical variance of the noise: sigma**2 per sample.
    model = half_square_model()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 16, 16, 1)) * np.array([1.0, 10.0, 0.1])[:, None, None, None]
    x = x.astype("float32")
    sigma = 0.2 * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    var = kx.VarGrad(model, samples=64, noise_scale=0.2, seed=4).analyze(x)
    estimated = np.sqrt(var.reshape(3, -1).mean(axis=1) * 64 / 63)  # unbiased over samples
    np.testing.assert_allclose(estimated, sigma, rtol=0.05)
    smooth = kx.SmoothGrad(model, samples=64, noise_scale=0.2, seed=4).analyze(x)
    error = (smooth - x).reshape(3, -1)  # the mean noise: ~ N(0, sigma**2 / 64) per pixel
    np.testing.assert_allclose(error.std(axis=1) * 8, sigma, rtol=0.15)
    # each row's mean over its 256 pixels ~ N(0, sigma_row**2 / (64 * 256)): 4 of its own
    # standard deviations, not the largest row's sigma (rows differ 100-fold here)
    assert np.all(np.abs(error.mean(axis=1)) < 4 * sigma / np.sqrt(64 * 256))


@pytest.mark.parametrize("seed", [0, 7])
def test_noise_methods_against_numpy_over_the_same_noise(conv_model, seed):
    x = helpers.data((8, 8, 2), batch=3)
    target = [0, 3, 1]
    samples = 5
    smooth = kx.SmoothGrad(conv_model, samples=samples, noise_scale=0.3, seed=seed)
    # the analyzer's own noise at the seed analyze() uses for the first (only) chunk
    copies = helpers.noisy_copies(smooth, x, seed)
    assert copies.shape == (samples, *x.shape)
    grads = np.stack([helpers.tape_gradient(conv_model, copy, target) for copy in copies])
    np.testing.assert_allclose(smooth.analyze(x, target), grads.mean(axis=0), rtol=1e-4, atol=1e-6)
    square = kx.SquareGrad(conv_model, samples=samples, noise_scale=0.3, seed=seed)
    np.testing.assert_allclose(
        square.analyze(x, target), (grads**2).mean(axis=0), rtol=1e-4, atol=1e-7
    )
    var = kx.VarGrad(conv_model, samples=samples, noise_scale=0.3, seed=seed)
    np.testing.assert_allclose(var.analyze(x, target), grads.var(axis=0), rtol=1e-3, atol=1e-7)
    # the copies are x plus noise of the documented scale
    sigma = 0.3 * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    noise = (copies - x[None]).transpose(1, 0, 2, 3, 4).reshape(3, -1)
    np.testing.assert_allclose(noise.std(axis=1), sigma, rtol=0.1)


def test_noise_target_none_is_the_clean_argmax(conv_model):
    x = helpers.data((8, 8, 2))
    argmax = np.argmax(conv_model(x).numpy(), axis=1)
    for name in ("smoothgrad", "integrated_gradients"):
        params = (
            {"samples": 8, "noise_scale": 0.5, "seed": 2} if name == "smoothgrad" else {"steps": 4}
        )
        default = kx.create_analyzer(name, conv_model, **params).analyze(x)
        explicit = kx.create_analyzer(name, conv_model, **params).analyze(x, target=argmax)
        np.testing.assert_array_equal(default, explicit)


@pytest.mark.parametrize("cls", [kx.SmoothGrad, kx.SquareGrad, kx.VarGrad])
def test_seeds(cls, conv_model):
    x = helpers.data((8, 8, 2))
    first = cls(conv_model, samples=4, seed=3).analyze(x, target=1)
    np.testing.assert_array_equal(cls(conv_model, samples=4, seed=3).analyze(x, target=1), first)
    analyzer = cls(conv_model, samples=4, seed=3)
    np.testing.assert_array_equal(analyzer.analyze(x, target=1), analyzer.analyze(x, target=1))
    other = cls(conv_model, samples=4, seed=4).analyze(x, target=1)
    assert not np.allclose(other, first)
    unseeded = cls(conv_model, samples=4)
    assert not np.allclose(unseeded.analyze(x, target=1), unseeded.analyze(x, target=1))


def test_noise_errors(dense_model):
    with pytest.raises(ValueError, match=r"samples must be a positive int\. Received: samples=0"):
        kx.SmoothGrad(dense_model, samples=0)
    with pytest.raises(ValueError, match=r"noise_scale must be >= 0.*Received: noise_scale=-0.1"):
        kx.VarGrad(dense_model, noise_scale=-0.1)
    with pytest.raises(
        ValueError,
        match=r"internal_batch_size must be a positive int.*"
        r"Received: internal_batch_size=0",
    ):
        kx.SquareGrad(dense_model, internal_batch_size=0)


@pytest.mark.parametrize("cls", [kx.SmoothGrad, kx.SquareGrad, kx.VarGrad])
def test_noise_methods_do_not_depend_on_batch_size(cls, conv_model):
    # Each sample draws its noise from a seed of (seed, its row in x), so
    # chunking the batch gives the same result.
    x = helpers.data((8, 8, 2), batch=5)
    analyzer = cls(conv_model, samples=6, seed=11)
    whole = analyzer.analyze(x)
    np.testing.assert_allclose(analyzer.analyze(x, batch_size=2), whole, rtol=1e-5, atol=1e-6)
    other_seed = cls(conv_model, samples=6, seed=12).analyze(x)
    assert not np.allclose(other_seed, whole)


# -- GradientShap ---------------------------------------------------------------------------
def linear_model(seed=21):
    seeded(seed)
    return randomize(keras.Sequential([keras.Input((5,)), layers.Dense(3)]), seed)


def test_gradient_shap_one_baseline_without_noise_is_exact_on_a_linear_model():
    # every copy is (x − x') w_t, whatever its α
    model = linear_model()
    kernel = np.asarray(model.layers[0].kernel, np.float64)
    x, background = data((5,), seed=22, batch=4), data((5,), seed=23, batch=1)
    target = np.array([0, 1, 2, 0])
    result = kx.GradientShap(model, background=background, samples=3, seed=1).analyze(
        x, target=target
    )
    np.testing.assert_allclose(result, (x - background) * kernel[:, target].T, rtol=1e-5, atol=1e-6)


def test_gradient_shap_expectation_on_a_linear_model():
    # copy k contributes (x + ε_k − x'_k) w_t with ε ~ N(0, s²) and x'_k uniform over the
    # background: mean (x − mean(background)) w_t, per-copy variance w_t² (s² + var(bg)),
    # so K copies are within 4 standard errors w.p. > 0.9999 (the seed makes it fixed)
    model = linear_model()
    kernel = np.asarray(model.layers[0].kernel, np.float64)
    x, background = data((5,), seed=24, batch=2), data((5,), seed=25, batch=4)
    stddev, samples, target = 0.5, 400, np.array([1, 2])
    result = kx.GradientShap(
        model, background=background, samples=samples, noise_scale=stddev, seed=7
    ).analyze(x, target=target)
    weights = kernel[:, target].T
    expected = (x - background.mean(0)) * weights
    error = np.abs(weights) * np.sqrt(stddev**2 + background.var(0)) / np.sqrt(samples)
    assert np.all(np.abs(result - expected) <= 4 * error)
    # noise and random baselines change the result (stddev and background are used)
    assert np.abs(result - (x - background[0]) * weights).max() > 1e-3


def test_gradient_shap_seeded_reproducible_and_independent_of_passes():
    model = dense_chain(seed=26)
    x, background = data((6,), seed=27, batch=4), data((6,), seed=28, batch=6)

    def run(seed, **kwargs):
        return kx.GradientShap(
            model, background=background, samples=9, noise_scale=0.1, seed=seed, **kwargs
        )

    first = run(3).analyze(x)
    np.testing.assert_array_equal(first, run(3).analyze(x))
    # passes of 2 copies and batches of 1: the same draws, summed in another order
    np.testing.assert_allclose(
        run(3, internal_batch_size=2).analyze(x, batch_size=1), first, rtol=1e-5, atol=1e-6
    )
    assert np.abs(run(4).analyze(x) - first).max() > 1e-4
