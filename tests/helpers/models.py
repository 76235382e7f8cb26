"""Tiny seeded Keras models and their data (no downloads, no training).

:func:`randomize` is the one way tests give biases and BatchNorm statistics
non-trivial values.
"""

from __future__ import annotations

import keras
import numpy as np

layers = keras.layers


# =====================================================================================
# Seeds, weights, data
# =====================================================================================
def seeded(seed=0):
    keras.utils.set_random_seed(seed)


def randomize(model, seed=0, scale=0.3):
    """Non-trivial biases and BatchNorm statistics, so that every term of a formula runs.

    Biases, BatchNorm ``beta`` and ``moving_mean`` ~ N(0, scale); BatchNorm ``gamma``
    and ``moving_variance`` ~ U(0.5, 2). Layers are visited in ``_flatten_layers``
    order with one generator, so a model and its rebuild get the same values.
    """
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        for name in ("bias", "beta", "moving_mean"):
            variable = getattr(layer, name, None)
            if isinstance(variable, keras.Variable):
                variable.assign(rng.normal(0, scale, variable.shape).astype("float32"))
        for name in ("gamma", "moving_variance"):
            variable = getattr(layer, name, None)
            if isinstance(variable, keras.Variable):
                variable.assign(rng.uniform(0.5, 2.0, variable.shape).astype("float32"))
    return model


def randomize_biases(model, seed=0):
    """:func:`randomize` with the small bias scale (0.1) of the gradient-family fixtures."""
    return randomize(model, seed, scale=0.1)


def bias_free(model):
    """Zero every bias and BatchNorm shift (beta, moving mean): a conserving network."""
    for layer in model._flatten_layers():
        for name in ("bias", "beta", "moving_mean"):
            variable = getattr(layer, name, None)
            if isinstance(variable, keras.Variable):
                variable.assign(np.zeros(variable.shape, "float32"))
    return model


def data(shape, seed=0, batch=4):
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


# =====================================================================================
# Shared model builders
# =====================================================================================
def dense_sequential(softmax=True, seed=0):
    seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(8, activation="relu"),
            layers.Dense(5, activation="relu"),
            layers.Dense(3, activation="softmax" if softmax else None),
        ],
        name="dense_sequential",
    )
    return randomize_biases(model)


def token_classifier(seed=0, vocabulary=12, dimensions=3, classes=3):
    """int tokens (T,) -> Embedding -> GlobalAveragePooling1D -> Dense: a linear text model.

    The logit of class c is ``mean_t E[token_t] . W[:, c] + b_c``, so Input x Gradient
    of token t (summed over the embedding axis) is ``E[token_t] . W[:, c] / T``.
    """
    seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            layers.Embedding(vocabulary, dimensions, name="embedding"),
            layers.GlobalAveragePooling1D(),
            layers.Dense(classes, name="head"),
        ],
        name="token_classifier",
    )
    return randomize_biases(model)


def conv_sequential(seed=0):
    seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(),
            layers.Conv2D(6, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(4),
        ],
        name="conv_sequential",
    )
    return randomize_biases(model)


def functional_relu_forms(seed=0):
    """Every ReLU form: fused, Activation("relu"), ReLU() and keras.ops.relu."""
    seeded(seed)
    inputs = keras.Input((6,))
    h = layers.Dense(8, activation="relu")(inputs)
    h = layers.Dense(8)(h)
    h = layers.Activation("relu")(h)
    h = layers.Dense(8)(h)
    h = layers.ReLU()(h)
    h = layers.Dense(8)(h)
    h = keras.ops.relu(h)
    outputs = layers.Dense(3)(h)
    return randomize_biases(keras.Model(inputs, outputs, name="relu_forms"))


def nested(seed=0):
    """A backbone model used as a layer, with ReLUs inside."""
    seeded(seed)
    backbone = keras.Sequential(
        [keras.Input((6,)), layers.Dense(8, activation="relu"), layers.Dense(8)],
        name="backbone",
    )
    inputs = keras.Input((6,))
    h = backbone(inputs)
    h = layers.ReLU()(h)
    outputs = layers.Dense(3, activation="softmax")(h)
    return randomize_biases(keras.Model(inputs, outputs, name="nested"))


