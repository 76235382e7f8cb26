"""kx.robust: FGSM, PGD, the minimal flipping perturbation and explanation fragility.

Every expected value comes from a numpy loop written from the definitions (Goodfellow
et al. 2015; Madry et al. 2018; Captum's captum/robust/_core/fgsm.py, pgd.py and
metrics/min_param_perturbation.py) or from a closed form on a linear model, whose
loss gradient is ``W (softmax(xW + b) - e_t)``.
"""

import math
import random as python_random

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import keras_explain as kx

FEATURES, CLASSES = 5, 3


def linear_model(classes=CLASSES, features=FEATURES, softmax=False, seed=0):
    rng = np.random.default_rng(seed)
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(classes, activation="softmax" if softmax else None),
        ]
    )
    weights = rng.normal(size=(features, classes)), rng.normal(size=classes) * 0.1
    model.set_weights([w.astype(np.float32) for w in weights])
    return model


def inputs(rows=4, features=FEATURES, seed=1):
    return np.random.default_rng(seed).normal(size=(rows, features)).astype(np.float32)


def weights64(model):
    kernel, bias = model.layers[-1].get_weights()
    return kernel.astype(np.float64), bias.astype(np.float64)


def loss_gradient(model, x, target):
    """d/dx of the cross-entropy of the logits for ``target`` (per sample)."""
    kernel, bias = weights64(model)
    logits = x.astype(np.float64) @ kernel + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(x)), target] -= 1.0
    return p @ kernel.T


def direction(gradient, norm):
    if norm == "linf":
        return np.sign(gradient)
    return gradient / np.linalg.norm(gradient, axis=1, keepdims=True)


def pgd_reference(model, x, target, radius, step_size, steps, norm, targeted=False, bounds=None):
    sign = -1.0 if targeted else 1.0
    point = x.astype(np.float64)
    for _ in range(steps):
        point = point + sign * step_size * direction(loss_gradient(model, point, target), norm)
        delta = point - x
        if norm == "linf":
            delta = np.clip(delta, -radius, radius)
        else:
            length = np.linalg.norm(delta, axis=1, keepdims=True)
            delta = delta * np.minimum(1.0, radius / length)
        point = x + delta
        if bounds is not None:
            point = np.clip(point, *bounds)
    return point


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_is_one_steepest_ascent_step_of_the_cross_entropy(norm):
    model, x, target = linear_model(), inputs(), np.array([0, 1, 2, 1])
    expected = x + 0.3 * direction(loss_gradient(model, x, target), norm)
    result = kx.robust.fgsm(model, x, target, epsilon=0.3, norm=norm)
    np.testing.assert_allclose(result, expected, atol=1e-6)
    if norm == "l2":
        np.testing.assert_allclose(np.linalg.norm(result - x, axis=1), 0.3, rtol=1e-5)


def test_fgsm_on_two_logits_moves_by_epsilon_times_the_sign_of_the_weight_difference():
    model, x = linear_model(classes=2), inputs()
    kernel, _ = weights64(model)
    away = np.sign(kernel[:, 1] - kernel[:, 0])  # raises logit 1 - logit 0
    untargeted = kx.robust.fgsm(model, x, 0, epsilon=0.25)
    np.testing.assert_allclose(untargeted, x + 0.25 * away, atol=1e-6)
    towards_one = kx.robust.fgsm(model, x, 1, epsilon=0.25, targeted=True)
    np.testing.assert_allclose(towards_one, x + 0.25 * away, atol=1e-6)
    towards_zero = kx.robust.fgsm(model, x, 0, epsilon=0.25, targeted=True)
    np.testing.assert_allclose(towards_zero, x - 0.25 * away, atol=1e-6)


