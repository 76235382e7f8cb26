"""Tiny seeded model factories shared by the tests (no downloads, no training)."""

import keras
import numpy as np

layers = keras.layers


def seeded(seed=0):
    keras.utils.set_random_seed(seed)


def randomize_biases(model, scale=0.1, seed=0):
    """Give every bias a non-zero value so tests exercise the bias terms."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers() if hasattr(model, "_flatten_layers") else model.layers:
        bias = getattr(layer, "bias", None)
        if bias is not None:
            bias.assign(rng.normal(0, scale, bias.shape).astype("float32"))
    return model


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


ALL_GRAPH_MODELS = {
    "sequential": dense_sequential,
    "conv": conv_sequential,
    "relu_forms": functional_relu_forms,
    "nested": nested,
    "shared": shared_layer,
    "raw_ops": raw_ops,
}


def data(shape, seed=0, batch=4):
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")
