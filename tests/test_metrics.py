"""kx.metrics against closed forms, published numbers and slow numpy references."""

import json
import re

import helpers
import keras
import numpy as np
import pytest
from scipy import stats
from skimage.metrics import structural_similarity

import keras_explain as kx

layers = keras.layers


def scores_of(model, x, target):
    """f_t of a batch, straight from the model (no keras_explain)."""
    return helpers.selected(model, np.asarray(x, np.float32), target).astype(np.float64)


def linear_model(inputs=6, outputs=3, bias=True, seed=0):
    helpers.seeded(seed)
    model = keras.Sequential([keras.Input((inputs,)), layers.Dense(outputs, use_bias=bias)])
    return helpers.randomize_biases(model) if bias else model


# =====================================================================================
# Infidelity
# =====================================================================================
def infidelity_reference(model, x, attributions, target, noise, samples, normalize):
    """Yeh et al. / Captum, one perturbation at a time: I = noise[b * samples + s]."""
    values = []
    for b in range(len(x)):
        dots, drops = [], []
        for s in range(samples):
            perturbation = noise[b * samples + s].astype(np.float64)
            dots.append(np.sum(attributions[b].astype(np.float64) * perturbation))
            clean = scores_of(model, x[b : b + 1], target)[0]
            perturbed = scores_of(model, (x[b] - perturbation)[None], target)[0]
            drops.append(clean - perturbed)
        dots, drops = np.array(dots), np.array(drops)
        if normalize:
            dots = dots * (np.sum(dots * drops) / np.sum(dots**2))
        values.append(np.mean((dots - drops) ** 2))
    return np.array(values)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_follows_captums_convention(logit_model, normalize):
    x = helpers.data((6,), seed=1)
    attributions = helpers.data((6,), seed=2)
    samples = 3
    noise = np.random.default_rng(3).normal(0, 0.5, (len(x) * samples, 6)).astype("float32")
    received = []

    def perturbation(inputs):
        received.append(inputs)
        return noise

    result = kx.metrics.infidelity(
        logit_model,
        x,
        attributions,
        1,
        perturbation=perturbation,
        samples=samples,
        normalize=normalize,
    )
    np.testing.assert_array_equal(received[0], np.repeat(x, samples, axis=0))  # sample-major
    expected = infidelity_reference(logit_model, x, attributions, 1, noise, samples, normalize)
    # float32 model outputs of magnitude ~1 squared: relative error ~1e-5
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-7)


def test_infidelity_of_integrated_gradients_is_the_completeness_gap_squared(logit_model):
    """Derivation: with I = x - x' the model sees x - I = x', so f(x) - f(x - I) = f(x) - f(x').

    (1) With the baseline x' = x - 1, I = 1 and sum(a * I) = sum(a), so the
    unnormalized infidelity of IG is (sum(a) - (f(x) - f(x')))^2 = delta^2 for every
    sample of I. (2) For any baseline, Captum's multiply_by_inputs convention divides by
    x - x': sum((a / (x - x')) * (x - x')) = sum(a), again delta^2.
    """
    x = helpers.data((6,), seed=5)  # every sample has a live ReLU path
    for baseline in (x - 1.0, np.full_like(x, 0.25)):
        relevance = kx.IntegratedGradients(logit_model, steps=3, baseline=baseline).analyze(x, 0)
        delta = relevance.astype(np.float64).sum(axis=1) - (
            scores_of(logit_model, x, 0) - scores_of(logit_model, baseline, 0)
        )
        assert np.max(np.abs(delta)) > 1e-2  # 3 steps leave a gap: delta^2 is no zero check
        result = kx.metrics.infidelity(
            logit_model,
            x,
            relevance / (x - baseline),
            0,
            perturbation=lambda inputs, b=baseline: inputs - np.repeat(b, 2, axis=0),
            samples=2,
            normalize=False,
        )
        np.testing.assert_allclose(result, delta**2, rtol=1e-3, atol=1e-8)


def test_normalized_infidelity_does_not_depend_on_the_scale(logit_model):
    x = helpers.data((6,), seed=5)
    attributions = helpers.data((6,), seed=6)
    small = kx.metrics.infidelity(logit_model, x, attributions, 2, samples=8)
    large = kx.metrics.infidelity(logit_model, x, 100 * attributions, 2, samples=8)
    np.testing.assert_allclose(large, small, rtol=1e-5)
    raw = kx.metrics.infidelity(logit_model, x, 100 * attributions, 2, samples=8, normalize=False)
    assert np.all(raw > 10 * small)  # the scale matters without normalize


# =====================================================================================
# Sensitivity
# =====================================================================================
def test_gradient_of_a_linear_model_has_sensitivity_zero():
    model = linear_model()
    x = helpers.data((6,), seed=7)
    result = kx.metrics.sensitivity_max(kx.Gradient(model), x, noise_scale=0.5)
    np.testing.assert_array_equal(result, np.zeros(len(x)))


