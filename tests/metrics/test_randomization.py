"""Model-parameter randomization and the similarity measures, against scipy and skimage."""

import helpers
import keras
import numpy as np
from scipy import stats
from skimage.metrics import structural_similarity

import keras_explain as kx

layers = keras.layers


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


def test_randomization_reuses_its_clone_but_reads_the_current_weights(monkeypatch):
    import importlib

    module = importlib.import_module("keras_explain.metrics.sanity")
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


def test_average_ranks_equal_scipys_rankdata_with_ties():
    from keras_explain.metrics.sanity import average_ranks

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        rows = rng.normal(size=(6, 301)).astype(dtype)
        rows[:, :40] = 0.0  # a run of zeros (ReLU gradients)
        rows[:, 40:60] = 1.5  # another run
        rows[2] = 2.0  # a constant row
        rows[4, 1::2] = rows[4, :-1:2]  # pairs of equal values
        np.testing.assert_array_equal(average_ranks(rows), stats.rankdata(rows, axis=1))
