"""DeepLIFT (Rescale) and DeepLiftShap: closed forms, numpy references, summation-to-delta."""

import keras
import numpy as np
import pytest
from helpers import data, deeplift_chain_reference, dense_chain, lrp_net, randomize, seeded

import keras_explain as kx

layers = keras.layers


def relu(z):
    return np.maximum(z, 0.0)


def chain_steps(model, functions=(relu, np.tanh)):
    steps = []
    denses = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    for dense, function in zip(denses, list(functions) + [None]):
        steps.append(("dense", dense))
        if function is not None:
            steps.append(("act", function))
    return steps


def outputs(model, x, target):
    values = np.asarray(model(np.asarray(x, "float32")), np.float64)
    return values[np.arange(len(values)), target]


def assert_summation_to_delta(model, x, baseline, target, analyzer=None):
    """Σ attributions = f_t(x) − f_t(x'), within 1e-5 of |f_t(x) − f_t(x')|."""
    analyzer = analyzer or kx.DeepLift(model, baseline=baseline)
    attributions = analyzer.analyze(x, target=target)
    delta = outputs(model, x, target) - outputs(model, np.broadcast_to(baseline, x.shape), target)
    sums = attributions.reshape(len(x), -1).sum(1, dtype=np.float64)
    # float32 forward passes: the two sides differ by rounding only (~1e-7 relative)
    np.testing.assert_allclose(sums, delta, rtol=1e-5, atol=1e-6)
    assert np.abs(delta).max() > 1e-1  # the check is not vacuous


# -- closed forms ---------------------------------------------------------------------
def captum_relu_model():
    """Captum's ReLUDeepLiftModel: f(x1, x2) = 2 relu(x1) + 2 relu(x2 − 1.5)."""
    x1, x2 = keras.Input((1,)), keras.Input((1,))
    out = 2 * layers.ReLU()(x1) + 2 * layers.ReLU()(x2 - 1.5)
    return keras.Model([x1, x2], out)


def test_captum_closed_form_model():
    # Captum's test_relu_deeplift: x = (1, 2), baselines 0 -> attributions (2, 1), delta 0:
    # 2 (relu(1) − relu(0)) = 2 and 2 (relu(0.5) − relu(−1.5)) = 1
    model = captum_relu_model()
    a1, a2 = kx.DeepLift(model).analyze(
        [np.array([[1.0]], "float32"), np.array([[2.0]], "float32")]
    )
    np.testing.assert_array_equal(a1, [[2.0]])
    np.testing.assert_array_equal(a2, [[1.0]])
    # a baseline per input: x2' = 1 gives 2 (relu(0.5) − relu(−0.5)) = 1, x1' = 0.5 gives 1
    b1, b2 = kx.DeepLift(model, baseline=[0.5, 1.0]).analyze(
        [np.array([[1.0]], "float32"), np.array([[2.0]], "float32")]
    )
    np.testing.assert_allclose([b1[0, 0], b2[0, 0]], [1.0, 1.0], rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "params, multiplier",
    [
        # |Δx| = 6e-7 > eps = 1e-10: Rescale, (relu(3e-7) − relu(−3e-7)) / 6e-7 = ½
        ({}, 0.5),
        # |Δx| = 6e-7 < eps = 1e-5: the derivative relu'(3e-7) = 1
        ({"epsilon": 1e-5}, 1.0),
    ],
)
def test_rescale_switches_to_the_derivative_below_eps(params, multiplier):
    x = np.float32(3e-7)
    model = keras.Sequential([keras.Input((1,)), layers.Activation("relu")])
    result = kx.DeepLift(model, baseline=-x, **params).analyze(np.array([[x]]), target=0)
    # attribution Δx · m = 2x · m; in float32 x − (−x) = 2x and x / 2x = ½ are exact, so
    # only a reordering of the product could move the result, by one rounding (6e-8)
    np.testing.assert_allclose(result, [[2 * x * multiplier]], rtol=2e-7, atol=0)


def max_pool_model():
    inputs = keras.Input((4, 1))
    out = layers.Flatten()(layers.MaxPooling1D(4)(inputs))
    return keras.Model(inputs, out)


@pytest.mark.parametrize(
    "baseline, expected",
    [
        # y = 3 > y' = 1: the whole Δy = 2 goes to the input's maximum (position 1)
        ([0.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 0.0]),
        # y = 3 < y' = 5: Δy = −2 goes to the baseline's maximum (position 2), where
        # Δx = −3 (Captum's max-pool rule; the gradient would give 0 there)
        ([0.0, 0.0, 5.0, 0.0], [0.0, 0.0, -2.0, 0.0]),
    ],
)
def test_max_pool_rule_closed_form(baseline, expected):
    x = np.array([[1.0, 3.0, 2.0, 0.0]], "float32")[..., None]
    baseline = np.array(baseline, "float32")[:, None]
    result = kx.DeepLift(max_pool_model(), baseline=baseline).analyze(x, target=0)
    np.testing.assert_allclose(result[0, :, 0], expected, rtol=0, atol=1e-6)