def test_sensitivity_max_against_a_tape_reference(logit_model):
    x = helpers.data((6,), seed=9)  # non-zero clean gradients
    samples = 4
    delta = np.random.default_rng(9).uniform(-0.3, 0.3, (len(x) * samples, 6)).astype("float32")
    result = kx.metrics.sensitivity_max(
        kx.Gradient(logit_model), x, 1, samples=samples, perturbation=lambda inputs: delta
    )
    clean = helpers.tape_gradient(logit_model, x, 1).astype(np.float64)
    noisy = helpers.tape_gradient(logit_model, np.repeat(x, samples, axis=0) + delta, 1)
    expected = [
        max(
            np.linalg.norm(noisy[b * samples + s] - clean[b]) / np.linalg.norm(clean[b])
            for s in range(samples)
        )
        for b in range(len(x))
    ]
    assert np.max(expected) > 0.01  # the ReLUs switch: a non-trivial value
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


def test_sensitivity_max_of_a_callable_and_a_zero_explanation():
    """Captum divides by 1 where ||e(x)|| = 0; any explain(x, target) callable is accepted."""
    x = np.zeros((2, 3), "float32")
    delta = np.random.default_rng(10).uniform(-1, 1, (6, 3)).astype("float32")
    result = kx.metrics.sensitivity_max(
        lambda inputs, target: inputs**2, x, samples=3, perturbation=lambda inputs: delta
    )
    expected = np.linalg.norm(delta.astype(np.float64) ** 2, axis=1).reshape(2, 3).max(axis=1)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_sensitivity_max_fixes_the_clean_argmax():
    """target=None explains the clean prediction at every noisy copy, not each copy's argmax."""
    model = linear_model(inputs=2, outputs=2, bias=False)
    model.set_weights([np.array([[1.0, -1.0], [0.0, 0.0]], "float32")])
    x = np.array([[0.01, 0.0]], "float32")  # class 0; noise of radius 0.5 flips it often
    result = kx.metrics.sensitivity_max(kx.Gradient(model), x, noise_scale=0.5, samples=16)
    np.testing.assert_array_equal(result, [0.0])


# =====================================================================================
# Pixel flipping, deletion, insertion
# =====================================================================================
def test_pixel_flipping_reproduces_innvestigates_test():
    """iNNvestigate's tests/tools/test_perturb.py: Flatten -> Dense(1, no bias), w = arange(16)."""
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(1, use_bias=False)]
    )
    model.set_weights([np.arange(16, dtype="float32").reshape(16, 1)])
    x = np.arange(32, dtype="float32").reshape(2, 4, 4, 1)
    attributions = np.abs(helpers.tape_gradient(model, x, 0))
    curve = kx.metrics.pixel_flipping(
        model, x, attributions, 0, region=(2, 2), steps=3, baseline=0.0
    )
    assert curve.scores.shape == (2, 4)
    # iNNvestigate reduces each step to the mean over the batch of (f(x_perturbed) - 0)^2
    mse = np.mean(curve.scores.astype(np.float64) ** 2, axis=0)
    np.testing.assert_array_equal(mse, [5761600, 1654564, 182672, 21284])


def test_pixel_flipping_flips_all_channels_and_orders():
    """A region's channels all go to the baseline; lerf flips in the reverse order."""
    helpers.seeded(1)
    model = keras.Sequential([keras.Input((4, 4, 3)), layers.Flatten(), layers.Dense(2)])
    x = helpers.data((4, 4, 3), seed=10, batch=2)
    attributions = helpers.data((4, 4, 3), seed=11, batch=2)
    for order in ("morf", "lerf"):
        curve = kx.metrics.pixel_flipping(
            model, x, attributions, 1, region=2, steps=4, order=order, baseline=0.5
        )
        totals = attributions.sum(axis=-1).reshape(2, 2, 2, 2, 2).sum(axis=(2, 4))
        expected = np.empty((2, 5))
        for b in range(2):
            ranking = np.argsort(-totals[b].ravel() if order == "morf" else totals[b].ravel())
            copy = x[b].copy()
            expected[b, 0] = scores_of(model, copy[None], 1)[0]
            for step, region in enumerate(ranking):
                row, column = divmod(int(region), 2)
                copy[2 * row : 2 * row + 2, 2 * column : 2 * column + 2, :] = 0.5
                expected[b, step + 1] = scores_of(model, copy[None], 1)[0]
        np.testing.assert_allclose(curve.scores, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            curve.aopc, np.mean(expected[:, :1] - expected, axis=1), rtol=1e-5, atol=1e-5
        )


