"""Attribution at a layer: Integrated Gradients (Captum's LayerIntegratedGradients), internal
influence, layer conductance, DeepLIFT at a layer, ``attribute_to_layer_input`` and
``multiply_by_inputs=False``, each against a numpy reference of its definition.

The model is Dense(d1) -> ReLU(r1) -> Dense(d2) -> ReLU(r2) -> Dense(out), so the "head" from
r1's output to the logits is a small numpy function with a closed-form gradient. The
definitions are Captum's (captum/attr/_core/layer/*.py at faac0877); the same weights gave
max |ours - Captum| <= 1.7e-8 for every one of them (the comparison script is in the
closing note of issue #29).
"""

import keras
import numpy as np
import pytest

import keras_explain as kx

TARGET = 1


@pytest.fixture(scope="module")
def mlp():
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(5, name="d1"),
            layers.ReLU(name="r1"),
            layers.Dense(4, name="d2"),
            layers.ReLU(name="r2"),
            layers.Dense(3, name="out"),
        ]
    )


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6)).astype("float32")
    baseline = (0.3 * rng.normal(size=(6,))).astype("float32")
    return x, baseline


def weights(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.get_weights()}


def hidden(model, x):
    """r1's output, float64."""
    w, b = weights(model)["d1"]
    return np.maximum(x.astype(np.float64) @ w + b, 0)


def head(model, a):
    """The logit TARGET from r1's output a, and its gradient d logit / d a."""
    parts = weights(model)
    (w2, b2), (w3, b3) = parts["d2"], parts["out"]
    z = a @ w2 + b2
    logit = np.maximum(z, 0) @ w3[:, TARGET] + b3[TARGET]
    gradient = ((z > 0) * w3[:, TARGET]) @ w2.T
    return logit, gradient


def gauss_legendre(n):
    nodes, w = np.polynomial.legendre.leggauss(n)
    return (nodes + 1) / 2, w / 2


def test_integrated_gradients_at_a_layer_walks_between_the_layers_values(mlp, data):
    x, baseline = data
    ig = kx.IntegratedGradients(
        mlp, layer="r1", steps=16, method="gausslegendre", baseline=baseline
    )
    result = ig.analyze(x, target=TARGET)
    a, a0 = hidden(mlp, x), hidden(mlp, baseline[None])
    alphas, w = gauss_legendre(16)
    total = sum(wk * head(mlp, a0 + alpha * (a - a0))[1] for alpha, wk in zip(alphas, w))
    np.testing.assert_allclose(result, (a - a0) * total, rtol=1e-4, atol=1e-6)
    # completeness: every path goes through r1, so the sum is f(x) - f(x') (up to quadrature)
    delta = head(mlp, a)[0] - head(mlp, a0)[0]
    assert result.shape == (4, 5)
    np.testing.assert_allclose(result.sum(1), delta, atol=1e-5)
    # without the multiplication: the path's mean gradient (Captum's multiply_by_inputs=False)
    mean = kx.IntegratedGradients(
        mlp,
        layer="r1",
        steps=16,
        method="gausslegendre",
        baseline=baseline,
        multiply_by_inputs=False,
    ).analyze(x, target=TARGET)
    np.testing.assert_allclose(mean, total, rtol=1e-4, atol=1e-6)


def test_attribute_to_layer_input_is_the_output_of_the_layer_before(mlp, data):
    x, baseline = data
    kw = {"steps": 8, "baseline": baseline}
    np.testing.assert_allclose(
        kx.IntegratedGradients(mlp, layer="r1", attribute_to_layer_input=True, **kw).analyze(x),
        kx.IntegratedGradients(mlp, layer="d1", **kw).analyze(x),
        rtol=1e-6,
        atol=1e-8,
    )
    np.testing.assert_allclose(
        kx.Gradient(mlp, layer="r2", attribute_to_layer_input=True).analyze(x, target=TARGET),
        kx.Gradient(mlp, layer="d2").analyze(x, target=TARGET),
        rtol=1e-6,
    )
    # the first layer's input is the model input: plain Integrated Gradients
    np.testing.assert_allclose(
        kx.IntegratedGradients(mlp, layer="d1", attribute_to_layer_input=True, **kw).analyze(x),
        kx.IntegratedGradients(mlp, **kw).analyze(x),
        rtol=1e-5,
        atol=1e-7,
    )


def input_path(x, baseline, alphas):
    return [baseline[None] + alpha * (x - baseline[None]) for alpha in alphas]