def test_one_kink_path_equals_integrated_gradients():
    # f(x) = v relu(w·x + b): on the straight path z(α) = z' + α (z − z') crosses the kink
    # once, IG = (x − x') w v (fraction of the path with z > 0) = (x − x') w v
    # (relu(z) − relu(z')) / (z − z'), which is DeepLIFT-Rescale exactly.
    seeded(1)
    model = keras.Sequential(
        [keras.Input((3,)), layers.Dense(1, activation="relu"), layers.Dense(1)]
    )
    w, b = (np.asarray(v, np.float64) for v in model.layers[0].get_weights())
    v, c = (np.asarray(t, np.float64) for t in model.layers[1].get_weights())
    x = np.array([[1.0, -0.5, 2.0]], "float32")
    z = float(x[0].astype(np.float64) @ w[:, 0] + b[0])
    baseline = -np.sign(z) * x  # z and z' = −z + 2b sit on both sides of the kink
    z0 = float(baseline[0].astype(np.float64) @ w[:, 0] + b[0])
    assert z * z0 < 0
    fraction = (relu(z) - relu(z0)) / (z - z0)
    closed_form = (x[0] - baseline[0]) * w[:, 0] * v[0, 0] * fraction
    result = kx.DeepLift(model, baseline=baseline[0]).analyze(x, target=0)
    np.testing.assert_allclose(result[0], closed_form, rtol=1e-5, atol=1e-7)
    ig = kx.IntegratedGradients(
        model, steps=1000, method="riemann_middle", baseline=baseline[0], verbose=0
    ).analyze(x, target=0)
    # the midpoint rule on a step function: the fraction is off by at most 1/1000
    np.testing.assert_allclose(ig[0], closed_form, rtol=2e-3 / fraction, atol=1e-6)


# -- numpy references ------------------------------------------------------------------
def test_dense_chain_matches_numpy_reference():
    model = dense_chain()
    x = data((6,), seed=1, batch=5)
    baseline = data((6,), seed=2, batch=1)[0]
    target = np.array([0, 1, 2, 1, 0])
    result = kx.DeepLift(model, baseline=baseline).analyze(x, target=target)
    expected = deeplift_chain_reference(chain_steps(model), x, baseline, target)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)
    # the rule is not the gradient: input × gradient differs on this net
    gradient = kx.Gradient(model).analyze(x, target=target) * (x - baseline)
    assert np.abs(gradient - expected).max() > 1e-2


def test_shared_relu_layer_gets_multipliers_per_call():
    # Captum's issue #1082: one ReLU module used twice gets the multipliers of its last
    # call. Here each call of the shared layer has its own Rescale rule.
    seeded(3)
    shared = layers.ReLU(name="shared_relu")
    inputs = keras.Input((6,))
    first, second, logits = layers.Dense(6), layers.Dense(6), layers.Dense(3)
    out = logits(shared(second(shared(first(inputs)))))
    model = randomize(keras.Model(inputs, out), 3)
    x, baseline = data((6,), seed=4, batch=4), data((6,), seed=5, batch=1)[0]
    target = np.array([2, 0, 1, 2])
    result = kx.DeepLift(model, baseline=baseline).analyze(x, target=target)
    steps = [("dense", first), ("act", relu), ("dense", second), ("act", relu)]
    expected = deeplift_chain_reference(steps + [("dense", logits)], x, baseline, target)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)
    assert_summation_to_delta(model, x, baseline, target)


# -- summation-to-delta ------------------------------------------------------------------
@pytest.mark.parametrize("activations", [("relu", "relu"), ("tanh", "tanh"), ("sigmoid", "elu")])
def test_summation_to_delta_dense(activations):
    model = dense_chain(activations, seed=6)
    x, baseline = data((6,), seed=7, batch=6), data((6,), seed=8, batch=6)
    assert_summation_to_delta(model, x, baseline, np.arange(6) % 3)


def test_summation_to_delta_max_pool_and_batch_norm():
    # lrp_net: Conv2D, BatchNormalization (random statistics, inference), max pooling,
    # ReLU, Add, average pooling; random baselines make some pooling windows' maximum
    # the baseline's
    model = lrp_net(seed=9)
    x = data((8, 8, 2), seed=10, batch=4)
    baseline = data((8, 8, 2), seed=11, batch=4)
    assert_summation_to_delta(model, x, baseline, np.array([0, 1, 2, 0]))
    # on this net the gradient rule would not sum to the delta
    plain = kx.Gradient(model).analyze(x, target=[0, 1, 2, 0]) * (x - baseline)
    delta = outputs(model, x, [0, 1, 2, 0]) - outputs(model, baseline, [0, 1, 2, 0])
    assert np.abs(plain.reshape(4, -1).sum(1) - delta).max() > 1e-2


