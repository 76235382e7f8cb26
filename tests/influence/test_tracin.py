"""TracIn against per-example gradients written out by hand and against a slow tape loop."""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def linear_gradients(kernel, bias, x, y):
    """Per-example softmax cross-entropy gradients of ``x W + b``: ``[x ⊗ (p - e_y), p - e_y]``.

    (Kernel entries first, row-major, then the bias.)
    """
    delta = softmax(x @ kernel + bias) - np.eye(kernel.shape[1])[y]
    outer = np.einsum("bi,bo->bio", x, delta).reshape(len(x), -1)
    return np.concatenate([outer, delta], axis=1)


def data(n=30, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    return x, rng.integers(0, classes, n)


def linear_model(seed=0):
    helpers.seeded(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="head")])


def two_layer_model(seed=0):
    helpers.seeded(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="tanh", name="hidden"),
            keras.layers.Dense(3, name="head"),
        ]
    )


def snapshots(model, count=3, seed=1):
    """``count`` weight sets around the model's own (as training would visit)."""
    rng = np.random.default_rng(seed)
    return [
        [w + rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()]
        for _ in range(count)
    ]


@pytest.mark.parametrize("layers", [None, ["head"]])
def test_one_linear_layer_equals_the_hand_computed_dot_products(layers):
    """Pruthi et al. eq. (3): sum_c η_c ∇L(θ_c, z)·∇L(θ_c, z'), one Dense layer by hand."""
    model = linear_model()
    x, y = data()
    checkpoints, rates = snapshots(model), [0.1, 0.05, 0.01]
    tracin = kx.influence.TracIn(
        model, (x, y), checkpoints=checkpoints, learning_rates=rates, loss=LOSS, layers=layers
    )
    assert tracin.fast == (layers is not None)  # the Dense head: closed form
    expected = np.zeros((5, len(x)))
    norms = np.zeros(len(x))
    for (kernel, bias), rate in zip(checkpoints, rates):
        train = linear_gradients(kernel.astype(np.float64), bias, x, y)
        test = linear_gradients(kernel.astype(np.float64), bias, x[:5], y[:5])
        expected += rate * test @ train.T
        norms += rate * (train**2).sum(axis=1)
    np.testing.assert_allclose(tracin.influence(x[:5], y[:5]), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(tracin.self_influence(), norms, rtol=1e-5)


def tape_gradients(model, variables, x, y):
    """One GradientTape per example: the slow reference of the vectorized Jacobian."""
    rows = []
    for i in range(len(x)):
        with tf.GradientTape() as tape:
            value = LOSS(y[i : i + 1], model(x[i : i + 1]))
        grads = tape.gradient(value, variables)
        rows.append(np.concatenate([g.numpy().reshape(-1) for g in grads]))
    return np.array(rows, np.float64)


def test_hidden_layers_jacobian_equals_a_tape_per_example():
    model = two_layer_model()
    x, y = data(12)
    tracin = kx.influence.TracIn(model, (x, y), loss=LOSS, layers=["hidden"], learning_rates=0.5)
    assert not tracin.fast
    hidden = model.get_layer("hidden").trainable_variables
    train = tape_gradients(model, hidden, x, y)
    np.testing.assert_allclose(
        tracin.influence(x[:4], y[:4]), 0.5 * train[:4] @ train.T, rtol=1e-4, atol=1e-7
    )
    # every trainable variable: the hidden layer's and the head's
    full = kx.influence.TracIn(model, (x, y), loss=LOSS)
    everything = tape_gradients(model, model.trainable_variables, x, y)
    np.testing.assert_allclose(
        full.influence(x[:4], y[:4]), everything[:4] @ everything.T, rtol=1e-4, atol=1e-7
    )


def test_fast_head_equals_the_jacobian_of_the_head():
    """Captum's TracInCPFast: (a·a' + 1)(δ·δ') equals the head's full per-example gradients."""
    model = two_layer_model()
    x, y = data(20)
    checkpoints = snapshots(model, 2)
    fast = kx.influence.TracIn(model, (x, y), loss=LOSS, layers=["head"], checkpoints=checkpoints)
    assert fast.fast
    expected = 0
    clone = keras.models.clone_model(model)
    for weights in checkpoints:
        clone.set_weights(weights)
        head = tape_gradients(clone, clone.get_layer("head").trainable_variables, x, y)
        expected = expected + head[:6] @ head.T
    np.testing.assert_allclose(fast.influence(x[:6], y[:6]), expected, rtol=1e-4, atol=1e-7)


def test_projection_is_within_the_johnson_lindenstrauss_error():
    """Entries of g R Rᵀ g' have standard deviation <= sqrt(2/d) |g| |g'|."""
    model = two_layer_model()
    x, y = data(40)
    exact = kx.influence.TracIn(model, (x, y), loss=LOSS, layers=["head"])
    d = 512
    projected = kx.influence.TracIn(model, (x, y), loss=LOSS, layers=["head"], projection_dim=d)
    norms = np.sqrt(exact.self_influence())
    error = np.abs(projected.influence(x, y) - exact.influence(x, y)) / np.outer(norms, norms)
    assert error.max() <= 4.5 * np.sqrt(2 / d)  # 1,600 entries, 4.5 standard deviations
    assert error.mean() <= np.sqrt(2 / d)
    np.testing.assert_allclose(projected.self_influence(), exact.self_influence())  # exact
    again = kx.influence.TracIn(model, (x, y), loss=LOSS, layers=["head"], projection_dim=d)
    np.testing.assert_array_equal(again.influence(x[:3], y[:3]), projected.influence(x[:3], y[:3]))


def test_proponents_and_opponents_are_the_extremes_of_the_scores():
    model = two_layer_model()
    x, y = data(25)
    tracin = kx.influence.TracIn(model, (x, y), loss=LOSS)
    scores = tracin.influence(x[:4], y[:4])
    indices, values = tracin.proponents(x[:4], y[:4], k=5)
    np.testing.assert_array_equal(indices, np.argsort(-scores, axis=1, kind="stable")[:, :5])
    np.testing.assert_array_equal(values, np.take_along_axis(scores, indices, axis=1))
    indices, values = tracin.opponents(x[:4], y[:4], k=3)
    np.testing.assert_array_equal(indices, np.argsort(scores, axis=1, kind="stable")[:, :3])
    assert np.all(np.diff(values, axis=1) >= 0)


def test_datasets_batched_or_not_equal_arrays_and_the_model_is_untouched():
    model = two_layer_model()
    before = [w.copy() for w in model.get_weights()]
    x, y = data(18)
    reference = kx.influence.TracIn(model, (x, y), loss=LOSS, checkpoints=snapshots(model, 2))
    expected = reference.influence(x[:3], y[:3])
    for dataset in (
        tf.data.Dataset.from_tensor_slices((x, y)),
        tf.data.Dataset.from_tensor_slices((x, y)).batch(7),
    ):
        tracin = kx.influence.TracIn(model, dataset, loss=LOSS, checkpoints=snapshots(model, 2))
        np.testing.assert_allclose(tracin.influence(x[:3], y[:3]), expected, rtol=1e-6)
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)


