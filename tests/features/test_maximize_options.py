"""``features.maximize`` options: Keras optimizers, Lp and norm penalties, inputs, callbacks.

Expected values come from numpy loops of the optimizers' update formulas (plain
gradient ascent, Keras' Adam) on a linear unit, the penalties' formulas, the
closed-form optimum ``x = c + w / (2 λ)`` of a linear unit under ``l2(λ)`` for every
input of a two-input model, and exact equality where two paths must agree.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import LINEAR_UNIT_L2 as LAMBDA
from helpers import channel_means
from helpers import feature_cnn as small_cnn
from helpers import linear_unit_model as linear_model

from keras_explain import features


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


def linear_ascent_gradient(theta, w):
    """d/dθ of w·x − λ Σ (x − 0.5)² for x = σ(θ): (w − 2λ(x − 0.5)) x (1 − x)."""
    x = sigmoid(theta)
    return (w - 2 * LAMBDA * (x - 0.5)) * x * (1 - x)


def linear_options(**extra):
    return dict(
        parameterization="pixel", transforms=None, regularizers=[features.l2(LAMBDA)], **extra
    )


START = np.random.default_rng(3).uniform(0.2, 0.8, (6, 6, 3))


# =====================================================================================
# Optimizers: a Keras optimizer instance or name, its own state each call
# =====================================================================================
def test_sgd_is_plain_gradient_ascent_and_callback_values_are_the_objective():
    model, kernel = linear_model()
    w, bias = kernel[..., 0].astype(np.float64), float(model.get_layer("dense").bias[0])
    rate, steps = 0.3, 25
    seen = []
    (image,) = features.maximize(
        model,
        features.channel("dense", 0),
        **linear_options(optimizer=keras.optimizers.SGD(rate), steps=steps, init=START),
        callback=lambda step, images, values: seen.append((step, images.copy(), values)),
    )
    # θ ← θ + η ∇θ (w·σ(θ) − λ Σ (σ(θ) − 0.5)²), from θ = logit(start)
    theta = np.log(START / (1 - START))
    objectives = []
    for _ in range(steps):
        objectives.append(float(np.sum(w * sigmoid(theta)) + bias))  # value at this step
        theta = theta + rate * linear_ascent_gradient(theta, w)
    np.testing.assert_allclose(image, sigmoid(theta), rtol=1e-5, atol=1e-6)
    assert [step for step, _, _ in seen] == list(range(1, steps + 1))
    np.testing.assert_allclose([values[0] for _, _, values in seen], objectives, rtol=1e-5)
    np.testing.assert_array_equal(seen[-1][1][0], image)


def test_keras_adam_instance_is_the_builtin_adam_and_keras_formula():
    model, kernel = linear_model()
    w = kernel[..., 0].astype(np.float64)
    options = linear_options(steps=30, init=START)
    builtin = features.maximize(model, features.channel("dense", 0), **options)
    named = features.maximize(model, features.channel("dense", 0), optimizer="adam", **options)
    user = keras.optimizers.Adam(0.05)
    instance = features.maximize(model, features.channel("dense", 0), optimizer=user, **options)
    np.testing.assert_array_equal(builtin, named)
    np.testing.assert_array_equal(builtin, instance)
    # the user's optimizer is copied, never built or stepped
    assert not user.built and int(user.iterations) == 0
    # Keras' Adam (Kingma & Ba, with ε added to the uncorrected √v):
    # m ← β1 m + (1 − β1) g, v ← β2 v + (1 − β2) g², θ ← θ − η √(1 − β2^t) / (1 − β1^t) m / (√v + ε)
    beta1, beta2, epsilon = 0.9, 0.999, 1e-7
    theta = np.log(START / (1 - START))
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, 31):
        g = -linear_ascent_gradient(theta, w)  # gradient of the loss −objective
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        theta = theta - 0.05 * np.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (np.sqrt(v) + epsilon)
    np.testing.assert_allclose(builtin[0], sigmoid(theta), rtol=1e-4, atol=1e-5)


def test_optimizer_names_take_learning_rate_and_calls_are_independent():
    model, kernel = linear_model()
    w = kernel[..., 0].astype(np.float64)
    options = linear_options(steps=10, init=START)
    momentum = keras.optimizers.SGD(0.2, momentum=0.5)
    first = features.maximize(model, features.channel("dense", 0), optimizer=momentum, **options)
    again = features.maximize(model, features.channel("dense", 0), optimizer=momentum, **options)
    np.testing.assert_array_equal(first, again)  # fresh momentum each call
    (by_name,) = features.maximize(
        model, features.channel("dense", 0), optimizer="sgd", learning_rate=0.2, **options
    )
    theta = np.log(START / (1 - START))
    for _ in range(10):
        theta = theta + 0.2 * linear_ascent_gradient(theta, w)
    np.testing.assert_allclose(by_name, sigmoid(theta), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"optimizer": "adamm"}, ValueError, r"Keras optimizer name.*optimizer='adamm'"),
        ({"optimizer": 0.1}, TypeError, r"optimizer must be a name.*optimizer=0.1"),
        (
            {"optimizer": keras.optimizers.SGD(0.1), "learning_rate": 0.1},
            ValueError,
            r"set it on the optimizer instance.*learning_rate=0.1",
        ),
        ({"callback": "print"}, TypeError, r"callback must be callable.*callback='print'"),
        ({"callback_every": 0}, ValueError, r"callback_every"),
    ],
)
def test_bad_optimizer_and_callback_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        features.maximize(small_cnn(), features.logit(0), steps=10**9, **kwargs)


# =====================================================================================
# Lp and norm penalties
# =====================================================================================
def test_lp_and_norm_match_their_formulas():
    images = np.random.default_rng(0).uniform(-1, 2, (3, 5, 4, 2)).astype("float32")
    x = images.astype(np.float64).reshape(3, -1)
    cases = [
        (features.lp(3, 0.2), 0.2 * np.sum(np.abs(x - 0.5) ** 3, axis=1)),
        (features.lp(1.5, 0.7, center=0.1), 0.7 * np.sum(np.abs(x - 0.1) ** 1.5, axis=1)),
        # tf-keras-vis Norm(weight, p): weight * ||x||_p / n^(1/p) (regularizers.py L72-77)
        (
            features.norm(2, 0.3, center=0.0),
            0.3 * np.linalg.norm(x, ord=2, axis=1) / x.shape[1] ** 0.5,
        ),
        (
            features.norm(1, 0.3, center=0.0),
            0.3 * np.linalg.norm(x, ord=1, axis=1) / x.shape[1],
        ),
        (features.norm(3, 2.0), 2.0 * np.mean(np.abs(x - 0.5) ** 3, axis=1) ** (1 / 3)),
    ]
    for regularizer, expected in cases:
        np.testing.assert_allclose(regularizer(tf.constant(images), 0.5), expected, rtol=1e-5)
    # l1 and l2 are lp's p = 1 and 2, value for value
    for special, general in [
        (features.l1(0.4), features.lp(1, 0.4)),
        (features.l2(3), features.lp(2, 3)),
    ]:
        assert special == general
        np.testing.assert_array_equal(special(images, 0.5), general(images, 0.5))
    # an image at the center: the norm's subgradient 0, not NaN
    center = tf.Variable(np.full((1, 2, 2, 1), 0.5, np.float32))
    with tf.GradientTape() as tape:
        penalty = features.norm(2, 1.0)(center, 0.5)
    assert float(penalty[0]) == 0 and np.all(tape.gradient(penalty, center).numpy() == 0)


def test_lp_optimum_of_a_linear_unit():
    # maximize w·x − λ Σ |x − 0.5|³: 3 λ d² sign(d) = w, so x = 0.5 + sign(w) √(|w| / (3λ))
    model, kernel = linear_model()
    w, weight = kernel[..., 0], 4.0
    (image,) = features.maximize(
        model,
        features.channel("dense", 0),
        parameterization="pixel",
        transforms=None,
        regularizers=[features.lp(3, weight)],
        steps=400,
        learning_rate=0.1,
    )
    np.testing.assert_allclose(
        image, 0.5 + np.sign(w) * np.sqrt(np.abs(w) / (3 * weight)), atol=0.03
    )


def test_bad_exponents():
    with pytest.raises(ValueError, match=r"features.lp needs an exponent p >= 1.*p=0.5"):
        features.lp(0.5, 1.0)
    with pytest.raises(ValueError, match=r"features.norm needs an exponent.*p=inf"):
        features.norm(float("inf"), 1.0)


# =====================================================================================
# Several inputs: each optimized with its own parameters, a list back in input order
# =====================================================================================
def image_and_vector_model():
    """Image (6, 6, 3) and vector (4,) -> concatenated -> Dense(2) "dense": linear in both."""
    image, vector = keras.Input((6, 6, 3), name="image"), keras.Input((4,), name="vector")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), vector])
    dense = keras.layers.Dense(2, name="dense")
    model = keras.Model([image, vector], dense(joined))
    rng = np.random.default_rng(7)
    kernel = rng.uniform(-1, 1, (112, 2)).astype("float32")
    dense.set_weights([kernel, np.zeros(2, np.float32)])
    return model, kernel[:108, 0].reshape(6, 6, 3), kernel[108:, 0]


def test_every_input_reaches_its_own_optimum():
    # x_i = c_i + w_i / (2λ) for each input, c_i the middle of its own value range
    model, w_image, w_vector = image_and_vector_model()
    image, vector = features.maximize(
        model,
        features.channel("dense", 0),
        value_range=[(0.0, 1.0), (-1.0, 1.0)],
        **linear_options(steps=400, learning_rate=0.1),
    )
    assert image.shape == (1, 6, 6, 3) and vector.shape == (1, 4)
    np.testing.assert_allclose(image[0], 0.5 + w_image / (2 * LAMBDA), atol=0.02)
    np.testing.assert_allclose(vector[0], w_vector / (2 * LAMBDA), atol=0.02)


def test_two_image_inputs_with_fourier_transforms_and_callback():
    small, large = keras.Input((8, 8, 3), name="small"), keras.Input((12, 10, 1), name="large")
    pooled = [
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(x)) for x in (small, large)
    ]
    model = keras.Model(
        [small, large], keras.layers.Dense(3, name="head")(keras.layers.Concatenate()(pooled))
    )
    frames = []
    options = dict(steps=6, batch=2, regularizers=[[features.total_variation(1e-3)], []])
    result = features.maximize(model, features.logit(1), **options)
    again = features.maximize(
        model,
        features.logit(1),
        callback=lambda step, images, values: frames.append(images),
        **options,
    )
    assert [x.shape for x in result] == [(2, 8, 8, 3), (2, 12, 10, 1)]
    assert len(frames) == 6 and isinstance(frames[0], list)
    for first, second in zip(result, again):
        np.testing.assert_array_equal(first, second)
    # the two inputs start from different random parameters
    start = features.maximize(model, features.logit(1), steps=0, size=[None, (8, 8)])
    assert start[1].shape == (1, 8, 8, 1)
    assert not np.allclose(start[0][..., :1], start[1], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"regularizers": [features.total_variation(1.0)]},
            ValueError,
            r"total_variation needs an image input.*input 1, 'vector'.*one list of regularizers",
        ),
        ({"value_range": [(0, 1)]}, ValueError, r"2 inputs; give value_range once.*\[\(0, 1\)\]"),
        ({"size": [(6, 6), (4, 4)]}, ValueError, r"input 1, 'vector'.*takes no size"),
        (
            {"init": [None, np.zeros(3)]},
            ValueError,
            r"init must be finite images of shape \(1, 4\)",
        ),
    ],
)
def test_bad_arguments_for_several_inputs(kwargs, error, message):
    model, _, _ = image_and_vector_model()
    with pytest.raises(error, match=message):
        features.maximize(model, features.channel("dense", 0), steps=10**9, **kwargs)


def test_an_input_no_objective_reads_stays_where_it_started():
    model, _, _ = image_and_vector_model()
    start = [np.full((6, 6, 3), 0.3), np.full(4, 0.7)]
    flat = keras.layers.Flatten()(model.inputs[0])
    only_image = keras.Model(model.inputs, keras.layers.Dense(1, name="only")(flat))
    moved, still = features.maximize(
        only_image, features.channel("only", 0), steps=5, init=start, transforms=None
    )
    np.testing.assert_allclose(still[0], start[1], atol=1e-5)
    assert np.abs(moved - 0.3).max() > 1e-2


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (lambda: keras.Input((None,)), r"input .*\(None,\).*needs a fully known shape"),
        (lambda: keras.Input((5,), dtype="int32"), r"input .*is int32.*no gradient"),
    ],
)
def test_inputs_that_cannot_be_optimized(inputs, message):
    x = inputs()
    y = keras.layers.Dense(2, name="dense")(
        keras.ops.mean(keras.ops.cast(x, "float32"), axis=1, keepdims=True)
    )
    with pytest.raises(ValueError, match=message):
        features.maximize(keras.Model(x, y), features.channel("dense", 0), steps=10**9)


# =====================================================================================
# Callbacks: the same compiled loop in pieces, the same images bit for bit
# =====================================================================================
def test_callback_gives_the_same_images_and_the_objective_of_each_step():
    model = small_cnn()
    objectives = [features.channel("conv2", 3), features.channel("conv2", 5)]
    options = dict(steps=12, batch=2, seed=4)
    plain = features.maximize(model, objectives, **options)
    calls = []
    every_five = features.maximize(
        model, objectives, callback=lambda *args: calls.append(args), callback_every=5, **options
    )
    np.testing.assert_array_equal(plain, every_five)
    assert [step for step, _, _ in calls] == [5, 10, 12]  # and after the last step
    np.testing.assert_array_equal(calls[-1][1], plain)
    # without transforms, the values reported after step k are the objective of the
    # images after step k - 1 (the ones the step's gradient was taken at)
    options = dict(options, transforms=None)
    calls.clear()
    last = features.maximize(
        model, objectives, callback=lambda *args: calls.append(args), **options
    )
    np.testing.assert_array_equal(last, features.maximize(model, objectives, **options))
    before = [features.maximize(model, objectives, steps=0, batch=2, seed=4)]
    before += [images for _, images, _ in calls[:-1]]
    for (_, _, values), images in zip(calls, before):
        means = channel_means(model, "conv2", images)
        np.testing.assert_allclose(values, [*means[:2, 3], *means[2:, 5]], rtol=1e-4, atol=1e-5)


def test_gif_frames_from_a_callback(tmp_path):
    from PIL import Image

    model = small_cnn()
    frames = []

    def collect(step, images, values):
        frames.append(Image.fromarray((images[0] * 255).astype("uint8")))

    features.maximize(
        model, features.channel("conv2", 1), steps=8, callback=collect, callback_every=2
    )
    path = tmp_path / "maximize.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
    assert Image.open(path).n_frames == 4
