"""Stability metrics against closed forms and slow one-copy-at-a-time numpy references."""

import helpers
import keras
import numpy as np
import pytest
from helpers import linear_dense_model as linear_model

import keras_explain as kx

layers = keras.layers
SAMPLES = 4
EPSILON = 1e-6  # Agarwal et al.'s ε_min (Quantus' eps_min)


def given(delta):
    """A perturbation callable returning the fixed d (B * samples, ...) it was made with."""
    return lambda repeated: delta


def logits_of(model, x):
    return np.asarray(model(np.asarray(x, np.float32)), np.float64)


def relative(values, reference):
    """(reference - values) / reference, zeros of the reference replaced by ε_min (Quantus)."""
    reference = np.asarray(reference, np.float64)
    return (reference - values) / np.where(reference == 0, EPSILON, reference)


# =====================================================================================
# Closed forms on linear models
# =====================================================================================
def test_the_gradient_of_a_linear_model_does_not_move():
    """e = w_t for every input: every stability metric is exactly 0."""
    model = linear_model()
    x = helpers.data((6,), seed=7)
    gradient = kx.Gradient(model)
    zeros = np.zeros(len(x))
    m = kx.metrics
    np.testing.assert_array_equal(m.avg_sensitivity(gradient, x, noise_scale=0.5), zeros)
    np.testing.assert_array_equal(m.local_lipschitz_estimate(gradient, x), zeros)
    np.testing.assert_array_equal(m.relative_input_stability(gradient, x), zeros)
    np.testing.assert_array_equal(m.relative_output_stability(gradient, x), zeros)
    layer = model.layers[-1]
    np.testing.assert_array_equal(
        m.relative_representation_stability(gradient, x, layer=layer), zeros
    )
    image_model, _ = helpers.linear_unit_model()
    images = np.random.default_rng(1).uniform(0, 1, (2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(m.continuity(kx.Gradient(image_model), images, steps=6), [0, 0])


def test_input_times_weight_moves_exactly_as_the_input():
    """e = w * x: (e_x - e_x') / e_x = (x - x') / x, so RIS = 1; the others in closed form.

    avg_sensitivity = mean_k ||w d_k|| / ||w x||, the Lipschitz estimate is
    max_k ||w d_k|| / ||d_k||, and ROS = max_k ||d_k / x|| / ||W^T d_k|| (logits h = W^T x + b).
    """
    model = linear_model(bias=True, seed=3)
    kernel = model.get_weights()[0].astype(np.float64)
    x = np.random.default_rng(2).uniform(0.5, 1.5, (3, 6)).astype("float32")
    target = np.argmax(logits_of(model, x), axis=1)
    w = kernel[:, target].T  # (B, 6): the explained class's weights
    delta = np.random.default_rng(3).uniform(-0.01, 0.01, (3 * SAMPLES, 6)).astype("float32")
    d = delta.astype(np.float64).reshape(3, SAMPLES, 6)
    copies = (x[:, None] + d).reshape(-1, 6)
    kept = np.argmax(logits_of(model, copies), axis=1).reshape(3, SAMPLES) == target[:, None]
    assert kept.all()  # the noise is too small to change the class

    def explain(inputs, t):
        return inputs * kernel[:, np.broadcast_to(t, len(inputs))].T

    options = dict(samples=SAMPLES, perturbation=given(delta))
    m = kx.metrics
    w_d = np.linalg.norm(w[:, None] * d, axis=2)
    np.testing.assert_allclose(
        m.avg_sensitivity(explain, x, target, **options),
        w_d.mean(axis=1) / np.linalg.norm(w * x, axis=1),
        rtol=2e-4,  # x + d is rounded to float32 before it is explained
    )
    np.testing.assert_allclose(
        m.local_lipschitz_estimate(explain, x, target, **options),
        (w_d / np.linalg.norm(d, axis=2)).max(axis=1),
        rtol=2e-4,
    )
    ris = m.relative_input_stability(explain, x, target, model=model, **options)
    np.testing.assert_allclose(ris, np.ones(3), rtol=1e-5)
    ros = m.relative_output_stability(explain, x, target, model=model, **options)
    expected = np.linalg.norm(d / x[:, None], axis=2) / np.linalg.norm(d @ kernel, axis=2)
    np.testing.assert_allclose(ros, expected.max(axis=1), rtol=2e-3)


def test_continuity_of_input_times_weight_on_a_linear_image_model():
    """e = w * x: ||e(x) - e(x_k)||_1 / ||x - x_k||_2 = ||w (x - x_k)||_1 / ||x - x_k||_2."""
    model, kernel = helpers.linear_unit_model()
    images = np.random.default_rng(4).uniform(0, 1, (2, 6, 6, 3)).astype("float32")
    w = kernel[..., 1].astype(np.float64)
    result = kx.metrics.continuity(lambda inputs, t: inputs * w, images, 1, steps=4, baseline=0.5)
    # Quantus' schedule: dx = (2 * 6 + 1) // 4 = 3, shifts -6 + 3k for k = 1..4
    expected = []
    for image in images.astype(np.float64):
        ratios = []
        for shift in (-3, 0, 3, 6):
            moved = np.full_like(image, 0.5)
            for column in range(6):
                if 0 <= column - shift < 6:
                    moved[:, column] = image[:, column - shift]
            change = image - moved
            distance = np.linalg.norm(change)
            ratios.append(0.0 if distance == 0 else np.abs(w * change).sum() / distance)
        expected.append(max(ratios))
    np.testing.assert_allclose(result, expected, rtol=1e-5)


# =====================================================================================
# Slow references on a ReLU network, one perturbed copy at a time
# =====================================================================================
@pytest.fixture(scope="module")
def relu_net():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), seed=9)
    delta = np.random.default_rng(9).uniform(-1.5, 1.5, (len(x) * SAMPLES, 6)).astype("float32")
    return model, x, delta