def test_a_final_softmax_is_bypassed_and_equals_captums_negative_log_probability():
    # Captum's default loss is -log(output[target]) (fgsm.py:182): on a softmax model
    # it is the cross-entropy of the logits, which is ours on the logits model.
    logits, probabilities, x = linear_model(), linear_model(softmax=True), inputs()
    for model in (logits, probabilities):
        result = kx.robust.pgd(model, x, 1, radius=0.4, step_size=0.1, steps=6)
        np.testing.assert_allclose(
            result, pgd_reference(logits, x, 1, 0.4, 0.1, 6, "linf"), atol=1e-5
        )


def test_none_target_is_the_clean_argmax_and_per_sample_epsilon():
    model, x = linear_model(), inputs()
    kernel, bias = weights64(model)
    predicted = np.argmax(x @ kernel + bias, axis=1)
    epsilon = np.array([0.0, 0.1, 0.2, 0.3])
    expected = x + epsilon[:, None] * np.sign(loss_gradient(model, x, predicted))
    np.testing.assert_allclose(kx.robust.fgsm(model, x, epsilon=epsilon), expected, atol=1e-6)


def test_a_callable_target_is_a_score_whose_negative_is_the_loss():
    model, x = linear_model(), inputs()
    kernel, _ = weights64(model)
    down = kx.robust.fgsm(model, x, lambda out: out[:, 2], epsilon=0.2)
    np.testing.assert_allclose(down, x - 0.2 * np.sign(kernel[:, 2]), atol=1e-6)
    up = kx.robust.fgsm(model, x, lambda out: out[:, 2], epsilon=0.2, targeted=True)
    np.testing.assert_allclose(up, x + 0.2 * np.sign(kernel[:, 2]), atol=1e-6)


def test_a_custom_loss_receives_the_outputs_and_labels():
    model, x = linear_model(), inputs()
    kernel, _ = weights64(model)

    def margin(outputs, labels):  # logit 0 minus the label's logit
        return outputs[:, 0] - tf.gather(outputs, labels, axis=1, batch_dims=1)

    result = kx.robust.fgsm(model, x, 2, epsilon=0.1, loss=margin)
    np.testing.assert_allclose(result, x + 0.1 * np.sign(kernel[:, 0] - kernel[:, 2]), atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_equals_a_numpy_loop_of_the_same_steps_and_stays_in_the_ball(norm, targeted):
    model, x, target = linear_model(), inputs(6, seed=3), np.array([0, 1, 2, 0, 1, 2])
    radius = 0.3 if norm == "linf" else 0.5
    result = kx.robust.pgd(
        model, x, target, radius=radius, step_size=0.07, steps=9, norm=norm, targeted=targeted
    )
    expected = pgd_reference(model, x, target, radius, 0.07, 9, norm, targeted)
    np.testing.assert_allclose(result, expected, atol=2e-5)
    order = np.inf if norm == "linf" else 2
    assert (np.linalg.norm(result - x, ord=order, axis=1) <= radius * (1 + 1e-5)).all()


def test_value_range_clips_every_iterate():
    model, x = linear_model(), np.clip(inputs(seed=5), -0.2, 0.2)
    bounds = (-0.25, 0.25)
    one = kx.robust.fgsm(model, x, 0, epsilon=0.3, value_range=bounds)
    expected = np.clip(x + 0.3 * np.sign(loss_gradient(model, x, 0)), *bounds)
    np.testing.assert_allclose(one, expected, atol=1e-6)
    many = kx.robust.pgd(model, x, 0, radius=0.3, step_size=0.05, steps=8, value_range=bounds)
    np.testing.assert_allclose(
        many, pgd_reference(model, x, 0, 0.3, 0.05, 8, "linf", bounds=bounds), atol=1e-5
    )
    assert many.min() >= -0.25 and many.max() <= 0.25


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_seeded_per_sample_inside_the_ball_and_leaves_global_rng_alone(norm):
    model, x = linear_model(), inputs(6)
    generator = tf.random.get_global_generator()
    before = (np.random.get_state()[1].copy(), python_random.getstate(), generator.state.numpy())
    arguments = dict(radius=0.4, step_size=0.0, steps=1, norm=norm, random_start=True)
    first = kx.robust.pgd(model, x, 0, seed=7, **arguments)
    again = kx.robust.pgd(model, x, 0, seed=7, **arguments)
    other = kx.robust.pgd(model, x, 0, seed=8, **arguments)
    unseeded = kx.robust.pgd(model, x, 0, **arguments)
    rows = kx.robust.pgd(model, x[:2], 0, seed=7, **arguments)
    after = (np.random.get_state()[1], python_random.getstate(), generator.state.numpy())
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(rows, first[:2])  # per-sample seeds: batch-invariant
    assert not np.allclose(first, other) and not np.allclose(first, unseeded)
    order = np.inf if norm == "linf" else 2
    distances = np.linalg.norm(first - x, ord=order, axis=1)
    assert (distances <= 0.4 * (1 + 1e-5)).all() and (distances > 0).all()
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1]
    np.testing.assert_array_equal(before[2], after[2])