def ordered_reference(model, x, attributions, target, baseline, steps, insert):
    """Deletion/insertion one copy at a time: the top floor(k n / steps) features change."""
    maps = attributions.sum(axis=-1) if x.ndim > 2 else attributions
    features = maps[0].size
    rows = []
    for b in range(len(x)):
        order = np.argsort(-maps[b].ravel(), kind="stable")
        row = []
        for k in range(steps + 1):
            chosen = np.zeros(features, bool)
            chosen[order[: k * features // steps]] = True
            chosen = chosen.reshape(maps[b].shape)
            if x.ndim > 2:
                chosen = chosen[..., None]
            copy = (
                np.where(chosen, x[b], baseline[b])
                if insert
                else np.where(chosen, baseline[b], x[b])
            )
            row.append(copy)
        rows.append(row)
    copies = np.asarray(rows, np.float32)
    flat = copies.reshape(-1, *x.shape[1:])
    indices = np.repeat(np.broadcast_to(target, (len(x),)), steps + 1)
    return helpers.selected(model, flat, indices).reshape(len(x), steps + 1)


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_deletion_and_insertion_against_a_numpy_loop(conv_model, kind):
    x = helpers.data((8, 8, 2), seed=12)
    attributions = helpers.data((8, 8, 2), seed=13)
    target = np.array([0, 1, 2, 3])
    constant = np.full_like(x, 0.3)
    blurred = helpers.gaussian_blur_reference(x, 5.0).astype(np.float32)
    means = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    for baseline, values in ((0.3, constant), ("blur", blurred), ("mean", means)):
        function = getattr(kx.metrics, kind)
        curve = function(conv_model, x, attributions, target, baseline=baseline, steps=7)
        expected = ordered_reference(
            conv_model, x, attributions, target, values, 7, kind == "insertion"
        )
        np.testing.assert_allclose(curve.scores, expected, rtol=1e-4, atol=1e-4)
        ends = (scores_of(conv_model, x, target), scores_of(conv_model, values, target))
        first, last = ends if kind == "deletion" else ends[::-1]
        np.testing.assert_allclose(curve.scores[:, 0], first, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(curve.scores[:, -1], last, rtol=1e-4, atol=1e-4)
        fractions = np.arange(8) * 64 // 7 / 64
        auc = np.sum((expected[:, 1:] + expected[:, :-1]) / 2 * np.diff(fractions), axis=1)
        np.testing.assert_allclose(curve.auc, auc, rtol=1e-4, atol=1e-4)


def test_deletion_probabilities_tabular_and_callables(dense_model):
    """probabilities=True scores the softmax; a numpy callable gives the Keras model's curve."""
    x = helpers.data((6,), seed=14)
    attributions = helpers.data((6,), seed=15)
    baseline = helpers.data((6,), seed=16, batch=1)[0]
    curve = kx.metrics.deletion(
        dense_model, x, attributions, 2, baseline=baseline, steps=6, probabilities=True
    )
    expected = ordered_reference(
        dense_model, x, attributions, 2, np.broadcast_to(baseline, x.shape), 6, False
    )  # dense_model ends in a softmax: its outputs are the probabilities
    np.testing.assert_allclose(curve.scores, expected, rtol=1e-5, atol=1e-6)

    def predict(batch):
        return dense_model(batch).numpy()

    hosted = kx.metrics.deletion(
        predict, x, attributions, 2, baseline=baseline, steps=6
    )  # a callable's output is used as is: the probabilities
    np.testing.assert_allclose(hosted.scores, expected, rtol=1e-5, atol=1e-6)
    logits = kx.metrics.deletion(dense_model, x, attributions, 2, baseline=baseline, steps=6)
    assert not np.allclose(logits.scores, expected)  # the softmax is stripped by default


def test_cam_maps_broadcast_over_channels(conv_model):
    x = helpers.data((8, 8, 2), seed=17)
    maps = helpers.data((8, 8), seed=18)
    from_maps = kx.metrics.deletion(conv_model, x, maps, 0, steps=5)
    from_images = kx.metrics.deletion(conv_model, x, np.repeat(maps[..., None], 2, -1), 0, steps=5)
    np.testing.assert_array_equal(from_maps.scores, from_images.scores)
    gap = kx.metrics.completeness(conv_model, x, maps, 0)
    expected = 2 * maps.sum(axis=(1, 2)) - (
        scores_of(conv_model, x, 0) - scores_of(conv_model, np.zeros_like(x), 0)
    )
    np.testing.assert_allclose(gap, expected, rtol=1e-4, atol=1e-4)


# =====================================================================================
# Faithfulness correlation, completeness
# =====================================================================================
def test_faithfulness_correlation_is_one_for_exact_linear_attributions():
    """On f = w.x + b, f(x) - f(x_S<-x') = sum_S w (x - x'), so a = w (x - x') correlates at 1."""
    model = linear_model()
    x = helpers.data((6,), seed=19)
    weights = model.get_weights()[0][:, 1]
    exact = weights * (x - 0.2)
    for attributions, expected in ((exact, 1.0), (-exact, -1.0)):
        result = kx.metrics.faithfulness_correlation(
            model, x, attributions, 1, subset=0.5, samples=30, baseline=0.2
        )
        np.testing.assert_allclose(result, expected, atol=1e-5)
    noisy = exact + helpers.data((6,), seed=20)
    result = kx.metrics.faithfulness_correlation(model, x, noisy, 1, samples=30, baseline=0.2)
    assert np.all(result < 0.999)  # any other attribution correlates less


def test_completeness_against_the_model():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=21)
    attributions = helpers.data((8, 8, 2), seed=22)
    gap = kx.metrics.completeness(model, x, attributions, 3, baseline=0.5)
    expected = attributions.sum(axis=(1, 2, 3)) - (
        scores_of(model, x, 3) - scores_of(model, np.full_like(x, 0.5), 3)
    )
    np.testing.assert_allclose(gap, expected, rtol=1e-4, atol=1e-4)


# =====================================================================================
# Randomization and similarities
# =====================================================================================
def small_cnn(seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            layers.Conv2D(4, 3, activation="relu", name="conv1"),
            layers.Conv2D(4, 3, activation="relu", name="conv2"),
            layers.Flatten(name="flatten"),
            layers.Dense(3, name="logits"),
        ]
    )
    return helpers.randomize_biases(model)


def test_randomization_leaves_the_model_bit_identical_and_drops_similarity():
    model = small_cnn()
    x = helpers.data((12, 12, 1), seed=23)
    weights = [w.copy() for w in model.get_weights()]
    before = model(x).numpy()
    cascading = kx.metrics.randomization("gradient", model, x, 0, measure="spearman_abs")
    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(model(x).numpy(), before)
    assert list(cascading) == ["logits", "conv2", "conv1"]  # top-down, layers with weights
    assert np.all(cascading["conv1"] < 0.5)  # a fully random network: explanation changed
    independent = kx.metrics.randomization("gradient", model, x, 0, mode="independent")
    # the first layer randomized is the same draw in both modes
    np.testing.assert_array_equal(independent["logits"], cascading["logits"])
    assert not np.allclose(independent["conv1"], cascading["conv1"])


# the randomized form of this BatchNormalization is known exactly: its initializers are
# constants (no seed), so a re-drawn layer holds these four values whatever the seed
BN_CONSTANTS = {"gamma": 0.7, "beta": -0.2, "moving_mean": 0.3, "moving_variance": 2.0}


def constant_bn_model():
    """Dense(6) -> BatchNormalization (constant initializers) -> tanh -> Dense(3).

    The tanh after the normalization makes the gradient depend on all four of its
    variables (a linear layer after it would hide ``beta`` and ``moving_mean``).
    """
    initializers = {
        f"{name}_initializer": keras.initializers.Constant(value)
        for name, value in BN_CONSTANTS.items()
    }
    return keras.Sequential(
        [
            keras.Input((8,)),
            layers.Dense(6, name="hidden"),
            layers.BatchNormalization(name="bn", **initializers),
            layers.Activation("tanh"),
            layers.Dense(3, name="logits"),
        ]
    )


def test_randomizing_a_batch_norm_redraws_every_variable():
    helpers.seeded(0)
    # trained values away from the constants in all four variables: gamma and the
    # variance in U(0.5, 2), beta and the mean ~ N(0, 0.8), biases too
    model = helpers.randomize(constant_bn_model(), seed=3, scale=0.8)
    x = helpers.data((8,), seed=28, batch=5)
    # the reference: a copy built by hand with the trained weights and the BN constants
    copy = constant_bn_model()
    copy.set_weights(model.get_weights())
    for name, value in BN_CONSTANTS.items():
        variable = getattr(copy.get_layer("bn"), name)
        assert not np.allclose(getattr(model.get_layer("bn"), name).numpy(), value)
        variable.assign(np.full(variable.shape, value, "float32"))
    original = helpers.tape_gradient(model, x, 0).astype(np.float64)
    randomized = helpers.tape_gradient(copy, x, 0).astype(np.float64)
    expected = [stats.pearsonr(a, b).statistic for a, b in zip(original, randomized)]
    result = kx.metrics.randomization("gradient", model, x, 0, layers=["bn"], measure="pearson")
    assert list(result) == ["bn"]
    # float32 gradients of 8 features, correlated in float64: round-off ~1e-6
    np.testing.assert_allclose(result["bn"], expected, rtol=1e-5, atol=1e-6)
    # the randomization changed the explanation enough that a partial re-draw (gamma
    # only, the trained beta, mean and variance kept) would be caught
    copy.get_layer("bn").set_weights(
        [np.full(6, BN_CONSTANTS["gamma"], "float32")] + model.get_layer("bn").get_weights()[1:]
    )
    partial = helpers.tape_gradient(copy, x, 0).astype(np.float64)
    only_gamma = [stats.pearsonr(a, b).statistic for a, b in zip(original, partial)]
    assert np.abs(np.subtract(only_gamma, expected)).max() > 1e-2


def test_similarities_against_scipy_and_skimage():
    first = helpers.data((9, 9, 2), seed=24, batch=3)
    second = first + helpers.data((9, 9, 2), seed=25, batch=3)
    flat_first, flat_second = first.reshape(3, -1), second.reshape(3, -1)
    expected = {
        "spearman_abs": [
            stats.spearmanr(np.abs(a), np.abs(b)).statistic for a, b in zip(flat_first, flat_second)
        ],
        "spearman": [stats.spearmanr(a, b).statistic for a, b in zip(flat_first, flat_second)],
        "pearson": [stats.pearsonr(a, b).statistic for a, b in zip(flat_first, flat_second)],
    }

    def normalized(array):
        maps = np.abs(array).sum(axis=-1)
        return maps / maps.max(axis=(1, 2), keepdims=True)

    expected["ssim"] = [
        structural_similarity(a, b, data_range=1.0)
        for a, b in zip(normalized(first), normalized(second))
    ]
    for measure, values in expected.items():
        result = kx.metrics.similarity(first, second, measure)
        np.testing.assert_allclose(result, values, rtol=1e-5, err_msg=measure)
        assert np.all(np.abs(result) < 0.999)


# =====================================================================================
# Localisation and sparseness, by hand
# =====================================================================================
def test_localisation_by_hand():
    maps = np.array(
        [
            [[0.0, 1.0, 0.0], [2.0, 5.0, -3.0], [0.0, 0.0, 2.0]],
            [[4.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
        ]
    )
    masks = np.array(
        [
            [[0, 1, 0], [0, 1, 1], [0, 0, 0]],
            [[1, 0, 0], [0, 0, 0], [1, 0, 0]],
        ],
        bool,
    )
    # sample 0: peak 5 at (1, 1), inside; sample 1: peaks 4 at (0, 0) and (0, 1), one outside
    np.testing.assert_array_equal(kx.metrics.pointing_game(maps, masks), [1.0, 0.0])
    # positive mass: sample 0 inside 1 + 5 = 6 of 10; sample 1 inside 4 + 1 = 5 of 9
    np.testing.assert_allclose(kx.metrics.relevance_mass(maps, masks), [0.6, 5 / 9], rtol=1e-6)
    # top-3 of sample 0: 5, 2 (1, 0), 2 (2, 2): one inside of 3; top-2 of sample 1: both 4s
    np.testing.assert_allclose(kx.metrics.relevance_rank(maps, masks), [1 / 3, 0.5], rtol=1e-6)
    images = np.stack([maps / 2, maps / 2], axis=-1)  # channels are summed
    np.testing.assert_allclose(kx.metrics.relevance_mass(images, masks), [0.6, 5 / 9], rtol=1e-6)


def test_sparseness_is_the_gini_index():
    """Chalasani et al. 2020: G = sum_k (2k - d - 1) v_(k) / (d sum v), sorted ascending."""
    # [1, 2, 3, 4]: (-3 - 2 + 3 + 12) / (4 * 10) = 0.25; one hot: (d - 1) / d; equal: 0
    values = np.array([[4.0, -1.0, 3.0, 2.0], [0.0, 0.0, 0.0, -7.0], [2.0, 2.0, -2.0, 2.0]])
    np.testing.assert_allclose(kx.metrics.sparseness(values), [0.25, 0.75, 0.0], atol=1e-7)


# =====================================================================================
# Bad input
# =====================================================================================
def test_bad_input_names_the_function_the_value_and_the_fix(conv_model):
    x = helpers.data((8, 8, 2), seed=26)
    good = helpers.data((8, 8, 2), seed=27)
    with pytest.raises(
        ValueError,
        match=r"deletion: attributions must be shaped like x .*"
        r"Received: attributions of shape \(4, 8, 2\)",
    ):
        kx.metrics.deletion(conv_model, x, good[:, 0], 0)
    with pytest.raises(
        ValueError,
        match=r"insertion: steps must be at most the number of "
        r"features \(64\).*Received: steps=65. Pass steps <= 64",
    ):
        kx.metrics.insertion(conv_model, x, good, 0, steps=65)
    with pytest.raises(
        ValueError,
        match=r"pixel_flipping: steps must be at most the number of "
        r"regions of \(3, 3\) pixels \(9\).*Received: steps=100",
    ):
        kx.metrics.pixel_flipping(conv_model, x, good, 0, region=3)
    with pytest.raises(
        ValueError,
        match=r"pixel_flipping: region must be a positive int.*"
        r"Received: region=\(0, 2\)",
    ):
        kx.metrics.pixel_flipping(conv_model, x, good, 0, region=(0, 2))
    with pytest.raises(
        ValueError,
        match=r"deletion: unknown baseline name. Received: "
        r"baseline='blurr'. Use a number, one of \('blur', 'mean'\)",
    ):
        kx.metrics.deletion(conv_model, x, good, 0, baseline="blurr", steps=5)
    with pytest.raises(
        ValueError,
        match=r"pointing_game: masks must have shape \(4, 8, 8\).*"
        r"Received: masks of shape \(4, 8, 7\)",
    ):
        kx.metrics.pointing_game(good, np.ones((4, 8, 7), bool))
    with pytest.raises(
        ValueError,
        match=r"randomization: unknown measure. Received: "
        r"measure='ssmi'. Expected one of",
    ):
        kx.metrics.randomization("gradient", conv_model, x, 0, measure="ssmi")
    with pytest.raises(
        ValueError,
        match=r"infidelity: the perturbation callable must return "
        r"I shaped like its input \(8, 8, 8, 2\).*Received: shape \(4, 8, 8, 2\)",
    ):
        kx.metrics.infidelity(conv_model, x, good, 0, perturbation=lambda r: x, samples=2)
    with pytest.raises(ValueError, match=r"pixel_flipping: Unknown order. Received: order='most'"):
        kx.metrics.pixel_flipping(conv_model, x, good, 0, region=2, steps=4, order="most")
    with pytest.raises(
        ValueError,
        match=r"faithfulness_correlation: subset is the fraction.*"
        r"Received: subset=1.5",
    ):
        kx.metrics.faithfulness_correlation(conv_model, x, good, 0, subset=1.5)
    with pytest.raises(
        ValueError,
        match=r"sensitivity_max: samples must be a positive int. "
        r"Received: samples=0",
    ):
        kx.metrics.sensitivity_max(kx.Gradient(conv_model), x, samples=0)


# =====================================================================================
# evaluate: the table is the metrics, called directly
# =====================================================================================
def test_evaluate_rows_are_the_metrics_means():
    helpers.seeded(2)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(4, 3, activation="relu", name="conv"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(5, name="logits"),
        ]
    )
    images, labels, masks = kx.datasets.shapes(4, size=16, seed=1)
    rows = kx.metrics.evaluate(
        {"gradient": {}, "grad_cam": {}}, model, images, labels, masks=masks, steps=8, verbose=0
    )
    assert [row["method"] for row in rows] == ["gradient", "grad_cam"]
    for row in rows:
        assert list(row) == ["method", "seconds_per_sample", *kx.metrics.METRICS]
        relevance = kx.create_analyzer(row["method"], model).analyze(images, labels)
        direct = {
            "deletion_auc": kx.metrics.deletion(model, images, relevance, labels, steps=8).auc,
            "insertion_auc": kx.metrics.insertion(model, images, relevance, labels, steps=8).auc,
            "pointing_game": kx.metrics.pointing_game(relevance, masks),
            "relevance_mass": kx.metrics.relevance_mass(relevance, masks),
            "sparseness": kx.metrics.sparseness(relevance),
            "infidelity": kx.metrics.infidelity(model, images, relevance, labels),
            "sensitivity_max": kx.metrics.sensitivity_max(
                kx.create_analyzer(row["method"], model), images, labels
            ),
        }
        for metric, values in direct.items():
            np.testing.assert_allclose(row[metric], np.nanmean(values), rtol=1e-5, err_msg=metric)
    with pytest.raises(
        ValueError,
        match=r"evaluate: metric 'pointing_game' compares with "
        r"ground-truth masks. Received: masks=None",
    ):
        kx.metrics.evaluate(["gradient"], model, images, metrics=["pointing_game"])


def test_evaluate_randomization_of_a_method_with_its_own_seed():
    # smoothgrad's `seed` must not collide with randomization's re-initialization seed
    helpers.seeded(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(4, 3, activation="relu", name="conv"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(5, name="logits"),
        ]
    )
    images, labels, _ = kx.datasets.shapes(3, size=16, seed=1)
    images = images[:, :8, :8]
    rows = kx.metrics.evaluate(
        {"smoothgrad": {"samples": 4, "seed": 5}},
        model,
        images,
        labels,
        metrics=["randomization"],
        seed=2,
        verbose=0,
    )
    direct = kx.metrics.randomization("smoothgrad", model, images, labels, seed=2, samples=4)
    np.testing.assert_allclose(rows[0]["randomization"], np.nanmean(direct["conv"]), rtol=1e-6)


def test_randomization_reuses_its_clone_but_reads_the_current_weights(monkeypatch):
    import importlib

    module = importlib.import_module("keras_explain.metrics.randomization")
    model = small_cnn()
    x = helpers.data((12, 12, 1), seed=26)
    first = kx.metrics.randomization("gradient", model, x, 0)
    again = kx.metrics.randomization("gradient", model, x, 0)
    for layer in first:
        np.testing.assert_array_equal(first[layer], again[layer])
    # new weights for the user's model: the reused clone must explain those
    model.set_weights([w * 1.5 + 0.01 for w in model.get_weights()])
    reused = kx.metrics.randomization("gradient", model, x, 0)
    monkeypatch.setattr(module, "_CLONES", type(module._CLONES)())  # nothing to reuse
    fresh = kx.metrics.randomization("gradient", model, x, 0)
    for layer in fresh:
        np.testing.assert_allclose(reused[layer], fresh[layer], rtol=1e-6)
    assert not np.allclose(reused["logits"], first["logits"])


def test_spearman_with_ties_is_scipys():
    generator = np.random.default_rng(27)
    first = np.round(generator.normal(size=(3, 300)), 1)  # many ties
    first[0, :100] = 0.0  # a block of equal values (dead ReLUs)
    second = first + generator.normal(size=(3, 300))
    for measure, transform in (("spearman", np.asarray), ("spearman_abs", np.abs)):
        expected = [
            stats.spearmanr(transform(a), transform(b)).statistic for a, b in zip(first, second)
        ]
        result = kx.metrics.similarity(first, second, measure)
        np.testing.assert_allclose(result, expected, rtol=1e-5)
    assert np.isnan(kx.metrics.similarity(np.ones((1, 5)), first[:1, :5], "spearman")[0])


# =====================================================================================
# The metric registry: one registration, seen by every table, default and check
# =====================================================================================
def dense_logits(seed=31):
    """Flatten + Dense(3) on (4, 4, 1) images, with a non-zero bias."""
    helpers.seeded(seed)
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(3, name="logits")]
    )
    return helpers.randomize_biases(model)