def copies_reference(model, x, delta, target):
    """Per copy: (x, x', e_x, e_x', class kept), with straight model calls and tapes."""
    for b in range(len(x)):
        clean = helpers.tape_gradient(model, x[b : b + 1], target[b])[0].astype(np.float64)
        label = np.argmax(logits_of(model, x[b : b + 1]))
        for k in range(SAMPLES):
            copy = x[b] + delta[b * SAMPLES + k]
            moved = helpers.tape_gradient(model, copy[None], target[b])[0].astype(np.float64)
            kept = np.argmax(logits_of(model, copy[None])) == label
            yield b, k, copy.astype(np.float64), clean, moved, kept


def test_avg_sensitivity_and_lipschitz_against_a_loop(relu_net):
    model, x, delta = relu_net
    target = np.array([0, 1, 2, 1])
    sensitivities = np.zeros((len(x), SAMPLES))
    lipschitz = np.zeros((len(x), SAMPLES))
    for b, k, copy, clean, moved, _ in copies_reference(model, x, delta, target):
        sensitivities[b, k] = np.linalg.norm(moved - clean) / np.linalg.norm(clean)
        lipschitz[b, k] = np.linalg.norm(moved - clean) / np.linalg.norm(copy - x[b])
    assert sensitivities.max() > 0.05  # the ReLUs switch: non-trivial values
    options = dict(samples=SAMPLES, perturbation=given(delta))
    gradient = kx.Gradient(model)
    result = kx.metrics.avg_sensitivity(gradient, x, target, **options)
    np.testing.assert_allclose(result, sensitivities.mean(axis=1), rtol=1e-5, atol=1e-6)
    result = kx.metrics.local_lipschitz_estimate(gradient, x, target, **options)
    np.testing.assert_allclose(result, lipschitz.max(axis=1), rtol=1e-5, atol=1e-6)