def test_the_model_weights_are_unchanged():
    model, x = linear_model(softmax=True), inputs()
    weights = [w.copy() for w in model.get_weights()]
    kx.robust.fgsm(model, x, epsilon=0.1)
    kx.robust.pgd(model, x, radius=0.2, step_size=0.05, steps=3, random_start=True, seed=1)
    kx.robust.minimal_perturbation(model, x, high=0.5, step=0.1, mode="binary")
    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def margin_model(weights, bias):
    """Two logits whose difference is ``x · weights + bias`` (class 0 when > 0)."""
    weights = np.asarray(weights, np.float32)
    model = keras.Sequential([keras.Input((len(weights),)), keras.layers.Dense(2)])
    model.set_weights([np.stack([weights, -weights], axis=1) / 2, np.array([bias, -bias]) / 2])
    return model


@pytest.mark.parametrize("mode", ["linear", "binary"])
def test_minimal_fgsm_epsilon_is_the_distance_to_the_boundary_in_the_dual_norm(mode):
    # logit_0 - logit_1 = w·x + b: FGSM with ε moves it by -ε‖w‖₁ (L∞) or -ε‖w‖₂ (L2),
    # so the prediction flips at ε* = margin / ‖w‖_dual; the grid finds the next value.
    w, b = np.array([0.5, -1.5, 1.0]), 0.1
    model = margin_model(w, b)
    x = np.array([[0.2, -0.1, 0.3], [0.9, -0.4, 0.1], [1.0, -2.0, 2.0]], np.float32)
    margins = x @ w + b
    low, high, step = 0.0, 0.8, 0.01
    grid = low + step * np.arange(math.ceil((high - low) / step))
    grid = grid[grid < high]  # Captum's drange: high excluded
    for norm, dual in (("linf", np.abs(w).sum()), ("l2", np.linalg.norm(w))):
        threshold = margins / dual
        found = kx.robust.minimal_perturbation(
            model, x, attack="fgsm", high=high, step=step, mode=mode, norm=norm
        )
        reachable = threshold < grid[-1]
        np.testing.assert_array_equal(found.flipped, reachable)
        expected = np.array(
            [grid[grid > t][0] if r else np.nan for t, r in zip(threshold, reachable)]
        )
        np.testing.assert_allclose(found.parameter, expected, atol=1e-9)
        assert np.isnan(found.x[~reachable]).all()
        direction = -np.sign(w) if norm == "linf" else -w / np.linalg.norm(w)
        np.testing.assert_allclose(
            found.x[reachable], x[reachable] + expected[reachable, None] * direction, atol=1e-5
        )