def test_internal_influence_is_the_mean_layer_gradient_along_the_input_path(mlp, data):
    x, baseline = data
    result = kx.InternalInfluence(
        mlp, layer="r1", steps=12, method="gausslegendre", baseline=baseline
    ).analyze(x, target=TARGET)
    alphas, w = gauss_legendre(12)
    expected = sum(
        wk * head(mlp, hidden(mlp, point))[1]
        for point, wk in zip(input_path(x, baseline, alphas), w)
    )
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["trapezoid", "gausslegendre"])
def test_layer_conductance_sums_gradient_times_layer_change_over_consecutive_points(
    mlp, data, method
):
    x, baseline = data
    steps = 20
    conductance = kx.LayerConductance(
        mlp, layer="r1", steps=steps, method=method, baseline=baseline, internal_batch_size=12
    )  # 21 points in passes of 3 copies of 4 samples: the carry across passes is exercised
    result = conductance.analyze(x, target=TARGET)
    alphas = kx.analyzers.quadrature(method, steps + 1)[0]
    values = [hidden(mlp, point) for point in input_path(x, baseline, alphas)]
    gradients = [head(mlp, value)[1] for value in values]
    expected = sum(g * (after - before) for g, before, after in zip(gradients, values, values[1:]))
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)
    one_pass = kx.LayerConductance(mlp, layer="r1", steps=steps, method=method, baseline=baseline)
    np.testing.assert_allclose(one_pass.analyze(x, target=TARGET), result, rtol=1e-5, atol=1e-7)
    if method == "trapezoid":  # from x' to x exactly: sums to about f(x) - f(x')
        delta = head(mlp, hidden(mlp, x))[0] - head(mlp, hidden(mlp, baseline[None]))[0]
        np.testing.assert_allclose(result.sum(1), delta, atol=0.02 * np.abs(delta).max())


def test_deeplift_at_a_layer_rescales_the_layers_above(mlp, data):
    x, baseline = data
    result = kx.DeepLift(mlp, layer="r1", baseline=baseline).analyze(x, target=TARGET)
    parts = weights(mlp)
    (w2, b2), (w3, _) = parts["d2"], parts["out"]
    a, a0 = hidden(mlp, x), hidden(mlp, baseline[None])
    z, z0 = a @ w2 + b2, a0 @ w2 + b2
    rescale = np.where(
        np.abs(z - z0) < 1e-10,
        (z > 0).astype(float),
        (np.maximum(z, 0) - np.maximum(z0, 0)) / (z - z0),
    )
    multipliers = (rescale * w3[:, TARGET]) @ w2.T
    np.testing.assert_allclose(result, (a - a0) * multipliers, rtol=1e-4, atol=1e-6)
    delta = head(mlp, a)[0] - head(mlp, a0)[0]
    np.testing.assert_allclose(result.sum(1), delta, rtol=1e-5, atol=1e-6)  # summation to delta
    # at the ReLU's input (the output of d1): the ReLU's own Rescale is applied, and the sum
    # is still f(x) - f(x'); Captum's LayerDeepLift(attribute_to_layer_input=True) at a
    # non-linearity skips that rule and misses the delta by 0.082 on these weights
    at_input = kx.DeepLift(mlp, layer="r1", attribute_to_layer_input=True, baseline=baseline)
    np.testing.assert_allclose(
        at_input.analyze(x, target=TARGET),
        kx.DeepLift(mlp, layer="d1", baseline=baseline).analyze(x, target=TARGET),
        rtol=1e-6,
    )
    np.testing.assert_allclose(at_input.analyze(x, target=TARGET).sum(1), delta, atol=1e-5)
    multiplied = kx.DeepLift(mlp, layer="r1", baseline=baseline, multiply_by_inputs=False)
    np.testing.assert_allclose(multiplied.analyze(x, target=TARGET), multipliers, rtol=1e-4)


def test_multiply_by_inputs_false_returns_the_factor_before_the_multiplication(mlp, data):
    x, baseline = data
    difference = x - baseline[None]
    deeplift = kx.DeepLift(mlp, baseline=baseline).analyze(x, target=TARGET)
    multipliers = kx.DeepLift(mlp, baseline=baseline, multiply_by_inputs=False).analyze(
        x, target=TARGET
    )
    np.testing.assert_allclose(multipliers * difference, deeplift, rtol=1e-5, atol=1e-7)
    kw = {"steps": 8, "baseline": baseline}
    ig = kx.IntegratedGradients(mlp, **kw).analyze(x, target=TARGET)
    mean_gradient = kx.IntegratedGradients(mlp, multiply_by_inputs=False, **kw).analyze(
        x, target=TARGET
    )
    np.testing.assert_allclose(mean_gradient * difference, ig, rtol=1e-5, atol=1e-7)
    keras.utils.set_random_seed(3)
    linear = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    background = np.random.default_rng(2).normal(size=(5, 6)).astype("float32")
    shap = kx.GradientShap(linear, background=background, seed=0, multiply_by_inputs=False)
    w = linear.get_weights()[0][:, TARGET]  # the gradient of a linear logit, at every point
    np.testing.assert_allclose(shap.analyze(x, target=TARGET), np.tile(w, (4, 1)), rtol=1e-6)