def test_the_compiled_loss_is_the_default():
    model = two_layer_model()
    x, y = data(10)
    model.compile(loss=LOSS)
    np.testing.assert_array_equal(
        kx.influence.TracIn(model, (x, y)).influence(x[:2], y[:2]),
        kx.influence.TracIn(model, (x, y), loss=LOSS).influence(x[:2], y[:2]),
    )


def test_bad_input_is_named():
    model = two_layer_model()
    x, y = data(10)
    with pytest.raises(ValueError, match=r"TracIn needs the training loss. Received: loss=None"):
        kx.influence.TracIn(model, (x, y))
    with pytest.raises(ValueError, match=r"TracIn: the training set is empty. Received: 0"):
        kx.influence.TracIn(model, (x[:0], y[:0]), loss=LOSS)
    with pytest.raises(ValueError, match=r"TracIn: x and y of the training set need one row"):
        kx.influence.TracIn(model, (x, y[:4]), loss=LOSS)
    other = linear_model()
    with pytest.raises(
        ValueError,
        match=r"TracIn: checkpoint 0 does not fit model '\w+': it holds 2 arrays shaped "
        r"\[\(4, 3\), \(3,\)\], the model 4 weights",
    ):
        kx.influence.TracIn(model, (x, y), loss=LOSS, checkpoints=[other.get_weights()])
    with pytest.raises(
        ValueError, match=r"TracIn: checkpoints is empty. Received: checkpoints=\[\]"
    ):
        kx.influence.TracIn(model, (x, y), loss=LOSS, checkpoints=[])
    with pytest.raises(ValueError, match=r"TracIn: learning_rates needs one rate per checkpoint"):
        kx.influence.TracIn(model, (x, y), loss=LOSS, learning_rates=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"TracIn: 'nope' is not a layer of model"):
        kx.influence.TracIn(model, (x, y), loss=LOSS, layers=["nope"])
    with pytest.raises(ValueError, match=r"TracIn: projection_dim must be a positive int"):
        kx.influence.TracIn(model, (x, y), loss=LOSS, projection_dim=0)
    tracin = kx.influence.TracIn(model, (x, y), loss=LOSS)
    with pytest.raises(ValueError, match=r"TracIn: y needs one label per test example"):
        tracin.influence(x[:3], y[:2])
    with pytest.raises(ValueError, match=r"TracIn: k is larger than the training set \(10"):
        tracin.proponents(x[:3], y[:3], k=11)
    one_hot = kx.influence.TracIn(model, (x, np.eye(3)[y][:, :, None]), loss=LOSS)
    with pytest.raises(ValueError, match=r"The loss could not be computed on the model's outputs"):
        one_hot.self_influence()
    with pytest.raises(TypeError, match=r"TracIn differentiates a Keras model"):
        kx.influence.TracIn(lambda v: v, (x, y), loss=LOSS)