def test_conv_tanh_max_pool_batch_norm_net():
    seeded(12)
    model = keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            layers.Conv2D(4, 3, activation="tanh"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(2),
            layers.Activation("relu"),
            layers.Flatten(),
            layers.Dense(4),
        ]
    )
    model = randomize(model, 12)
    x, baseline = data((10, 10, 1), seed=13, batch=3), data((10, 10, 1), seed=14, batch=1)[0]
    assert_summation_to_delta(model, x, baseline, np.array([3, 1, 0]))


# -- DeepLiftShap -------------------------------------------------------------------------
def test_deeplift_shap_is_mean_of_deeplift_over_background():
    model = dense_chain(seed=15)
    x = data((6,), seed=16, batch=3)
    background = data((6,), seed=17, batch=5)
    target = np.array([1, 2, 0])
    expected = np.mean(
        [deeplift_chain_reference(chain_steps(model), x, b, target) for b in background], axis=0
    )
    whole = kx.DeepLiftShap(model, background=background).analyze(x, target=target)
    np.testing.assert_allclose(whole, expected, rtol=1e-4, atol=1e-6)
    # 2 rows per pass: passes of 1 background row for the batch of 3 (5 passes), and the
    # batch split in 2: the same sums in another order (float32 rounding only)
    split = kx.DeepLiftShap(model, background=background, internal_batch_size=2).analyze(
        x, target=target, batch_size=2
    )
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6)
    # it sums to f(x) − mean_j f(x'_j)
    mean_reference = np.mean(
        [outputs(model, np.repeat(b[None], 3, 0), target) for b in background], 0
    )
    np.testing.assert_allclose(
        whole.sum(1), outputs(model, x, target) - mean_reference, rtol=1e-5, atol=1e-6
    )


def test_deeplift_shap_default_target_is_the_inputs_argmax():
    model = dense_chain(seed=18)
    x, background = data((6,), seed=19, batch=4), data((6,), seed=20, batch=3)
    argmax = np.asarray(model(x)).argmax(1)
    np.testing.assert_array_equal(
        kx.DeepLiftShap(model, background=background).analyze(x),
        kx.DeepLiftShap(model, background=background).analyze(x, target=argmax),
    )


# -- composition, registry ------------------------------------------------------------------
def test_registry_and_noise_tunnel():
    model = dense_chain(seed=29)
    x, baseline = data((6,), seed=30, batch=3), data((6,), seed=31, batch=1)[0]
    direct = kx.DeepLift(model, baseline=baseline).analyze(x)
    by_name = kx.create_analyzer("deeplift", model, baseline=baseline).analyze(x)
    np.testing.assert_array_equal(by_name, direct)
    assert isinstance(kx.create_analyzer("deeplift_shap", model, background=x), kx.DeepLiftShap)
    assert isinstance(kx.create_analyzer("gradient_shap", model, background=x), kx.GradientShap)
    # noise-free copies explain the clean input's class: the mean is DeepLIFT itself
    tunnel = kx.NoiseTunnel(kx.DeepLift(model, baseline=baseline), samples=3, noise_scale=0.0)
    np.testing.assert_allclose(tunnel.analyze(x), direct, rtol=1e-6, atol=1e-7)
    # with noise, the mean of DeepLIFT over noisy copies sums to mean f(x̃) − f(x')
    noisy = kx.NoiseTunnel(kx.DeepLift(model, baseline=baseline), samples=4, seed=0)
    assert np.abs(noisy.analyze(x) - direct).max() > 1e-4


# -- bad input -------------------------------------------------------------------------------
def test_bad_input():
    model = dense_chain(seed=32)
    with pytest.raises(ValueError, match=r"baseline must be a scalar.*Received: shape \(5,\)"):
        kx.DeepLift(model, baseline=np.zeros(5))
    with pytest.raises(ValueError, match=r"DeepLiftShap: background is empty.*shape \(0, 6\)"):
        kx.DeepLiftShap(model, background=np.zeros((0, 6)))
    with pytest.raises(ValueError, match=r"GradientShap: background must be shaped \(N, 6\)"):
        kx.GradientShap(model, background=np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"GradientShap needs background=.*background=None"):
        kx.GradientShap(model)
    with pytest.raises(TypeError, match=r"DeepLiftShap averages over background=.*kx.DeepLift"):
        kx.DeepLiftShap(model, baseline=0.0, background=np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"PathIntegral integrates .*Received: DeepLift"):
        kx.PathIntegral(kx.DeepLift(model))
    with pytest.raises(ValueError, match=r"baseline must be .* like the batch \(4, 6\)"):
        kx.DeepLift(model, baseline=np.zeros((3, 6))).analyze(data((6,), batch=4))
