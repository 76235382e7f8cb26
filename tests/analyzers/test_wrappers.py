"""NoiseTunnel and PathIntegral: composition, bounded passes, running sums, no retracing.

SmoothGrad, SquareGrad, VarGrad and Integrated Gradients are these wrappers
around Gradient; here they compose with LRP and guided backprop (each checked
against a hand loop over the copies), and every result is unchanged when the
copies run in passes that do not divide the work. The path quadratures against
numpy's.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx
from keras_explain.analyzers import quadrature

layers = keras.layers


def target_of(model, x):
    return np.argmax(model(x).numpy(), axis=1)


def test_smoothgrad_is_a_noise_tunnel_around_gradient(conv_model):
    x = helpers.data((8, 8, 2))
    smooth = kx.SmoothGrad(conv_model, samples=6, noise_scale=0.2, seed=3)
    assert isinstance(smooth, kx.NoiseTunnel) and isinstance(smooth.analyzer, kx.Gradient)
    tunnel = kx.NoiseTunnel(kx.Gradient(conv_model), samples=6, noise_scale=0.2, seed=3)
    np.testing.assert_array_equal(smooth.analyze(x), tunnel.analyze(x))
    for cls, kind in ((kx.SquareGrad, "squaregrad"), (kx.VarGrad, "vargrad")):
        wrapped = kx.NoiseTunnel(kx.Gradient(conv_model), kind=kind, samples=5, seed=1)
        np.testing.assert_array_equal(
            cls(conv_model, samples=5, seed=1).analyze(x), wrapped.analyze(x)
        )
    ig = kx.IntegratedGradients(conv_model, steps=7, method="riemann_middle")
    path = kx.PathIntegral(kx.Gradient(conv_model), steps=7, method="riemann_middle")
    assert isinstance(ig, kx.PathIntegral)
    np.testing.assert_array_equal(ig.analyze(x), path.analyze(x))


@pytest.mark.parametrize("kind", ["smoothgrad", "squaregrad", "vargrad"])
def test_noise_tunnel_of_lrp_equals_a_hand_loop_over_noisy_copies(conv_model, kind):
    x = helpers.data((8, 8, 2), batch=3)
    target = target_of(conv_model, x)  # fixed on the clean input, as the wrapper does
    tunnel = kx.NoiseTunnel(
        kx.LRPEpsilon(conv_model, epsilon=0.01), kind=kind, samples=5, noise_scale=0.3, seed=7
    )
    copies = tunnel.noisy_copies([tf.constant(x)], tf.constant([7, 0], tf.int64))[0].numpy()
    lrp = kx.LRPEpsilon(conv_model, epsilon=0.01)
    relevances = np.stack([lrp.analyze(copy, target) for copy in copies])
    expected = {
        "smoothgrad": relevances.mean(0),
        "squaregrad": (relevances**2).mean(0),
        "vargrad": relevances.var(0),
    }[kind]
    np.testing.assert_allclose(tunnel.analyze(x), expected, rtol=1e-4, atol=1e-6)


def test_path_integral_of_guided_backprop_equals_a_hand_loop(conv_model):
    x = helpers.data((8, 8, 2), batch=3)
    target = target_of(conv_model, x)
    baseline = np.float32(0.25)
    alphas, weights = kx.analyzers.quadrature("trapezoid", 5)
    guided = kx.GuidedBackprop(conv_model)
    total = sum(
        w * guided.analyze((baseline + a * (x - baseline)).astype("float32"), target)
        for a, w in zip(alphas, weights)
    )
    result = kx.PathIntegral(kx.GuidedBackprop(conv_model), steps=5, baseline=0.25).analyze(x)
    np.testing.assert_allclose(result, (x - baseline) * total, rtol=1e-4, atol=1e-6)


def test_path_integral_of_lrp_integrates_the_relevance(conv_model):
    # as Zennit's IntegratedGradients with a composite: (x - x') * mean_k R(x_k)
    x = helpers.data((8, 8, 2), batch=2)
    target = target_of(conv_model, x)
    lrp = kx.LRPZ(conv_model)
    alphas, weights = kx.analyzers.quadrature("riemann_right", 4)
    total = sum(w * lrp.analyze((a * x).astype("float32"), target) for a, w in zip(alphas, weights))
    wrapped = kx.PathIntegral(kx.LRPZ(conv_model), steps=4, method="riemann_right")
    np.testing.assert_allclose(wrapped.analyze(x), x * total, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "name,params",
    [
        ("integrated_gradients", {"steps": 10}),
        ("smoothgrad", {"samples": 10, "seed": 2}),
        ("squaregrad", {"samples": 10, "seed": 2}),
        ("vargrad", {"samples": 10, "seed": 2}),
    ],
)
def test_passes_that_do_not_divide_the_work_give_the_same_result(conv_model, name, params):
    x = helpers.data((8, 8, 2), batch=4)
    whole = kx.create_analyzer(name, conv_model, **params).analyze(x)
    # 12 rows per pass = 3 copies of the 4 samples: 10 copies need 4 passes (3, 3, 3, 1)
    split = kx.create_analyzer(name, conv_model, internal_batch_size=12, **params).analyze(x)
    scale = np.abs(whole).max()
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6 * scale)


def test_memory_budget_bounds_the_passes(conv_model, capsys):
    x = helpers.data((8, 8, 2), batch=2)
    whole = kx.IntegratedGradients(conv_model, steps=16).analyze(x)
    previous = kx.config.memory_budget()
    try:
        # a budget of a few rows forces many passes; the result does not change
        kx.config.set_memory_budget(4096)
        bounded = kx.IntegratedGradients(conv_model, steps=16, verbose=1)
        result = bounded.analyze(x)
        per_pass = bounded.copies_per_pass([tf.constant(x)], backward=True)
    finally:
        kx.config.set_memory_budget(previous)
    np.testing.assert_allclose(result, whole, rtol=1e-5, atol=1e-7)
    assert per_pass < 16
    passes = -(-16 // per_pass)
    assert f"{passes}/{passes}" in capsys.readouterr().err


def test_vargrad_running_moments_are_exact_where_the_naive_formula_cancels():
    # grad f = x + 100: the gradients' variance is the noise's, tiny next to their
    # squared mean, where E[g^2] - E[g]^2 in float32 loses every digit
    inputs = keras.Input((4,))
    outputs = layers.Lambda(lambda v: 0.5 * keras.ops.sum((v + 100.0) ** 2, axis=1, keepdims=True))(
        inputs
    )
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).uniform(size=(3, 4)).astype("float32")
    analyzer = kx.VarGrad(model, samples=9, noise_scale=0.01, seed=5, internal_batch_size=6)
    copies = analyzer.noisy_copies([tf.constant(x)], tf.constant([5, 0], tf.int64))[0].numpy()
    gradients = (copies + np.float32(100.0)).astype(np.float32)  # what the model's gradient is
    expected = gradients.astype(np.float64).var(axis=0)
    np.testing.assert_allclose(analyzer.analyze(x, target=0), expected, rtol=1e-3)
    naive = (gradients**2).mean(0) - gradients.mean(0) ** 2  # float32, for contrast
    assert np.abs(naive / expected - 1).max() > 0.5


def test_changing_steps_or_samples_does_not_retrace(conv_model):
    x = helpers.data((8, 8, 2))
    ig = kx.IntegratedGradients(conv_model, steps=4)
    first = ig.analyze(x, target=1)
    ig.steps = 9
    second = ig.analyze(x, target=1)
    (function,) = ig._functions.values()
    assert function.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(
        second, kx.IntegratedGradients(conv_model, steps=9).analyze(x, target=1), rtol=1e-6
    )
    assert not np.allclose(first, second)
    smooth = kx.SmoothGrad(conv_model, samples=3, seed=0)
    smooth.analyze(x, target=1)
    smooth.samples, smooth.noise_scale = 7, 0.3
    smooth.analyze(x, target=1)
    (function,) = smooth._functions.values()
    assert function.experimental_get_tracing_count() == 1


def test_noise_tunnel_composes_with_cam_and_at_layer(conv_model):
    x = helpers.data((8, 8, 2))
    maps = kx.NoiseTunnel(kx.GradCAM(conv_model), samples=3, seed=0).analyze(x)
    assert maps.shape == (4, 8, 8)
    zero_noise = kx.NoiseTunnel(kx.GradCAM(conv_model), samples=3, noise_scale=0.0)
    np.testing.assert_allclose(zero_noise.analyze(x), kx.GradCAM(conv_model).analyze(x), rtol=1e-5)
    layer = conv_model.layers[2].name
    at_layer = kx.NoiseTunnel(kx.Gradient(conv_model, layer=layer), samples=2, noise_scale=0.0)
    np.testing.assert_allclose(
        at_layer.analyze(x), kx.Gradient(conv_model, layer=layer).analyze(x), rtol=1e-6
    )


def test_wrapper_errors(conv_model, subclassed_model):
    with pytest.raises(TypeError, match=r"PathIntegral wraps a backpropagation analyzer.*Occlus"):
        kx.PathIntegral(kx.Occlusion(conv_model))
    with pytest.raises(TypeError, match=r"NoiseTunnel wraps an analyzer\. Received: int"):
        kx.NoiseTunnel(3)
    with pytest.raises(ValueError, match=r"Unknown kind\. Received: kind='smooth'"):
        kx.NoiseTunnel(kx.Gradient(conv_model), kind="smooth")
    with pytest.raises(ValueError, match=r"a CAM map is neither\. Received: GradCAM maps"):
        kx.PathIntegral(kx.GradCAM(conv_model))
    with pytest.raises(
        TypeError,
        match=r"IntegratedGradients got an unexpected parameter 'stepz'\. Did you mean 'steps'\? "
        r"Valid: .*baseline.*internal_batch_size.*method.*steps",
    ):
        kx.IntegratedGradients(conv_model, stepz=4)
    with pytest.raises(TypeError, match=r"SmoothGrad got an unexpected parameter 'sample'"):
        kx.SmoothGrad(conv_model, sample=4)
    with pytest.raises(TypeError, match=r"NoiseTunnel got an unexpected parameter 'steps'"):
        kx.NoiseTunnel(kx.Gradient(conv_model), steps=4)
    for bad in (0, 2.5, True):
        with pytest.raises(
            ValueError,
            match=rf"internal_batch_size must be a positive int\. Received: "
            rf"internal_batch_size={bad!r}\. Pass None for rows chosen from the memory budget",
        ):
            kx.SmoothGrad(conv_model, internal_batch_size=bad)
    with pytest.raises(
        ValueError, match=r"batch_size must be a positive int\. Received: batch_size=0"
    ):
        kx.Gradient(conv_model).analyze(helpers.data((8, 8, 2)), batch_size=0)
    for bad in (0, -5, 1.5):
        with pytest.raises(
            ValueError, match=rf"memory budget must be a positive int.*budget={bad}"
        ):
            kx.config.set_memory_budget(bad)
    # a subclassed model has no graph; the wrappers still work on its gradient
    assert kx.SmoothGrad(subclassed_model, samples=2).analyze(helpers.data((6,))).shape == (4, 6)


def test_a_wrapper_binds_the_analyzer_it_wraps():
    model = helpers.dense_sequential()
    inner = kx.LRPEpsilon(model, output_layer=model.layers[0])
    tunnel = kx.NoiseTunnel(inner, samples=2)
    for name in ("model", "plan", "output_key", "output_layer", "strip_softmax"):
        assert getattr(tunnel, name) is getattr(inner, name)
        assert name not in vars(tunnel)  # read through, never copied
    assert tunnel.backward_memory_factor == inner.backward_memory_factor == 1.1


trapezoid = getattr(np, "trapezoid", None) or np.trapz


# -- quadrature ---------------------------------------------------------------
@pytest.mark.parametrize("steps", [2, 3, 7, 64])
def test_trapezoid_matches_numpy(steps):
    alphas, weights = quadrature("trapezoid", steps)
    np.testing.assert_allclose(alphas, np.linspace(0.0, 1.0, steps), rtol=0, atol=1e-15)
    assert alphas[0] == 0.0 and alphas[-1] == 1.0  # both end points evaluated
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-12)
    for function in (np.exp, np.sin, lambda a: a**3 - 2 * a):
        values = function(np.linspace(0.0, 1.0, steps))
        np.testing.assert_allclose(
            weights @ values, trapezoid(values, np.linspace(0, 1, steps)), rtol=1e-12
        )


@pytest.mark.parametrize("steps", [1, 4, 16])
def test_gauss_legendre_matches_numpy_and_is_exact_for_polynomials(steps):
    alphas, weights = quadrature("gausslegendre", steps)
    nodes, reference = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
    order = np.argsort(alphas)
    np.testing.assert_allclose(alphas[order], np.sort((nodes + 1) / 2), atol=1e-14)
    np.testing.assert_allclose(weights[order], reference[np.argsort(nodes)] / 2, atol=1e-14)
    for degree in range(2 * steps):  # exact up to degree 2n - 1
        np.testing.assert_allclose(weights @ alphas**degree, 1.0 / (degree + 1), rtol=1e-10)


@pytest.mark.parametrize(
    "method,first,last",
    [
        ("riemann_left", 0.0, 5 / 6),
        ("riemann_right", 1 / 6, 1.0),
        ("riemann_middle", 1 / 12, 11 / 12),
    ],
)
def test_riemann_points(method, first, last):
    alphas, weights = quadrature(method, 6)
    np.testing.assert_allclose(alphas, np.linspace(first, last, 6), atol=1e-15)
    np.testing.assert_allclose(weights, np.full(6, 1 / 6), atol=1e-15)