def shared_layer(seed=0):
    """One Dense layer applied to two branches."""
    seeded(seed)
    inputs = keras.Input((6,))
    shared = layers.Dense(6, activation="relu", name="shared")
    a = shared(inputs)
    b = shared(a)
    outputs = layers.Dense(3)(layers.Concatenate()([a, b]))
    return randomize_biases(keras.Model(inputs, outputs, name="shared_layer"))


def raw_ops(seed=0):
    """Raw keras.ops in the graph: x + y and keras.ops.relu."""
    seeded(seed)
    inputs = keras.Input((6,))
    a = layers.Dense(8)(inputs)
    b = layers.Dense(8)(inputs)
    h = keras.ops.relu(a + b)
    outputs = layers.Dense(3)(h)
    return randomize_biases(keras.Model(inputs, outputs, name="raw_ops"))


SIGMOID_FORMS = ("fused sigmoid", "Activation sigmoid", "raw sigmoid")


def binary_classifier(form, seed=0):
    """A one-logit binary classifier and its twin without the sigmoid, same weights.

    ``form`` is one of :data:`SIGMOID_FORMS`: ``Dense(1, activation="sigmoid")``,
    ``Dense(1)`` then ``Activation("sigmoid")``, or ``Dense(1)`` then
    ``keras.ops.sigmoid``. Returns ``(model, logits_model)``; the logits model
    ends in a plain ``Dense(1)`` holding the same weights.
    """
    seeded(seed)
    inputs = keras.Input((6,))
    hidden = layers.Dense(5, activation="relu")(inputs)
    logit_layer = layers.Dense(1, name="logit")
    logits = logit_layer(hidden)
    logits_model = randomize_biases(keras.Model(inputs, logits, name="binary_logits"))
    if form == "fused sigmoid":
        fused = layers.Dense(1, activation="sigmoid", name="fused")
        probability = fused(hidden)
        fused.set_weights(logit_layer.get_weights())
    elif form == "Activation sigmoid":
        probability = layers.Activation("sigmoid")(logits)
    elif form == "raw sigmoid":
        probability = keras.ops.sigmoid(logits)
    else:
        raise ValueError(f"form must be one of {SIGMOID_FORMS}. Received: form={form!r}.")
    return keras.Model(inputs, probability, name="binary"), logits_model


def multi_input(seed=0):
    """Two inputs, two outputs."""
    seeded(seed)
    first = keras.Input((6,), name="first")
    second = keras.Input((4,), name="second")
    h = layers.Concatenate()(
        [layers.Dense(5, activation="relu")(first), layers.Dense(5, activation="relu")(second)]
    )
    out_a = layers.Dense(3, name="out_a")(h)
    out_b = layers.Dense(2, name="out_b")(h)
    return randomize_biases(keras.Model([first, second], [out_a, out_b], name="multi_input"))


class Subclassed(keras.Model):
    """Dense(8, relu) -> Dense(3) in a ``call`` method: no layer graph."""

    def __init__(self):
        super().__init__(name="subclassed")
        self.hidden = layers.Dense(8, activation="relu")
        self.head = layers.Dense(3)

    def call(self, x):
        return self.head(self.hidden(x))


def subclassed(seed=0):
    seeded(seed)
    model = Subclassed()
    model(np.zeros((1, 6), "float32"))
    return model


class SubclassedCNN(keras.Model):
    """Conv2D(relu) -> Flatten -> Dense(3) in a ``call`` method, on (6, 6, 2) images."""

    def __init__(self):
        super().__init__(name="subclassed_cnn")
        self.conv = layers.Conv2D(3, 3, activation="relu")
        self.flatten = layers.Flatten()
        self.head = layers.Dense(3)

    def call(self, x):
        return self.head(self.flatten(self.conv(x)))


def subclassed_cnn_and_twin(seed=0):
    """A subclassed CNN and a Functional model with the same layers and the same weights."""
    seeded(seed)
    model = SubclassedCNN()
    model(np.zeros((1, 6, 6, 2), "float32"))
    randomize_biases(model)
    inputs = keras.Input((6, 6, 2))
    h = layers.Conv2D(3, 3, activation="relu")(inputs)
    twin = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(h)), name="functional_twin")
    twin.set_weights(model.get_weights())
    return model, twin