def dot_with_input(context):
    """Σ a·x per sample: for the gradient of a linear model, f_t(x) − b_t."""
    contexts.append(context)
    axes = tuple(range(1, context.x.ndim))
    return np.sum(np.asarray(context.attributions) * context.x, axis=axes)


def mass_in_mask(context):
    """Σ of the channel-summed attributions inside the mask, per sample."""
    maps = np.asarray(context.attributions).sum(axis=-1)
    return np.sum(maps * context.masks, axis=(1, 2))


contexts = []


@pytest.fixture
def toy_metrics():
    """Two metrics registered once each, removed again whatever the test does."""
    contexts.clear()
    kx.metrics.register_metric("toy_dot", better="higher", report_default=True)(dot_with_input)
    kx.metrics.register_metric("toy_mass", better="lower", needs_masks=True, report_default=True)(
        mass_in_mask
    )
    try:
        yield
    finally:
        for name in ("toy_dot", "toy_mass"):
            if name in kx.metrics.registry.names():
                kx.metrics.registry.unregister_metric(name)


def linear_closed_forms(model, x, target, masks):
    """f_t(x) − b_t and Σ_{mask} W_t (the gradient is W_t), by numpy from the weights."""
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_weights())
    flat = x.reshape(len(x), -1).astype(np.float64)
    columns = kernel[:, target].T  # (B, 16): the gradient of each sample's target logit
    dot = np.sum(flat * columns, axis=1)
    assert not np.allclose(dot, (flat @ kernel + bias)[np.arange(len(x)), target])  # b_t != 0
    mass = np.sum(columns * masks.reshape(len(x), -1), axis=1)
    return dot, mass