def test_relative_stabilities_against_a_loop(relu_net):
    """Agarwal et al. 2022 with ε_min; copies whose predicted class changes are discarded."""
    model, x, delta = relu_net
    hidden = model.layers[0]
    representation = keras.Model(model.inputs[0], hidden.output)
    target = np.argmax(logits_of(model, x), axis=1)
    ris, ros, rrs = (np.full((len(x), SAMPLES), np.nan) for _ in range(3))
    changed = 0
    for b, k, copy, clean, moved, kept in copies_reference(model, x, delta, target):
        if not kept:
            changed += 1
            continue
        explanation = np.linalg.norm(relative(moved, clean))
        inputs = np.linalg.norm(relative(copy, x[b]))
        outputs = np.linalg.norm(logits_of(model, copy[None]) - logits_of(model, x[b : b + 1]))
        layer_x = logits_of(representation, x[b : b + 1])[0]
        layer_copy = logits_of(representation, copy[None])[0]
        representations = np.linalg.norm(relative(layer_copy, layer_x))
        ris[b, k] = explanation / max(inputs, EPSILON)
        ros[b, k] = explanation / max(outputs, EPSILON)
        rrs[b, k] = explanation / max(representations, EPSILON)
    assert 0 < changed < len(x) * SAMPLES  # some copies are discarded, not all
    options = dict(samples=SAMPLES, perturbation=given(delta))
    gradient = kx.Gradient(model)
    m = kx.metrics
    # relative changes of float32 gradients: rtol 1e-4
    tolerance = dict(rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        m.relative_input_stability(gradient, x, **options), np.nanmax(ris, 1), **tolerance
    )
    np.testing.assert_allclose(
        m.relative_output_stability(gradient, x, **options), np.nanmax(ros, 1), **tolerance
    )
    result = m.relative_representation_stability(gradient, x, layer=hidden.name, **options)
    np.testing.assert_allclose(result, np.nanmax(rrs, 1), **tolerance)


def test_continuity_against_a_loop():
    """Quantus 0.6's schedule: shifts -W + k (2W + 1) // steps, padded with the baseline."""
    model = helpers.randomize(helpers.conv_sequential())
    images = helpers.data((8, 8, 2), seed=3, batch=2)
    target = np.array([0, 2])
    steps, width = 5, 8
    dx = (2 * width + 1) // steps
    expected = []
    for b in range(len(images)):
        clean = helpers.tape_gradient(model, images[b : b + 1], target[b])[0]
        ratios, shift = [], -width
        for _ in range(steps):
            shift += dx
            moved = np.full_like(images[b], -0.25)
            for column in range(width):
                if 0 <= column - shift < width:
                    moved[:, column] = images[b][:, column - shift]
            explanation = helpers.tape_gradient(model, moved[None], target[b])[0]
            change = np.abs(explanation.astype(np.float64) - clean).sum()
            distance = np.linalg.norm(images[b].astype(np.float64) - moved)
            ratios.append(0.0 if distance == 0 else change / distance)
        expected.append(max(ratios))
    result = kx.metrics.continuity(kx.Gradient(model), images, target, steps=steps, baseline=-0.25)
    assert min(expected) > 0
    np.testing.assert_allclose(result, expected, rtol=1e-5)


# =====================================================================================
# Batching, bad explanations, discarded copies
# =====================================================================================
def test_all_copies_are_explained_in_one_call():
    calls = []

    def explain(inputs, target):
        calls.append(len(inputs))
        return inputs**2

    x = helpers.data((5,), seed=2, batch=3)
    kx.metrics.avg_sensitivity(explain, x, samples=7)
    kx.metrics.continuity(explain, helpers.data((4, 4, 1), batch=3), steps=9)
    assert calls == [3, 21, 3, 27]


def test_random_explanations_are_unstable():
    """Independent random explanations: ||a - b|| / ||a|| is about sqrt(2) >> 0."""
    rng = np.random.default_rng(5)
    model = linear_model()
    x = helpers.data((6,), seed=7)

    def random(inputs, target):
        return rng.normal(size=inputs.shape)

    assert kx.metrics.avg_sensitivity(random, x, samples=20).min() > 0.8
    assert kx.metrics.avg_sensitivity(kx.Gradient(model), x, samples=20).max() == 0.0
    assert kx.metrics.relative_input_stability(random, x, model=model).min() > 1.0