ALL_GRAPH_MODELS = {
    "sequential": dense_sequential,
    "conv": conv_sequential,
    "relu_forms": functional_relu_forms,
    "nested": nested,
    "shared": shared_layer,
    "raw_ops": raw_ops,
}


def residual_model(seed=0):
    """Conv, residual Add with Conv->BN, max/avg/global pooling, Concatenate, Dense."""
    seeded(seed)
    inputs = keras.Input((8, 8, 2))
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    branch = layers.Conv2D(4, 3, padding="same", name="branch_conv")(h)
    branch = layers.BatchNormalization(name="branch_bn")(branch)
    branch = layers.ReLU()(branch)
    h = layers.Add(name="add")([h, branch])
    h = layers.ReLU()(h)
    a = layers.MaxPooling2D(name="max_pool")(h)
    b = layers.AveragePooling2D(2, name="avg_pool")(h)
    h = layers.Concatenate(name="concat")([a, b])
    h = layers.Conv2D(6, 3, activation="relu", name="conv3")(h)
    g1 = layers.GlobalAveragePooling2D()(h)
    g2 = layers.GlobalMaxPooling2D()(h)
    h = layers.Concatenate()([g1, g2])
    h = layers.Dense(8, activation="relu", name="hidden")(h)
    outputs = layers.Dense(3, name="logits")(h)
    return randomize(keras.Model(inputs, outputs, name="residual"), seed)


def lrp_net(seed=0):
    """The network of the relevance value tests (see :func:`lrp_net_reference`).

    ``conv1`` -> ``bn_fold`` (folded into conv1) -> ``max_pool`` -> ``relu1``; two
    branches: ``conv2`` (fused ReLU) -> ``bn_linear`` (after an activation: a linear
    layer under the rule), and ``conv3`` (1x1); ``add`` -> ``avg_pool`` -> ``flatten``
    -> ``dense1`` (ReLU) -> ``logits``. Max pooling reads the signed folded conv output,
    so its windows have a unique maximum (no ties after a ReLU).
    """
    seeded(seed)
    inputs = keras.Input((8, 8, 2))
    h = layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    h = layers.BatchNormalization(name="bn_fold")(h)
    h = layers.MaxPooling2D(2, name="max_pool")(h)
    pooled = layers.ReLU(name="relu1")(h)
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(pooled)
    a = layers.BatchNormalization(name="bn_linear")(a)
    b = layers.Conv2D(4, 1, name="conv3")(pooled)
    h = layers.Add(name="add")([a, b])
    h = layers.AveragePooling2D(2, name="avg_pool")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(6, activation="relu", name="dense1")(h)
    outputs = layers.Dense(3, name="logits")(h)
    return randomize(keras.Model(inputs, outputs, name="lrp_net"), seed)


LRP_NET_LINEAR_LAYERS = ("conv1", "conv2", "bn_linear", "conv3", "dense1", "logits")