def test_layer_attribution_errors(mlp):
    with pytest.raises(
        ValueError,
        match=r"Gradient: attribute_to_layer_input=True attributes the input of the layer given "
        r"as layer=, and no layer was given\. Received: layer=None",
    ):
        kx.Gradient(mlp, attribute_to_layer_input=True)
    first = keras.Input((3,))
    second = keras.Input((3,))
    added = keras.layers.Add(name="sum")([first, second])
    two = keras.Model([first, second], keras.layers.Dense(2)(added))
    with pytest.raises(
        ValueError,
        match=r"attribute_to_layer_input=True needs a layer that reads one tensor once; layer "
        r"'sum' reads 2",
    ):
        kx.Gradient(two, layer="sum", attribute_to_layer_input=True)
    with pytest.raises(
        ValueError, match=r"LayerConductance attributes the units of a layer; pass layer="
    ):
        kx.LayerConductance(mlp)
    with pytest.raises(TypeError, match=r"InternalInfluence got an unexpected parameter"):
        kx.InternalInfluence(mlp, layer="r1", multiply_by_inputs=True)


def test_gradient_shap_at_a_layer_multiplies_by_the_layers_change(mlp, data):
    x, _ = data
    background = np.random.default_rng(5).normal(size=(3, 6)).astype("float32")
    # at r2, the last hidden layer, the gradient of the logit is the constant w_out[:, t]:
    # every copy gives w ⊙ (a(x̃) − a(x')) whatever its path point (Captum gives the same)
    shap = kx.GradientShap(mlp, background=background, samples=40, seed=1, layer="r2")
    w_out = weights(mlp)["out"][0][:, TARGET]
    parts = weights(mlp)

    def r2(points):
        (w2, b2) = parts["d2"]
        return np.maximum(hidden(mlp, points) @ w2 + b2, 0)

    mean_baseline = np.mean([r2(row[None]) for row in background], axis=0)
    result = shap.analyze(x, target=TARGET)
    assert result.shape == (4, 4)
    # noise_scale=0: a(x̃) = a(x); the mean over copies of a(x'_k) tends to the background's mean
    expected = w_out * (r2(x) - mean_baseline)
    np.testing.assert_allclose(result, expected, atol=0.25 * np.abs(expected).max())
    exact = kx.GradientShap(mlp, background=background[:1], samples=3, seed=1, layer="r2")
    np.testing.assert_allclose(
        exact.analyze(x, target=TARGET), w_out * (r2(x) - r2(background[:1])), rtol=1e-5, atol=1e-7
    )


def test_neuron_conductance_integrates_the_gradient_through_one_unit(mlp, data):
    x, baseline = data
    kw = {"steps": 16, "method": "gausslegendre", "baseline": baseline}
    neuron = 2
    result = kx.NeuronConductance(mlp, layer="r1", neuron=neuron, **kw).analyze(x, target=TARGET)
    w1, b1 = weights(mlp)["d1"]
    alphas, w = gauss_legendre(16)
    total = 0
    for point, wk in zip(input_path(x, baseline, alphas), w):
        through = head(mlp, hidden(mlp, point))[1][:, neuron]  # d logit / d y_n
        active = (point.astype(np.float64) @ w1[:, neuron] + b1[neuron]) > 0  # d y_n / d z_n
        total = total + wk * (through * active)[:, None] * w1[:, neuron][None]
    np.testing.assert_allclose(result, (x - baseline) * total, rtol=1e-4, atol=1e-6)
    # every path goes through r1: the units' conductances add up to Integrated Gradients
    units = [
        kx.NeuronConductance(mlp, layer="r1", neuron=(unit,), **kw).analyze(x, target=TARGET)
        for unit in range(5)
    ]
    ig = kx.IntegratedGradients(mlp, **kw).analyze(x, target=TARGET)
    np.testing.assert_allclose(np.sum(units, axis=0), ig, rtol=1e-4, atol=1e-6)
    with pytest.raises(
        ValueError, match=r"ThroughNeuron: neuron=5 is outside the layer's 5 units per sample"
    ):
        kx.NeuronConductance(mlp, layer="r1", neuron=5)
    with pytest.raises(ValueError, match=r"neuron selects one unit .* Received: neuron=None"):
        kx.NeuronConductance(mlp, layer="r1")