def test_a_sample_whose_every_copy_changes_class_gets_nan():
    """Quantus' np.max over a NaN row would give NaN to every sample with one changed copy."""
    model = linear_model(inputs=2, outputs=2, bias=False)
    model.set_weights([np.array([[1.0, -1.0], [0.0, 0.0]], "float32")])
    x = np.array([[0.05, 1.0], [0.05, 1.0]], "float32")  # class 0, 0.05 from the boundary
    delta = np.zeros((2 * SAMPLES, 2), "float32")
    delta[:SAMPLES, 0] = -0.2  # every copy of sample 0 crosses to class 1
    delta[SAMPLES, 0] = -0.2  # one copy of sample 1 does
    delta[SAMPLES + 1 :, 0] = 0.01
    result = kx.metrics.relative_input_stability(
        lambda inputs, t: inputs * [1.0, 2.0],
        x,
        0,
        model=model,
        samples=SAMPLES,
        perturbation=given(delta),
    )
    assert np.isnan(result[0])
    np.testing.assert_allclose(result[1], 1.0, rtol=1e-5)  # e = (1, 2) * x: RIS = 1


def test_registered_columns_equal_the_functions():
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), seed=9)
    names = [
        "avg_sensitivity",
        "local_lipschitz_estimate",
        "relative_input_stability",
        "relative_output_stability",
    ]
    row = kx.metrics.evaluate(["gradient"], model, x, metrics=names, verbose=0)[0]
    gradient = kx.Gradient(model)
    for name in names:
        expected = np.nanmean(getattr(kx.metrics, name)(gradient, x))
        np.testing.assert_allclose(row[name], expected, rtol=1e-6, err_msg=name)
    registry = kx.metrics.registry
    for name in (*names, "continuity"):
        assert registry.get_metric(name).better == "lower"
        assert not registry.get_metric(name).default


# =====================================================================================
# Input validation
# =====================================================================================
def test_errors():
    m = kx.metrics
    model = linear_model()
    gradient = kx.Gradient(model)
    x = helpers.data((6,))
    with pytest.raises(ValueError, match=r"continuity translates images .* Received: x of shape"):
        m.continuity(gradient, x)
    images = helpers.data((4, 4, 1))
    with pytest.raises(ValueError, match=r"at most 2W \+ 1 = 9 .* Received: steps=10"):
        m.continuity(lambda inputs, t: inputs, images, steps=10)
    with pytest.raises(ValueError, match=r"baseline must be a number.*'black'"):
        m.continuity(lambda inputs, t: inputs, images, steps=3, baseline="black")
    with pytest.raises(ValueError, match=r"a callable explainer needs the model: pass model="):
        m.relative_input_stability(lambda inputs, t: inputs, x)
    with pytest.raises(TypeError, match=r"model must be a Keras model .* Received: model of"):
        m.relative_output_stability(lambda inputs, t: inputs, x, model="net")
    with pytest.raises(ValueError, match=r"reads a layer of the model, .* pass model="):
        m.relative_representation_stability(lambda inputs, t: inputs, x, layer="dense")
    with pytest.raises(ValueError, match=r"not defined for integer inputs .* dtype int64"):
        m.avg_sensitivity(gradient, np.ones((2, 6), np.int64))
    with pytest.raises(ValueError, match=r"perturbation callable must return d shaped like"):
        m.local_lipschitz_estimate(gradient, x, samples=2, perturbation=lambda r: r[:1])
    with pytest.raises(ValueError, match=r"relative_input_stability: epsilon"):
        m.relative_input_stability(gradient, x, epsilon=0.0)
    with pytest.raises(ValueError, match=r"avg_sensitivity: noise_scale"):
        m.avg_sensitivity(gradient, x, noise_scale=-1.0)
    with pytest.raises(TypeError, match=r"avg_sensitivity needs an analyzer .* Received: str"):
        m.avg_sensitivity("gradient", x)


def test_relative_output_stability_compares_logits_not_probabilities():
    """The analyzer's explained output has the softmax stripped: the same ROS as on logits."""
    softmax_model = helpers.dense_sequential(softmax=True)
    logit_model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), seed=9)
    np.testing.assert_array_equal(
        kx.metrics.relative_output_stability(kx.Gradient(softmax_model), x),
        kx.metrics.relative_output_stability(kx.Gradient(logit_model), x),
    )
