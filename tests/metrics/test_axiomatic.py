"""Non-sensitivity and input invariance: hand counts, numpy loops and closed forms."""

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx
from keras_explain.metrics import registry

layers = keras.layers


def linear(weights):
    """f(x) = x . w, one output, no bias."""
    model = keras.Sequential([keras.Input((len(weights),)), layers.Dense(1, use_bias=False)])
    model.set_weights([np.asarray(weights, "float32")[:, None]])
    return model


# =====================================================================================
# Non-sensitivity
# =====================================================================================
def test_non_sensitivity_counts_the_symmetric_difference_by_hand():
    """f = x . w with w = (2, 0, 1, 0, -3, 0) at x = 1, zero baseline.

    Removing feature i changes f by w_i: the model ignores Z_f = {1, 3, 5}.
    """
    model = linear([2, 0, 1, 0, -3, 0])
    x = np.ones((1, 6), "float32")
    cases = {
        # zero attribution Z_a = {1, 2, 5}: Z_a ^ Z_f = {2, 3}
        (1.0, 0.0, 0.0, 2.0, 1.0, 0.0): 2,
        # input x gradient = w: Z_a = Z_f, perfect
        (2.0, 0.0, 1.0, 0.0, -3.0, 0.0): 0,
        # no zero: Z_a = {}, the symmetric difference is Z_f
        (1.0, 1.0, 1.0, 1.0, 1.0, 1.0): 3,
        # all zero: Z_a is everything, the difference is the three features f uses
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0): 3,
        # below eps relative to the largest |a| counts as zero: Z_a = {1, 3, 5}
        (2e6, 1.0, 1e6, 1.0, 3e6, 1.0): 0,
    }
    for attributions, expected in cases.items():
        result = kx.metrics.non_sensitivity(model, x, np.array([attributions]), target=0)
        assert result.tolist() == [expected], attributions


def non_sensitivity_reference(model, x, attributions, target, eps, tolerance, baseline, softmax):
    """Nguyen & Martínez: |Z_a ^ Z_f|, one removed pixel (all channels) at a time."""

    def score(inputs):
        outputs = model(np.asarray(inputs, "float32")).numpy().astype(np.float64)
        if softmax:
            outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            outputs = outputs / outputs.sum(axis=1, keepdims=True)
        return outputs[0, target]

    counts = []
    for sample, a in zip(x, attributions):
        magnitude = np.abs(a.astype(np.float64)).sum(axis=-1).ravel()  # per pixel
        zero = magnitude / magnitude.max() < eps
        clean = score(sample[None])
        count = 0
        for index in range(magnitude.size):
            removed = sample.copy()
            row, column = np.unravel_index(index, sample.shape[:-1])
            removed[row, column, :] = baseline
            independent = abs(score(removed[None]) - clean) < tolerance
            count += int(zero[index] != independent)
        counts.append(count)
    return np.array(counts, np.float32)


@pytest.mark.parametrize("probabilities", [False, True])
def test_non_sensitivity_matches_a_numpy_loop_on_images(probabilities):
    """A conv net that ignores the image's right half; attributions with some zeros."""
    helpers.seeded(0)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            layers.Cropping2D(((0, 0), (0, 2))),  # the right half never reaches the output
            layers.Conv2D(3, 2, activation="relu"),
            layers.Flatten(),
            layers.Dense(3),
        ]
    )
    helpers.randomize_biases(model)
    x = helpers.data((4, 4, 2), seed=1, batch=3)
    attributions = helpers.data((4, 4, 2), seed=2, batch=3)
    attributions[:, :, 3, :] = 0.0  # one ignored column with zero attribution (agrees)
    attributions[:, 0, 0, :] = 0.0  # a used pixel with zero attribution (disagrees)
    result = kx.metrics.non_sensitivity(
        model, x, attributions, 1, baseline=0.5, probabilities=probabilities, tolerance=1e-4
    )
    expected = non_sensitivity_reference(model, x, attributions, 1, 1e-5, 1e-4, 0.5, probabilities)
    np.testing.assert_array_equal(result, expected)
    # CAM maps (B, H, W) are the per-pixel attributions
    maps = np.abs(attributions).sum(axis=-1)
    np.testing.assert_array_equal(
        kx.metrics.non_sensitivity(
            model, x, maps, 1, baseline=0.5, probabilities=probabilities, tolerance=1e-4
        ),
        expected,
    )


def test_non_sensitivity_of_random_attributions_is_the_ignored_features():
    """Random attributions are nowhere zero: every feature the model ignores counts."""
    model = linear([1.0, 0.0, 0.0, 4.0, 0.0, 0.5])
    x = helpers.data((6,), seed=3)
    attributions = helpers.data((6,), seed=4)
    np.testing.assert_array_equal(
        kx.metrics.non_sensitivity(model, x, attributions, 0), np.full(4, 3.0)
    )


def test_non_sensitivity_validates():
    model = linear([1.0, 0.0])
    x = np.ones((1, 2), "float32")
    with pytest.raises(ValueError, match="non_sensitivity: attributions must be shaped like x"):
        kx.metrics.non_sensitivity(model, x, np.ones((1, 3)), 0)
    with pytest.raises(ValueError, match="non_sensitivity: eps must be"):
        kx.metrics.non_sensitivity(model, x, x, 0, eps=-1.0)
    with pytest.raises(ValueError, match="non_sensitivity: tolerance must be"):
        kx.metrics.non_sensitivity(model, x, x, 0, tolerance=-1.0)
    with pytest.raises(ValueError, match="non_sensitivity: unknown baseline name"):
        kx.metrics.non_sensitivity(model, x, x, 0, baseline="zeros")