def test_minimal_pgd_radius_and_a_callable_attack_find_the_same_threshold():
    w, b = np.array([1.0, 2.0]), -0.3
    model = margin_model(w, b)
    x = np.array([[0.5, 0.4], [0.3, 0.2]], np.float32)
    threshold = (x @ w + b) / np.linalg.norm(w)
    step = 0.005
    grid = step * np.arange(100)  # below high = 0.5
    expected = np.array([grid[grid > t][0] for t in threshold])
    found = kx.robust.minimal_perturbation(
        model, x, attack="pgd", high=0.5, step=step, mode="binary", norm="l2", steps=5
    )
    np.testing.assert_allclose(found.parameter, expected, atol=1e-9)
    unit = w / np.linalg.norm(w)

    def push(batch, values):
        return batch - values[:, None] * unit

    by_hand = kx.robust.minimal_perturbation(model, x, attack=push, high=0.5, step=step)
    np.testing.assert_allclose(by_hand.parameter, expected, atol=1e-9)


def test_a_targeted_search_reaches_the_target_class_at_the_same_threshold():
    w, b = np.array([0.5, -1.5, 1.0]), 0.1
    model = margin_model(w, b)
    x = np.array([[0.2, -0.1, 0.3], [0.9, -0.4, 0.1]], np.float32)  # class 0, margins > 0
    step = 0.01
    grid = step * np.arange(80)
    expected = np.array([grid[grid > t][0] for t in (x @ w + b) / np.abs(w).sum()])
    found = kx.robust.minimal_perturbation(model, x, 1, high=0.8, step=step, targeted=True)
    np.testing.assert_allclose(found.parameter, expected, atol=1e-9)
    seeded = dict(attack="pgd", high=0.8, step=step, random_start=True, seed=4, mode="binary")
    first = kx.robust.minimal_perturbation(model, x, **seeded)
    np.testing.assert_array_equal(first.x, kx.robust.minimal_perturbation(model, x, **seeded).x)


class Subclassed(keras.Model):
    def __init__(self, dense):
        super().__init__()
        self.dense = dense

    def call(self, inputs):
        return self.dense(inputs)


def test_a_subclassed_model_is_attacked_through_its_call():
    reference, x = linear_model(), inputs()
    model = Subclassed(reference.layers[-1])
    result = kx.robust.pgd(model, x, 1, radius=0.3, step_size=0.1, steps=4)
    np.testing.assert_allclose(
        result, pgd_reference(reference, x, 1, 0.3, 0.1, 4, "linf"), atol=1e-5
    )


def test_minimal_perturbation_searches_linear_and_binary_alike_on_a_monotone_attack():
    model, x = linear_model(), inputs(8, seed=9)
    found = {
        mode: kx.robust.minimal_perturbation(model, x, high=2.0, step=0.05, mode=mode)
        for mode in ("linear", "binary")
    }
    np.testing.assert_array_equal(found["linear"].parameter, found["binary"].parameter)
    np.testing.assert_array_equal(found["linear"].x, found["binary"].x)


def test_explanation_fragility_against_numpy_top_k_and_spearman():
    model, x = linear_model(), inputs(5)
    x_adv = kx.robust.pgd(model, x, radius=0.5, step_size=0.2, steps=4)
    analyzer = kx.InputTimesGradient(model)
    fragility = kx.robust.explanation_fragility(analyzer, x, x_adv, top_k=2)
    kernel, bias = weights64(model)
    target = np.argmax(x @ kernel + bias, axis=1)
    before, after = np.abs(x * kernel[:, target].T), np.abs(x_adv * kernel[:, target].T)
    for row in range(len(x)):
        top = set(np.argsort(-before[row])[:2]) & set(np.argsort(-after[row])[:2])
        assert fragility.top_k_intersection[row] == len(top) / 2
        rho = stats.spearmanr(before[row], after[row]).statistic
        np.testing.assert_allclose(fragility.spearman[row], rho, atol=1e-6)
    # the gradient of a linear model does not depend on x: never fragile
    plain = kx.robust.explanation_fragility(kx.Gradient(model), x, x_adv)
    np.testing.assert_array_equal(plain.top_k_intersection, 1.0)
    np.testing.assert_allclose(plain.spearman, 1.0)