def test_one_registration_is_seen_by_every_table_default_and_check(toy_metrics, tmp_path):
    from keras_explain import benchmark

    model = dense_logits()
    x = helpers.data((4, 4, 1), seed=32, batch=3)
    target = np.array([2, 0, 1])
    masks = np.zeros((3, 4, 4), bool)
    masks[:, 1:3, :2] = True
    dot, mass = linear_closed_forms(model, x, target, masks)
    registry = kx.metrics.registry

    # the catalogue, the directions and the defaults
    assert kx.metrics.METRICS[-2:] == ("toy_dot", "toy_mass")
    assert benchmark.BETTER["toy_dot"] == "higher" and benchmark.BETTER["toy_mass"] == "lower"
    assert benchmark.COLUMNS[-2:] == ("toy_dot", "toy_mass")  # evaluate's defaults with masks
    assert "| toy_dot ↑ | toy_mass ↓ |" in benchmark.markdown_table([])
    assert registry.default_metrics(masks=False)[-1] == "toy_dot"
    assert registry.default_metrics(masks=True, report=True)[-2:] == ["toy_dot", "toy_mass"]

    # evaluate: the rows hold the closed forms, and the context is the documented one
    rows = kx.metrics.evaluate(
        ["gradient"],
        model,
        x,
        target,
        masks=masks,
        metrics=["toy_dot", "toy_mass"],
        steps=40,
        seed=7,
        verbose=0,
    )
    assert list(rows[0]) == ["method", "seconds_per_sample", "toy_dot", "toy_mass"]
    # float32 gradients summed over 16 features against float64: a few float32 ulps
    np.testing.assert_allclose(rows[0]["toy_dot"], dot.mean(), rtol=1e-6)
    np.testing.assert_allclose(rows[0]["toy_mass"], mass.mean(), rtol=1e-6)
    (context,) = contexts
    assert (context.name, context.params, context.steps, context.seed) == ("gradient", {}, 16, 7)
    assert context.masks is masks and context.model is model
    np.testing.assert_array_equal(context.target, target)
    assert isinstance(context.analyzer, kx.Gradient)

    # the report: its default columns and its "better" arrows, values for the top class
    path = kx.report(["gradient"], model, x, masks=masks, metrics=None, out=str(tmp_path / "r"))
    text = open(path, encoding="utf-8").read()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))
    assert data["metrics"]["columns"][-2:] == ["toy_dot", "toy_mass"]
    assert data["metrics"]["better"]["toy_dot"] == "higher"
    top = np.argmax(model.predict(x, verbose=0), axis=1)
    top_dot, top_mass = linear_closed_forms(model, x, top, masks)
    np.testing.assert_allclose(data["metrics"]["rows"][0]["toy_dot"], top_dot.mean(), rtol=1e-6)
    np.testing.assert_allclose(data["metrics"]["rows"][0]["toy_mass"], top_mass.mean(), rtol=1e-6)

    # ExplanationLogger: accepted by name, logged as evaluate computes it
    logger = kx.callbacks.ExplanationLogger(
        ["gradient"], x, target, log_dir=tmp_path, metrics=["toy_dot"]
    )
    logger.set_model(model)
    logger.on_train_begin()
    np.testing.assert_allclose(logger.scores("gradient")["toy_dot"], dot.mean(), rtol=1e-6)

    # the one check, with each caller's prefix: masks needed, then the name unknown
    calls = {
        "evaluate": lambda m: kx.metrics.evaluate(["gradient"], model, x, metrics=m, verbose=0),
        "report": lambda m: kx.report(["gradient"], model, x, metrics=m, out=str(tmp_path / "r")),
        "ExplanationLogger": lambda m: kx.callbacks.ExplanationLogger(
            ["gradient"], x, metrics=m, log_dir=tmp_path
        ),
    }
    for caller, call in calls.items():
        with pytest.raises(
            ValueError,
            match=rf"^{caller}: metric 'toy_mass' compares with ground-truth masks\. "
            r"Received: masks=None\. Pass masks=\(B, H, W\) booleans",
        ):
            call(["toy_mass"])
        with pytest.raises(
            ValueError,
            match=rf"^{caller}: unknown metric\. Received: 'toy_dott'\. Expected some of "
            r"\('deletion_auc', .*'toy_dot', 'toy_mass'\)",
        ):
            call(["toy_dott"])

    # unregistered: gone from every table, refused by every check
    assert registry.unregister_metric("toy_mass").needs_masks
    assert "toy_mass" not in kx.metrics.METRICS and "toy_mass" not in benchmark.BETTER
    assert benchmark.COLUMNS[-1] == "toy_dot"
    for caller, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{caller}: unknown metric\. Received: 'toy_mass'"):
            call(["toy_mass"])