# =====================================================================================
# Ground truth: a task whose deciding pixels are known, and a model that solves it
# =====================================================================================
def colour_square_task(n, size=32, seed=0, side=None):
    """Images whose class is the colour of one small uniform square: ground truth.

    Each ``(size, size, 3)`` image in [0, 1] has a noisy background (every channel
    uniform in [0.25, 0.75]), a uniform grey distractor square (0.5) and the deciding
    square, pure red (class 0) or pure blue (class 1), both of side ``side``
    (default ``max(2, size // 8)``) at random non-overlapping places.

    Returns:
        ``(images, labels, masks)``: float32 ``(n, size, size, 3)``, int ``(n,)`` and
        the deciding square's bool mask ``(n, size, size)``.
    """
    rng = np.random.default_rng(seed)
    side = side or max(2, size // 8)
    images = rng.uniform(0.25, 0.75, (n, size, size, 3)).astype("float32")
    labels = np.arange(n) % 2
    masks = np.zeros((n, size, size), bool)
    for image, label, mask in zip(images, labels, masks):
        while True:
            square, distractor = rng.integers(0, size - side + 1, (2, 2))
            if np.abs(square - distractor).max() >= side:  # no overlap
                break
        image[distractor[0] : distractor[0] + side, distractor[1] : distractor[1] + side] = 0.5
        where = (slice(square[0], square[0] + side), slice(square[1], square[1] + side))
        image[where] = [1.0, 0.0, 0.0] if label == 0 else [0.0, 0.0, 1.0]
        mask[where] = True
    return images, labels, masks


def colour_square_model(size=32):
    """A one-layer CNN with set weights that classifies :func:`colour_square_task`.

    ``Conv2D`` with a ``side x side`` window computes, per window, the mean redness
    ``R - (G + B) / 2`` (channel 0) and blueness ``B - (R + G) / 2`` (channel 1),
    minus 0.5, then ReLU; ``GlobalMaxPooling2D`` gives the two logits. A background
    pixel's redness and blueness lie in [-0.5, 0.5] and the grey square's are 0, so
    every window that misses the deciding square gives exactly 0 on both channels
    (almost surely: equality needs every pixel at an end of its range). The window on
    the deciding square gives 0.5 to its own colour's logit, and the other colour's
    logit is 0 everywhere (a red pixel's blueness is -1). So the class is decided by
    the deciding square's colour alone, and the explained logit is positive only
    while that square is present.
    """
    side = max(2, size // 8)
    colours = np.array([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0]], "float32")  # (out, in)
    kernel = np.broadcast_to(colours.T / side**2, (side, side, 3, 2))
    inputs = keras.Input((size, size, 3))
    conv = layers.Conv2D(2, side, activation="relu")
    model = keras.Model(inputs, layers.GlobalMaxPooling2D()(conv(inputs)), name="colour_square")
    conv.set_weights([np.array(kernel, "float32"), np.full(2, -0.5, "float32")])
    return model


# =====================================================================================
# Models and data shared by the test files of one package (moved from those files)
# =====================================================================================
def rng(seed=0):
    return np.random.default_rng(seed)


def dense_chain(activations=("relu", "tanh"), seed=0):
    """Dense(8, a1) -> Dense(8, a2) -> Dense(3): a chain the numpy reference follows."""
    seeded(seed)
    model = keras.Sequential(
        [keras.Input((6,))]
        + [layers.Dense(8, activation=a) for a in activations]
        + [layers.Dense(3)]
    )
    return randomize(model, seed)


def cam_images(shape=(8, 8, 2), batch=3, seed=0):
    """Inputs of the CAM test models."""
    return data(shape, seed=seed, batch=batch)


# -- perturbation: occlusion, RISE, meaningful perturbation -------------------------------
def patch_model(size=16):
    """Class 1 logit = 4 (mean(patch) - mean(background)); class 0 logit = 0."""
    patch = np.zeros((size, size, 1), "float32")
    patch[2:8, 8:14] = 1
    weights = patch.ravel() / patch.sum() - (1 - patch.ravel()) / (1 - patch).sum()
    inputs = keras.Input((size, size, 1))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)), name="patch")
    dense.set_weights(
        [np.stack([0 * weights, 4 * weights], 1).astype("float32"), np.zeros(2, "float32")]
    )
    images = 0.2 * np.random.default_rng(0).random((2, size, size, 1)) + 0.8 * patch[None]
    return model, images.astype("float32"), patch[..., 0] > 0


def one_axis_model(shape, seed=0):
    """Flatten -> Dense(8, tanh) -> Dense(3) on sequences (L, C) or tabular rows (F,)."""
    seeded(seed)
    model = keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(3),
        ],
        name="one_axis",
    )
    return randomize_biases(model)


# -- LIME, KernelSHAP and their superpixels ----------------------------------------------
LINEAR_TABULAR_WEIGHTS = np.array([3.0, -2.0, 1.0, 0.5], "float32")