def test_explanation_fragility_sums_image_channels():
    model = keras.Sequential(
        [keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 2)).astype(np.float32)
    fragility = kx.robust.explanation_fragility(kx.InputTimesGradient(model), x, -x)
    np.testing.assert_array_equal(fragility.top_k_intersection, 1.0)  # |x·g| = |-x·g|, 16→top 1
    np.testing.assert_allclose(fragility.spearman, 1.0)


def test_bad_arguments_are_refused_with_the_fix():
    model, x = linear_model(), inputs()
    with pytest.raises(ValueError, match=r"Unknown norm\. Received: norm='l1'"):
        kx.robust.fgsm(model, x, epsilon=0.1, norm="l1")
    with pytest.raises(ValueError, match=r"fgsm: epsilon must be finite and >= 0"):
        kx.robust.fgsm(model, x, epsilon=-0.1)
    with pytest.raises(
        ValueError, match=r"epsilon must be a number >= 0 or an array of shape \(4,\)"
    ):
        kx.robust.fgsm(model, x, epsilon=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"value_range must be None or \(low, high\)"):
        kx.robust.fgsm(model, x, epsilon=0.1, value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"target must be None \(the clean argmax\)"):
        kx.robust.fgsm(model, x, "all", epsilon=0.1)
    with pytest.raises(ValueError, match=r"target index out of range"):
        kx.robust.fgsm(model, x, 3, epsilon=0.1)
    with pytest.raises(TypeError, match=r"fgsm: loss must be a callable"):
        kx.robust.fgsm(model, x, epsilon=0.1, loss="mse")
    with pytest.raises(TypeError, match=r"fgsm: targeted must be True or False"):
        kx.robust.fgsm(model, x, epsilon=0.1, targeted="yes")
    with pytest.raises(ValueError, match=r"steps must be a positive int\. Received: steps=0"):
        kx.robust.pgd(model, x, radius=0.1, step_size=0.1, steps=0)
    with pytest.raises(TypeError, match=r"pgd: seed must be an int or None"):
        kx.robust.pgd(model, x, radius=0.1, step_size=0.1, steps=1, seed="a")
    with pytest.raises(ValueError, match=r"the grid low, low \+ step, \.\.\. below high is empty"):
        kx.robust.minimal_perturbation(model, x, low=1.0, high=1.0, step=0.1)
    with pytest.raises(ValueError, match=r"Unknown mode\. Received: mode='golden'"):
        kx.robust.minimal_perturbation(model, x, high=1.0, step=0.1, mode="golden")
    with pytest.raises(TypeError, match=r"unexpected parameter 'stepz'\. Did you mean 'steps'"):
        kx.robust.minimal_perturbation(model, x, attack="pgd", high=1.0, step=0.1, stepz=1)
    with pytest.raises(TypeError, match=r"unexpected parameter 'steps'"):
        kx.robust.minimal_perturbation(model, x, attack="fgsm", high=1.0, step=0.1, steps=3)
    with pytest.raises(ValueError, match=r"compares predicted classes"):
        kx.robust.minimal_perturbation(model, x, lambda out: out[:, 0], high=1.0, step=0.1)
    with pytest.raises(ValueError, match=r"targeted=True needs the class to reach"):
        kx.robust.minimal_perturbation(model, x, high=1.0, step=0.1, targeted=True)
    with pytest.raises(ValueError, match=r"x_adv must be shaped like x"):
        kx.robust.explanation_fragility(kx.Gradient(model), x, x[:2])
    with pytest.raises(ValueError, match=r"Input 0 contains NaN or Inf"):
        kx.robust.fgsm(model, np.full_like(x, np.nan), epsilon=0.1)
    first, second = keras.Input((2,)), keras.Input((3,))
    pair = keras.Model(
        [first, second], keras.layers.Dense(2)(keras.layers.Concatenate()([first, second]))
    )
    with pytest.raises(ValueError, match=r"fgsm attacks models with one float input"):
        kx.robust.fgsm(pair, [np.ones((1, 2)), np.ones((1, 3))], epsilon=0.1)