def test_registering_a_metric_checks_its_name_direction_and_flags(toy_metrics):
    register = kx.metrics.register_metric
    with pytest.raises(ValueError, match=r"the metric 'toy_dot' is already registered\. Pick"):
        register("toy_dot", better="higher")(dot_with_input)
    with pytest.raises(ValueError, match=r"other keys of a row\). Received: name='method'"):
        register("method", better="higher")
    with pytest.raises(ValueError, match=r"better must be one of \('higher', 'lower'\)\. "):
        register("toy_up", better="up")
    with pytest.raises(TypeError, match=r"needs_masks must be True or False\. Received: "):
        register("toy_flag", better="lower", needs_masks="yes")
    with pytest.raises(TypeError, match=r"'toy_value' needs a function values\(context\)"):
        register("toy_value", better="lower")(3.0)
    with pytest.raises(ValueError, match=r"unregister_metric: unknown metric\. Received: 'nope'"):
        kx.metrics.registry.unregister_metric("nope")
    assert "toy_value" not in kx.metrics.METRICS and "toy_up" not in kx.metrics.METRICS


def test_the_guides_table_of_metrics_is_the_registry():
    page = (helpers.REPO_ROOT / "docs" / "guide" / "metrics.md").read_text(encoding="utf-8")
    section = page.split("### The registered metrics", 1)[1].split("\n#", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    word = {True: "yes", False: "no"}
    assert rows == [
        [
            f"`{metric.name}`",
            metric.better,
            word[metric.needs_masks],
            word[metric.default],
            word[metric.report_default],
        ]
        for metric in kx.metrics.registry.registered()
    ]
    # the built-in columns, as the paper of each metric defines its direction
    assert [row[:3] for row in rows] == [
        ["`deletion_auc`", "lower", "no"],
        ["`insertion_auc`", "higher", "no"],
        ["`infidelity`", "lower", "no"],
        ["`sensitivity_max`", "lower", "no"],
        ["`pointing_game`", "higher", "yes"],
        ["`relevance_mass`", "higher", "yes"],
        ["`randomization`", "lower", "no"],
        ["`sparseness`", "higher", "no"],
    ]