# =====================================================================================
# Input invariance
# =====================================================================================
def dense_relu(seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [keras.Input((6,)), layers.Dense(8, "relu", name="first"), layers.Dense(3)]
    )
    return helpers.randomize_biases(model)


def test_input_invariance_of_the_gradient_and_input_times_gradient():
    """Closed forms: the shifted model's gradient at x + c is the gradient at x, so

    Gradient is invariant, and input x gradient changes by exactly c * grad(x).
    """
    model = dense_relu()
    weights = [w.copy() for w in model.get_weights()]
    x = helpers.data((6,), seed=1)
    np.testing.assert_array_equal(kx.metrics.input_invariance("gradient", model, x, 0), 1.0)
    np.testing.assert_array_equal(kx.metrics.input_invariance("input_t_gradient", model, x, 0), 0.0)
    change = np.abs(-1.0 * kx.Gradient(model).analyze(x, 0)).max(axis=1)  # |c * grad|
    for sample, largest in enumerate(change):
        one = x[sample : sample + 1]
        loose = kx.metrics.input_invariance("input_t_gradient", model, one, 0, atol=1.01 * largest)
        tight = kx.metrics.input_invariance("input_t_gradient", model, one, 0, atol=0.99 * largest)
        assert loose.tolist() == [1.0] and tight.tolist() == [0.0]
    for old, new in zip(weights, model.get_weights()):  # the user's model is untouched
        np.testing.assert_array_equal(old, new)


def test_input_invariance_on_a_valid_conv_with_a_per_channel_shift():
    """A valid Conv2D absorbs any shift constant per channel.

    Gradient and SmoothGrad (the same noise) are input-invariant; IG with a zero
    baseline is not (Kindermans et al.).
    """
    helpers.seeded(1)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(3, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(2),
        ]
    )
    helpers.randomize_biases(model)
    x = helpers.data((6, 6, 2), seed=2)
    shift = np.array([0.5, -2.0], "float32")
    assert kx.metrics.input_invariance("gradient", model, x, 1, shift=shift).tolist() == [1.0] * 4
    # SmoothGrad's sigma is a fraction of each sample's value range: a scalar shift keeps
    # it (the same noise, invariant), a different shift per channel changes the range
    smooth = kx.metrics.input_invariance("smoothgrad", model, x, 1, shift=-1.0, samples=4)
    assert smooth.tolist() == [1.0] * 4
    assert (
        kx.metrics.input_invariance("integrated_gradients", model, x, 1, steps=8).tolist()
        == [0.0] * 4
    )


def test_input_invariance_refuses_shifts_no_bias_can_absorb():
    x = helpers.data((6, 6, 2), seed=2)
    padded = keras.Sequential(
        [keras.Input((6, 6, 2)), layers.Conv2D(3, 3, padding="same", name="conv"), layers.Flatten()]
    )
    with pytest.raises(ValueError, match="the shift does not move layer 'conv''s output by a"):
        kx.metrics.input_invariance("gradient", padded, x, 0)
    no_bias = keras.Sequential([keras.Input((6,)), layers.Dense(2, use_bias=False, name="d")])
    with pytest.raises(ValueError, match="Received: layer 'd' without a bias"):
        kx.metrics.input_invariance("gradient", no_bias, helpers.data((6,)), 0)
    nonlinear = keras.Sequential(
        [keras.Input((6,)), layers.Activation("relu"), layers.Dense(2, name="d")]
    )
    with pytest.raises(ValueError, match="the shift does not move layer 'd''s output"):
        kx.metrics.input_invariance("gradient", nonlinear, helpers.data((6,)), 0)
    inputs = keras.Input((6,))
    branches = layers.Add()([layers.Dense(2, name="a")(inputs), layers.Dense(2, name="b")(inputs)])
    two_paths = keras.Model(inputs, branches)
    with pytest.raises(ValueError, match="the clone's outputs differ from the model's"):
        kx.metrics.input_invariance("gradient", two_paths, helpers.data((6,)), 0)
    with pytest.raises(ValueError, match="input_invariance: shift must be a number or an array"):
        kx.metrics.input_invariance("gradient", dense_relu(), helpers.data((6,)), 0, shift=[1, 2])
    with pytest.raises(TypeError, match="input_invariance shifts the first bias of a clone"):
        kx.metrics.input_invariance("gradient", lambda z: z, helpers.data((6,)), 0)


# =====================================================================================
# The registered columns
# =====================================================================================
def test_the_columns_are_the_functions():
    model = dense_relu()
    x = helpers.data((6,), seed=1)
    rows = kx.metrics.evaluate(
        {"gradient": {}, "input_t_gradient": {}},
        model,
        x,
        0,
        metrics=["non_sensitivity", "input_invariance"],
    )
    gradient = kx.Gradient(model).analyze(x, 0)
    expected = kx.metrics.non_sensitivity(model, x, gradient, 0)
    assert rows[0]["non_sensitivity"] == pytest.approx(float(expected.mean()))
    assert rows[0]["input_invariance"] == 1.0 and rows[1]["input_invariance"] == 0.0
    for name in ("non_sensitivity", "input_invariance"):
        assert not registry.get_metric(name).default


def test_the_input_invariance_column_is_nan_where_the_model_cannot_absorb_a_shift():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(2, 3, padding="same"),  # zero padding: no bias absorbs a shift
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    x = helpers.data((6, 6, 1), batch=2)
    with pytest.raises(kx.metrics.axiomatic.ShiftNotAbsorbed, match="zero padding"):
        kx.metrics.input_invariance("gradient", model, x)
    with pytest.warns(UserWarning, match="The input_invariance column is NaN"):
        rows = kx.metrics.evaluate(["gradient"], model, x, metrics=["input_invariance"], verbose=0)
    assert np.isnan(rows[0]["input_invariance"])