def linear_tabular():
    """Dense(2) on 4 features: class 0 is ``LINEAR_TABULAR_WEIGHTS`` x + 0.3; 200 rows of data."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="linear_tabular")
    kernel = np.stack([LINEAR_TABULAR_WEIGHTS, -LINEAR_TABULAR_WEIGHTS], 1)
    model.layers[0].set_weights([kernel, np.array([0.3, 0.0], "float32")])
    data = np.random.default_rng(0).normal(size=(200, 4)).astype("float32")
    return model, data


def grid_labels(size=12, cell=4):
    """A label map of square superpixels of ``cell`` pixels."""
    rows = np.arange(size) // cell
    return (rows[:, None] * (size // cell) + rows[None, :]).astype(np.int32)


def linear_image(size=12):
    """Flatten -> Dense(2) on (size, size, 3) images, and two random images."""
    seeded(0)
    model = keras.Sequential(
        [keras.Input((size, size, 3)), keras.layers.Flatten(), keras.layers.Dense(2)],
        name="linear_image",
    )
    images = np.random.default_rng(1).random((2, size, size, 3)).astype("float32")
    return model, images


def tanh_scorer(seed=0, features=10):
    """A numpy callable f(x) = tanh(x W) with 2 outputs, recording the rows it receives."""
    weights = np.random.default_rng(seed).normal(size=(features, 2))
    rows = []

    def f(z):
        rows.append(np.asarray(z).copy())
        return np.tanh(np.asarray(z) @ weights)

    return f, rows, weights


# -- metrics -----------------------------------------------------------------------------
def linear_dense_model(inputs=6, outputs=3, bias=True, seed=0):
    """One Dense layer (with random biases, or none)."""
    seeded(seed)
    model = keras.Sequential([keras.Input((inputs,)), layers.Dense(outputs, use_bias=bias)])
    return randomize_biases(model) if bias else model


# -- features ----------------------------------------------------------------------------
def linear_unit_model(softmax=False, units=3, seed=0):
    """(6, 6, 3) -> Flatten -> Dense(units): every unit is linear in the image."""
    seeded(seed)
    inputs = keras.Input((6, 6, 3))
    h = layers.Flatten()(inputs)
    dense = layers.Dense(units, name="dense", activation="softmax" if softmax else None)
    model = keras.Model(inputs, dense(h))
    rng = np.random.default_rng(seed)
    kernel = rng.uniform(-1, 1, (108, units)).astype("float32")
    dense.set_weights([kernel, rng.normal(0, 1, units).astype("float32")])
    return model, kernel.reshape(6, 6, 3, units)


LINEAR_UNIT_L2 = 2.0  # L2 weight: optimum 0.5 + w / (2 λ) lies in (0.25, 0.75), inside (0, 1)

_ALIVE = keras.initializers.Constant(0.3)


def feature_cnn(seed=0):
    """(24, 24, 3) -> conv1 -> pool -> conv2 -> ReLU -> GAP -> Dense(4, softmax) "head"."""
    seeded(seed)
    return keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            # positive biases: conv1's ReLUs are alive on the grey initial images
            layers.Conv2D(6, 3, activation="relu", name="conv1", bias_initializer=_ALIVE),
            layers.MaxPooling2D(),
            layers.Conv2D(8, 3, name="conv2", bias_initializer=_ALIVE),
            layers.ReLU(),
            layers.GlobalAveragePooling2D(),
            layers.Dense(4, activation="softmax", name="head"),
        ]
    )


# -- representations ---------------------------------------------------------------------
def two_models():
    """Two models to compare layer by layer: Dense(12, relu) -> Dense(5), and :func:`nested`."""
    seeded(0)
    a = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(12, activation="relu", name="a1"),
            keras.layers.Dense(5, name="a2"),
        ]
    )
    seeded(1)
    b = nested(seed=1)
    return randomize_biases(a), b


# -- influence ---------------------------------------------------------------------------
def hidden_head_classifier(n, features=4, hidden=6, classes=3, seed=0):
    """Dense(hidden, relu, "hidden") -> Dense(classes, "head"), with ``n`` seeded examples.

    Returns:
        ``(model, x, y)``: float32 ``x (n, features)`` and int labels ``y``.
    """
    seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(hidden, activation="relu", name="hidden"),
            keras.layers.Dense(classes, name="head"),
        ]
    )
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    return model, x, rng.integers(0, classes, n)


def shapes_head_cnn(size=16):
    """Conv2D(4) -> global average pooling -> Dense(5, name="head"): logits of 5 shapes."""
    seeded(0)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, name="head"),
        ]
    )
