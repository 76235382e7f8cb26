"""The one shared test helper module: model builders, slow references, private accessors.

Every test module imports this module (``import helpers``); no test module imports
another. Three kinds of things live here, each once:

- **Model builders**: tiny seeded Keras models (no downloads, no training) and
  :func:`randomize`, the one way tests give biases and BatchNorm statistics
  non-trivial values.
- **References**: slow implementations written straight from each method's
  formula (numpy, or a plain ``tf.GradientTape`` for gradients). They never call
  keras_explain, so an expected value is never computed by the code under test.
- **Private accessors**: the only functions that touch keras_explain's private
  modules or attributes (see the last section). A refactor that moves those
  modules re-points these functions and nothing else.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import math
import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import keras_explain as kx

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
# References: gradients
# =====================================================================================
def tape_gradient(function, x, target):
    """d score / dx with a plain GradientTape.

    ``target`` is an int (array) indexing the last axis of ``function(x)`` per sample,
    or a callable ``outputs -> (B,)`` score.
    """
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        output = function(x)
        if callable(target):
            score = target(output)
        else:
            index = np.broadcast_to(np.asarray(target), (x.shape[0],))
            score = tf.gather(output, index, axis=1, batch_dims=1)
    return tape.gradient(score, x).numpy()


def selected(model, x, target):
    """``f(x)[i, target[i]]`` as a numpy vector."""
    outputs = model(x).numpy()
    index = np.broadcast_to(np.asarray(target), (len(outputs),))
    return outputs[np.arange(len(outputs)), index]


def reference_relu(mode):
    """A ReLU with the backward pass of ``mode``: "plain", "guided" or "deconvnet"."""

    @tf.custom_gradient
    def relu(x):
        def grad(upstream):
            if mode == "guided":  # Springenberg et al.: relu(g) * 1[x > 0]
                return tf.maximum(upstream, 0.0) * tf.cast(x > 0, upstream.dtype)
            if mode == "deconvnet":  # Zeiler & Fergus: relu(g)
                return tf.maximum(upstream, 0.0)
            return upstream * tf.cast(x > 0, upstream.dtype)

        return tf.maximum(x, 0.0), grad

    return relu


def reference_ig(function, x, baseline, target, alphas, weights):
    """(x - x') * sum_k w_k grad f(x' + a_k (x - x')), one tape call per path point."""
    total = np.zeros_like(x, dtype=np.float64)
    for alpha, weight in zip(alphas, weights):
        point = (baseline + alpha * (x - baseline)).astype("float32")
        total += weight * tape_gradient(function, point, target)
    return (x - baseline) * total


TOKEN_KINDS = ("conv", "lstm", "gru", "bilstm", "mha")


def token_model(kind, seed=0, vocabulary=50, length=12, dim=8):
    """A text classifier on int32 token ids, and its float tail.

    ``Input((length,), int32) -> Embedding(vocabulary, dim, mask_zero=True) -> body ->
    Dense(3)`` with body one of ``TOKEN_KINDS``: Conv1D + GlobalMaxPooling1D (drops
    the mask), LSTM, GRU, Bidirectional(LSTM), MultiHeadAttention + residual +
    LayerNormalization + GlobalAveragePooling1D. Returns ``(model, tail)`` where
    ``tail(embeddings, mask)`` runs the same layers from the Embedding output with the
    mask passed explicitly (``mask=``; for attention, ``attention_mask=`` = query mask
    x value mask): the float sub-model a reference computes on.
    """
    import warnings

    layers = keras.layers
    keras.utils.set_random_seed(seed)
    embedding = layers.Embedding(vocabulary, dim, mask_zero=True)
    dense = layers.Dense(3)
    if kind == "conv":
        conv = layers.Conv1D(6, 3, padding="same", activation="relu")
        pool = layers.GlobalMaxPooling1D()

        def body(e, mask):
            return pool(conv(e))
    elif kind in ("lstm", "gru", "bilstm"):
        recurrent = {
            "lstm": lambda: layers.LSTM(6),
            "gru": lambda: layers.GRU(6),
            "bilstm": lambda: layers.Bidirectional(layers.LSTM(6)),
        }[kind]()

        def body(e, mask):
            return recurrent(e) if mask is None else recurrent(e, mask=mask)
    else:
        attention = layers.MultiHeadAttention(2, 4)
        norm, pool = layers.LayerNormalization(), layers.GlobalAveragePooling1D()

        def body(e, mask):
            if mask is None:
                return pool(norm(attention(e, e) + e))
            # Keras turns the query and value masks into this attention mask (and, in
            # 3.15, reads query_mask= only from the tensor's Keras mask, so pass it so)
            pairs = tf.logical_and(mask[:, :, None], mask[:, None, :])
            return pool(norm(attention(e, e, attention_mask=pairs) + e))

    tokens = keras.Input((length,), dtype="int32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Conv1D drops the mask, as documented
        model = keras.Model(tokens, dense(body(embedding(tokens), None)))
    randomize(model, seed, scale=0.5)

    def tail(embeddings, mask):
        return dense(body(tf.convert_to_tensor(embeddings), tf.convert_to_tensor(mask)))

    return model, tail


def padded_tokens(batch=4, length=12, vocabulary=50, seed=0):
    """int32 token ids in [1, vocabulary) with padding (0) at the end of most rows."""
    tokens = np.random.default_rng(seed).integers(1, vocabulary, (batch, length)).astype("int32")
    for row, keep in enumerate([7, 3, 10, length][:batch]):
        tokens[row, keep:] = 0
    return tokens


def trapezoid_rule(steps):
    """Points and weights of the trapezoid rule on [0, 1], written out."""
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, steps), weights


# =====================================================================================
# References: LRP (numpy, on explicit matrices, float64)
# =====================================================================================
@dataclasses.dataclass(frozen=True)
class Ref:
    """A rule for the numpy references: its kind and hyper-parameters.

    Independent of ``keras_explain.rules``: :func:`ref_from_repr` builds one from the
    literal repr a test expects, so the reference uses the parameters the test wrote.
    """

    kind: str  # "z", "epsilon", "alpha_beta", "z_plus_fast", "gamma", "zbox", "w_square", "flat"
    epsilon: float = 1e-7
    alpha: float = 1.0
    beta: float = 0.0
    bias: bool = True
    gamma: float = 0.25
    low: Any = 0.0
    high: Any = 1.0


_REF_CONSTRUCTORS = {
    "Z": lambda: Ref("z", epsilon=0.0),
    "Epsilon": lambda epsilon=1e-7: Ref("epsilon", epsilon=epsilon),
    "AlphaBeta": lambda alpha, beta, bias=True, epsilon=1e-7: Ref(
        "alpha_beta", epsilon=epsilon, alpha=alpha, beta=beta, bias=bias
    ),
    "ZPlus": lambda epsilon=1e-7: Ref("alpha_beta", epsilon=epsilon, bias=False),
    "ZPlusFast": lambda epsilon=1e-7: Ref("z_plus_fast", epsilon=epsilon),
    "Gamma": lambda gamma=0.25, epsilon=1e-7: Ref("gamma", epsilon=epsilon, gamma=gamma),
    "ZBox": lambda low=0.0, high=1.0, epsilon=1e-7: Ref(
        "zbox", epsilon=epsilon, low=low, high=high
    ),
    "WSquare": lambda epsilon=1e-7: Ref("w_square", epsilon=epsilon),
    "Flat": lambda epsilon=1e-7: Ref("flat", epsilon=epsilon),
}


def ref_from_repr(text: str) -> Ref:
    """The reference rule of an expected repr such as ``"AlphaBeta(alpha=2, beta=1, ...)"``."""
    name, arguments = re.fullmatch(r"(\w+)\((.*)\)", text).groups()
    params = {}
    for item in filter(None, (part.strip() for part in arguments.split(","))):
        key, value = item.split("=")
        params[key] = ast.literal_eval(value)
    return _REF_CONSTRUCTORS[name](**params)


def stab(z, eps):
    """``z + eps * sign(z)`` with ``sign(0) = +1``."""
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def safe_div(a, b, eps):
    """``a / stab(b)``; with ``eps == 0`` exact zeros of ``b`` give 0."""
    if eps == 0:
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))
    return a / stab(b, eps)


def redistribute(numerators, z, relevance, eps):
    """R_i = sum_j numerators_ij / stab(z_j) * R_j, numerators (B, I, J)."""
    return np.einsum("bij,bj->bi", numerators, safe_div(relevance, z, eps))


def rule_reference(rule: Ref, x, matrix, bias, relevance, connected):
    """One rule's formula (SPEC 2) on x (B, I), matrix (I, J), bias (J,), relevance (B, J).

    ``connected`` (I, J) marks the weights that exist (a convolution's receptive
    fields), for the Flat rule. ZBox bounds broadcast to x.
    """
    x, w, b, r = (np.asarray(a, np.float64) for a in (x, matrix, bias, relevance))
    contributions = x[:, :, None] * w[None]
    pos, neg = np.maximum(w, 0), np.minimum(w, 0)
    xp, xn = np.maximum(x, 0)[:, :, None], np.minimum(x, 0)[:, :, None]
    kind, eps = rule.kind, rule.epsilon
    if kind in ("z", "epsilon"):
        return redistribute(contributions, contributions.sum(1) + b, r, eps)
    if kind == "alpha_beta":  # the bias is an input neuron: b+ in R+, b- in R-
        bp, bn = (np.maximum(b, 0), np.minimum(b, 0)) if rule.bias else (0.0, 0.0)
        act = xp * pos + xn * neg
        inh = xp * neg + xn * pos
        r_pos = redistribute(act, act.sum(1) + bp, r, eps)
        r_neg = redistribute(inh, inh.sum(1) + bn, r, eps)
        return rule.alpha * r_pos - rule.beta * r_neg
    if kind == "z_plus_fast":
        num = x[:, :, None] * pos
        return redistribute(num, num.sum(1), r, eps)
    if kind == "gamma":
        num = x[:, :, None] * (w + rule.gamma * pos)
        den = num.sum(1) + b + rule.gamma * np.maximum(b, 0)
        return redistribute(num, den, r, eps)
    if kind == "zbox":
        low = np.broadcast_to(np.asarray(rule.low, np.float64), x.shape)[:, :, None]
        high = np.broadcast_to(np.asarray(rule.high, np.float64), x.shape)[:, :, None]
        num = contributions - low * pos[None] - high * neg[None]
        return redistribute(num, num.sum(1), r, eps)
    if kind == "w_square":
        num = np.broadcast_to(w**2, contributions.shape)
        return redistribute(num, num.sum(1), r, eps)
    if kind == "flat":
        num = np.broadcast_to(connected.astype(np.float64), contributions.shape)
        return redistribute(num, num.sum(1), r, eps)
    raise AssertionError(rule)


def conv_matrix(kernel, bias, in_shape, padding):
    """Unroll a stride-1 Conv2D into (matrix, bias, connected) with explicit loops.

    Inputs and outputs are flattened channels-last, ``(h * W + w) * C + c``.
    """
    height, width, channels = in_shape
    kh, kw, _, filters = kernel.shape
    if padding == "same":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        out_h, out_w = height, width
    else:
        top = left = 0
        out_h, out_w = height - kh + 1, width - kw + 1
    matrix = np.zeros((height * width * channels, out_h * out_w * filters))
    connected = np.zeros_like(matrix, dtype=bool)
    for oh in range(out_h):
        for ow in range(out_w):
            for f in range(filters):
                j = (oh * out_w + ow) * filters + f
                for dh in range(kh):
                    for dw in range(kw):
                        ih, iw = oh + dh - top, ow + dw - left
                        if not (0 <= ih < height and 0 <= iw < width):
                            continue
                        for c in range(channels):
                            i = (ih * width + iw) * channels + c
                            matrix[i, j] = kernel[dh, dw, c, f]
                            connected[i, j] = True
    return matrix, np.tile(bias, out_h * out_w), connected


def jacobian_epsilon_reference(layer_model, x, relevance, eps):
    """LRP-ε from any linear map's Jacobian: ``R_i = sum_j x_i J_ji / stab(z_j) R_j``.

    ``z = J x + f(0)``: the Jacobian comes from a plain tape, the bias from ``f(0)``.
    """
    flat_x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(flat_x)
        z = layer_model(flat_x)
    jac = tape.batch_jacobian(z, flat_x).numpy().reshape(x.shape[0], z.shape[1:].num_elements(), -1)
    zeros = layer_model(np.zeros_like(x)).numpy().reshape(x.shape[0], -1)
    contributions = x.reshape(x.shape[0], 1, -1) * jac  # (B, J, I)
    z = contributions.sum(2) + zeros
    return np.einsum(
        "bji,bj->bi", contributions, safe_div(relevance.reshape(x.shape[0], -1), z, eps)
    )


def _pool_windows(height, width, channels, size):
    """(input indices, output index) of non-overlapping size x size windows, channels-last."""
    out_w = width // size
    for oh in range(height // size):
        for ow in range(out_w):
            for c in range(channels):
                inputs = [
                    ((oh * size + dh) * width + ow * size + dw) * channels + c
                    for dh in range(size)
                    for dw in range(size)
                ]
                yield inputs, (oh * out_w + ow) * channels + c


def average_pool_matrix(height, width, channels, size):
    """The (I, J) matrix of non-overlapping average pooling."""
    out = (height // size) * (width // size) * channels
    matrix = np.zeros((height * width * channels, out))
    for inputs, j in _pool_windows(height, width, channels, size):
        matrix[inputs, j] = 1.0 / size**2
    return matrix


def max_pool_reference(a, height, width, channels, size):
    """``(pooled, routing)``: routing (B, I, J) is 1 at each window's maximum.

    Raises if a window has no unique maximum (the gradient's choice would then be an
    implementation detail): fixtures must avoid ties.
    """
    out = (height // size) * (width // size) * channels
    routing = np.zeros((len(a), a.shape[1], out))
    for inputs, j in _pool_windows(height, width, channels, size):
        values = a[:, inputs]
        ordered = np.sort(values, axis=1)
        assert np.all(ordered[:, -1] > ordered[:, -2]), "max pooling tie: use other data"
        routing[np.arange(len(a)), np.asarray(inputs)[values.argmax(1)], j] = 1.0
    return np.einsum("bi,bij->bj", a, routing), routing


def _weights64(layer):
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def batch_norm_scale_shift(layer):
    """Inference-mode BatchNormalization as ``x * k + s``: ``k = γ/√(σ²+ε)``, ``s = β − μk``."""
    gamma, beta, mean, variance = _weights64(layer)
    scale = gamma / np.sqrt(variance + layer.epsilon)
    return scale, beta - mean * scale


def lrp_net_reference(model, x, target, rules, proportional_epsilon=1e-7):
    """LRP on :func:`lrp_net`, layer by layer in float64, from the paper's formulas.

    Args:
        model: A model built by :func:`lrp_net` (its weights are read).
        x: ``(B, 8, 8, 2)`` inputs.
        target: ``(B,)`` explained logit per sample; relevance starts as
            ``one_hot(t) * logit_t``.
        rules: ``{layer name: Ref}`` for every name in :data:`LRP_NET_LINEAR_LAYERS`.
        proportional_epsilon: Stabilizer of ``add`` and ``avg_pool`` (z-rule).

    Returns:
        ``(relevance shaped like x, logits)``.
    """
    batch = len(x)
    k1, c1 = _weights64(model.get_layer("conv1"))
    scale, shift = batch_norm_scale_shift(model.get_layer("bn_fold"))
    # BatchNorm right after conv1 is folded: W' = W k, b' = b k + s
    w1, b1, n1 = conv_matrix(k1 * scale, c1 * scale + shift, (8, 8, 2), "same")
    k2, c2 = _weights64(model.get_layer("conv2"))
    w2, b2, n2 = conv_matrix(k2, c2, (4, 4, 4), "same")
    scale2, shift2 = batch_norm_scale_shift(model.get_layer("bn_linear"))
    # BatchNorm after an activation: the diagonal linear map x k + s under the rule
    wbn, bbn, nbn = np.diag(np.tile(scale2, 16)), np.tile(shift2, 16), np.eye(64, dtype=bool)
    k3, c3 = _weights64(model.get_layer("conv3"))
    w3, b3, n3 = conv_matrix(k3, c3, (4, 4, 4), "same")
    wd1, bd1 = _weights64(model.get_layer("dense1"))
    wd2, bd2 = _weights64(model.get_layer("logits"))
    average = average_pool_matrix(4, 4, 4, 2)

    a0 = np.asarray(x, np.float64).reshape(batch, -1)
    z1 = a0 @ w1 + b1
    pooled, routing = max_pool_reference(z1, 8, 8, 4, 2)
    a2 = np.maximum(pooled, 0)
    a3 = np.maximum(a2 @ w2 + b2, 0)
    a4 = a3 @ wbn + bbn
    a5 = a2 @ w3 + b3
    a6 = a4 + a5
    a7 = a6 @ average  # flatten of (2, 2, 4) channels-last is this order
    a8 = np.maximum(a7 @ wd1 + bd1, 0)
    logits = a8 @ wd2 + bd2

    relevance = np.zeros_like(logits)
    rows = np.arange(batch)
    relevance[rows, target] = logits[rows, target]
    ones = np.ones_like
    r8 = rule_reference(rules["logits"], a8, wd2, bd2, relevance, ones(wd2, bool))
    r7 = rule_reference(rules["dense1"], a7, wd1, bd1, r8, ones(wd1, bool))  # ReLU passes
    r6 = a6 * (safe_div(r7, a7, proportional_epsilon) @ average.T)  # avg pool: z-rule
    share = safe_div(r6, a6, proportional_epsilon)  # add: z-rule
    r4, r5 = a4 * share, a5 * share
    r3 = rule_reference(rules["bn_linear"], a3, wbn, bbn, r4, nbn)
    r2 = rule_reference(rules["conv2"], a2, w2, b2, r3, n2)  # fused ReLU passes
    r2 = r2 + rule_reference(rules["conv3"], a2, w3, b3, r5, n3)
    r1 = np.einsum("bij,bj->bi", routing, r2)  # ReLU passes; max pooling routes
    r0 = rule_reference(rules["conv1"], a0, w1, b1, r1, n1)
    return r0.reshape(x.shape), logits


def dense_chain_lrp_reference(dense_layers, activation, target, rule: Ref):
    """LRP from the output back to ``activation`` through Dense(+ReLU) layers (numpy).

    The last layer is linear (no activation): its output is the explained value.
    """
    values = [np.asarray(activation, np.float64)]
    for layer in dense_layers:
        kernel, bias = _weights64(layer)
        z = values[-1] @ kernel + bias
        values.append(np.maximum(z, 0) if layer is not dense_layers[-1] else z)
    out = values[-1]
    relevance = np.zeros_like(out)
    rows = np.arange(out.shape[0])
    relevance[rows, target] = out[rows, target]
    for layer, a in zip(reversed(dense_layers), reversed(values[:-1])):
        kernel, bias = _weights64(layer)
        relevance = rule_reference(rule, a, kernel, bias, relevance, np.ones_like(kernel, bool))
    return relevance


def deeplift_chain_reference(steps, x, baseline, target):
    """DeepLIFT-Rescale (Shrikumar et al. 2017) of a chain of maps, in float64.

    ``steps`` is a list of ``("dense", layer)`` (an affine map: the multiplier is the
    kernel) and ``("act", f)`` (an element-wise numpy function: the multiplier is
    ``(f(z) − f(z')) / (z − z')``). The reference and the input run through the chain
    side by side; the multipliers of the explained unit are chained back to the input,
    and the attribution is ``(x − x') · m``.
    """
    a = np.asarray(x, np.float64)
    a0 = np.broadcast_to(np.asarray(baseline, np.float64), a.shape)
    backward = []
    for kind, part in steps:
        if kind == "dense":
            kernel, bias = _weights64(part)
            a, a0 = a @ kernel + bias, a0 @ kernel + bias
            backward.append(lambda g, kernel=kernel: g @ kernel.T)
        else:
            delta = a - a0
            assert np.abs(delta).min() > 1e-9, "the reference needs |z - z'| > 0"
            ratio = (part(a) - part(a0)) / delta
            a, a0 = part(a), part(a0)
            backward.append(lambda g, ratio=ratio: g * ratio)
    g = np.zeros_like(a)
    g[np.arange(len(a)), np.broadcast_to(target, (len(a),))] = 1.0
    for step in reversed(backward):
        g = step(g)
    return (np.asarray(x, np.float64) - np.asarray(baseline, np.float64)) * g


# =====================================================================================
# Sequence models (recurrent, attention) and their LRP references
# =====================================================================================
def recurrent_classifier(layer, steps=5, features=4, classes=3, pooled=False, masking=False):
    """``Input((steps, features))`` [-> Masking(0)] -> ``layer`` [-> mean over time] -> Dense.

    Seeded by the caller (``seeded``); ``pooled`` averages a sequence output over time.
    """
    inputs = keras.Input((steps, features))
    hidden = layers.Masking(0.0)(inputs) if masking else inputs
    hidden = layer(hidden)
    if pooled:
        hidden = layers.GlobalAveragePooling1D()(hidden)
    return keras.Model(inputs, layers.Dense(classes)(hidden))


def transformer_block(x, heads=2, key_dim=4, hidden=8, rms=False, causal=False):
    """Post-norm Transformer encoder block: attention, Add, LayerNorm, ReLU MLP, Add, LayerNorm.

    ``rms`` uses ``RMSNormalization`` instead of ``LayerNormalization``.
    """
    norm = layers.RMSNormalization if rms else layers.LayerNormalization
    attention = layers.MultiHeadAttention(heads, key_dim)
    attended = attention(x, x, use_causal_mask=True) if causal else attention(x, x)
    x = norm()(layers.Add()([x, attended]))
    mlp = layers.Dense(x.shape[-1])(layers.Dense(hidden, activation="relu")(x))
    return norm()(layers.Add()([x, mlp]))


def transformer_classifier(
    steps=5, features=8, blocks=2, classes=3, tokens=None, width=None, **block
):
    """A Transformer encoder classifier on floats ``(steps, features)``, or on token ids.

    With ``tokens`` (a vocabulary size) the input is integer ids embedded with
    ``Embedding(tokens, features, mask_zero=True)``, so padding (id 0) is masked.
    ``width`` first projects the features to that many with a Dense layer.
    """
    if tokens:
        inputs = keras.Input((steps,), dtype="int32")
        x = layers.Embedding(tokens, features, mask_zero=True)(inputs)
    else:
        inputs = x = keras.Input((steps, features))
    if width:
        x = layers.Dense(width)(x)
    for _ in range(blocks):
        x = transformer_block(x, **block)
    return keras.Model(inputs, layers.Dense(classes)(layers.GlobalAveragePooling1D()(x)))


def token_recurrent_classifier(layer, steps=6, tokens=20, features=4, classes=3):
    """Token ids -> ``Embedding(mask_zero=True)`` -> ``layer`` -> Dense."""
    inputs = keras.Input((steps,), dtype="int32")
    hidden = layers.Embedding(tokens, features, mask_zero=True)(inputs)
    return keras.Model(inputs, layers.Dense(classes)(layer(hidden)))


def _lrp_linear(x, matrix, bias, relevance, eps):
    """LRP-ε through ``z = x W + b`` for one sample: ``R_i = Σ_j x_i W_ij / stab(z_j) R_j``."""
    z = x @ matrix + (0.0 if bias is None else bias)
    return (x[:, None] * matrix * (relevance / stab(z, eps))[None, :]).sum(axis=1)


def lstm_lrp_reference(layer, dense, x, target, eps, sum_eps=1e-7):
    """LRP-ε of ``LSTM -> Dense`` on one sample, straight from Arras et al. 2017.

    Arras, Montavon, Müller & Samek, "Explaining Recurrent Neural Network Predictions
    in Sentiment Analysis", WASSA 2017 (arXiv:1706.07206), section 3: gates (i, f, o:
    Keras' gate order i, f, c, o) get no relevance; ``c_t = f c_{t-1} + i g`` splits its
    relevance in proportion to the two terms; ``h_t = o tanh(c_t)`` gives all of it to
    ``c_t``; ``g = tanh(W_g x_t + U_g h_{t-1} + b_g)`` takes the ε-rule. Float64.
    """
    kernel, recurrent, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    v, b_out = (np.asarray(w, np.float64) for w in dense.get_weights())
    x = np.asarray(x, np.float64)
    units = recurrent.shape[0]
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h, c = np.zeros(units), np.zeros(units)
    saved = []
    for x_t in x:
        z = x_t @ kernel + h @ recurrent + bias
        i, f, o = sigmoid(z[:units]), sigmoid(z[units : 2 * units]), sigmoid(z[3 * units :])
        g = np.tanh(z[2 * units : 3 * units])
        saved.append((x_t, h, c, i, f, g))
        c = f * c + i * g
        h = o * np.tanh(c)
    logits = h @ v + b_out
    out = np.zeros_like(logits)
    out[target] = logits[target]
    relevance_h = _lrp_linear(h, v, b_out, out, eps)
    relevance_c = np.zeros(units)
    result = np.zeros_like(x)
    for t in reversed(range(len(x))):
        x_t, h_prev, c_prev, i, f, g = saved[t]
        c_t = f * c_prev + i * g
        relevance_c = relevance_c + relevance_h
        relevance_g = i * g / stab(c_t, sum_eps) * relevance_c
        relevance_c = f * c_prev / stab(c_t, sum_eps) * relevance_c
        columns = slice(2 * units, 3 * units)
        joint = np.concatenate([x_t, h_prev])
        matrix = np.concatenate([kernel[:, columns], recurrent[:, columns]])
        relevance_in = _lrp_linear(joint, matrix, bias[columns], relevance_g, eps)
        result[t] = relevance_in[: len(x_t)]
        relevance_h = relevance_in[len(x_t) :]
    return result


def gru_lrp_reference(layer, dense, x, target, eps, sum_eps=1e-7):
    """LRP-ε of ``GRU(reset_after=True) -> Dense`` on one sample, by the same principles.

    Keras' gate order z, r, h. ``h_t = z h_{t-1} + (1 − z) ĥ`` is a sum of two gated
    signals; ``ĥ = tanh(a + r ⊙ b)``, ``a = x W_h + b_x``, ``b = h_{t-1} U_h + b_r``: the
    pre-activation is a sum (split in proportion), ``r ⊙ b`` gives all of it to ``b``,
    and ``a`` and ``b`` take the ε-rule. Float64.
    """
    kernel, recurrent, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    v, b_out = (np.asarray(w, np.float64) for w in dense.get_weights())
    x = np.asarray(x, np.float64)
    units = recurrent.shape[0]
    input_bias, recurrent_bias = bias
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h = np.zeros(units)
    saved = []
    for x_t in x:
        from_x = x_t @ kernel + input_bias
        from_h = h @ recurrent + recurrent_bias
        z = sigmoid(from_x[:units] + from_h[:units])
        r = sigmoid(from_x[units : 2 * units] + from_h[units : 2 * units])
        a, b = from_x[2 * units :], from_h[2 * units :]
        candidate = np.tanh(a + r * b)
        saved.append((x_t, h, z, r, a, b, candidate))
        h = z * h + (1 - z) * candidate
    logits = h @ v + b_out
    out = np.zeros_like(logits)
    out[target] = logits[target]
    relevance_h = _lrp_linear(h, v, b_out, out, eps)
    result = np.zeros_like(x)
    columns = slice(2 * units, None)
    for t in reversed(range(len(x))):
        x_t, h_prev, z, r, a, b, candidate = saved[t]
        h_t = z * h_prev + (1 - z) * candidate
        kept = z * h_prev / stab(h_t, sum_eps) * relevance_h
        relevance_pre = (1 - z) * candidate / stab(h_t, sum_eps) * relevance_h
        pre = a + r * b
        relevance_a = a / stab(pre, sum_eps) * relevance_pre
        relevance_b = r * b / stab(pre, sum_eps) * relevance_pre
        result[t] = _lrp_linear(x_t, kernel[:, columns], input_bias[columns], relevance_a, eps)
        from_b = _lrp_linear(
            h_prev, recurrent[:, columns], recurrent_bias[columns], relevance_b, eps
        )
        relevance_h = kept + from_b
    return result


# =====================================================================================
# References: perturbation methods
# =====================================================================================
def window_starts(length, window, stride):
    """Window starts 0, stride, ..., plus one flush with the end."""
    starts = list(range(0, length - window + 1, stride))
    return starts if starts[-1] == length - window else starts + [length - window]


def occlusion_reference(f, x, window, stride, baseline=0.0):
    """Slow loop straight from the definition; windows span channels.

    Works for 2-D inputs ``(B, features)``, 1-D sequences ``(B, L, C)`` and images
    ``(B, H, W, C)``; ``window``/``stride`` are ints (the same on every spatial axis).
    """
    spatial = [1] if x.ndim == 2 else list(range(1, x.ndim - 1))
    clean = f(x)
    total = np.zeros((len(x), *[x.shape[a] for a in spatial]))
    count = np.zeros([x.shape[a] for a in spatial])
    starts = [window_starts(x.shape[a], window, stride) for a in spatial]
    for corner in itertools.product(*starts):
        where = tuple(slice(s, s + window) for s in corner)
        occluded = x.copy()
        occluded[(slice(None), *where)] = baseline
        change = clean - f(occluded)
        total[(slice(None), *where)] += change.reshape((-1,) + (1,) * len(spatial))
        count[where] += 1
    result = total / count
    return result if x.ndim == 2 else np.repeat(result[..., None], x.shape[-1], axis=-1)


def coalition_values(f, x, baseline, mask, groups):
    """``v[b, S]`` for every coalition S (bit g set: group g kept), all 2**groups of them."""
    subsets = np.array(list(itertools.product([0, 1], repeat=groups)))[:, ::-1]
    batch = len(x)
    rows = []
    for keep in subsets:
        kept = np.isin(mask, np.flatnonzero(keep))
        rows.append(np.where(kept, x, baseline))
    values = f(np.concatenate(rows).astype("float32")).reshape(len(subsets), batch)
    codes = subsets @ (1 << np.arange(groups))
    result = np.zeros((batch, 2**groups))
    result[:, codes] = values.T
    return result


def exact_shapley(f, x, baseline, mask, groups):
    """Shapley values by the subset formula over all coalitions, ``(B, groups)``."""
    values = coalition_values(f, x, baseline, mask, groups)
    result = np.zeros((len(x), groups))
    for g in range(groups):
        others = [h for h in range(groups) if h != g]
        for size in range(groups):
            weight = (
                math.factorial(size) * math.factorial(groups - size - 1) / math.factorial(groups)
            )
            for coalition in itertools.combinations(others, size):
                code = sum(1 << h for h in coalition)
                result[:, g] += weight * (values[:, code | (1 << g)] - values[:, code])
    return result


def permutation_marginals(values, groups):
    """Every order's marginal contributions, ``(groups!, B, groups)`` (by group).

    ``values`` are :func:`coalition_values`; the marginal of group g in order π is
    ``v(predecessors ∪ {g}) − v(predecessors)``.
    """
    orders = list(itertools.permutations(range(groups)))
    result = np.zeros((len(orders), values.shape[0], groups))
    for k, order in enumerate(orders):
        code = 0
        for g in order:
            result[k, :, g] = values[:, code | (1 << g)] - values[:, code]
            code |= 1 << g
    return result, np.array(orders)


def rise_reference(f, x, masks, probability):
    """``sum_i f(x * M_i) M_i / (N p)``, straight from the paper (baseline 0).

    ``masks`` are ``(N, *spatial)``, shared by the batch and spanning channels (a 2-D
    input ``(B, features)`` has no channel axis). Returns ``(B, *spatial)``.
    """
    total = 0.0
    for mask in masks:
        spread = mask[None] if x.ndim == 2 else mask[None, ..., None]
        score = f(x * spread)[(slice(None),) + (None,) * mask.ndim]
        total = total + score * mask
    return total / (len(masks) * probability)


def gaussian_blur_reference(x, sigma):
    """Separable Gaussian blur over axes 1 and 2 with symmetric padding (numpy)."""
    result = np.asarray(x, np.float64)
    for axis in (1, 2):
        length = result.shape[axis]
        radius = min(math.ceil(3 * sigma), length - 1)
        if radius < 1:
            continue
        offsets = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        pad = [(0, 0)] * result.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(result, pad, mode="symmetric")
        blurred = np.zeros_like(result)
        for index, weight in enumerate(kernel):
            blurred += weight * np.take(padded, range(index, index + length), axis=axis)
        result = blurred
    return result


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


def top_inside(attributions, masks):
    """Per image: does the largest attribution lie inside the mask?

    Attributions are summed over channels. Superpixel methods paint one value on many
    pixels, so the maximum is often shared: an image counts as a hit when at least
    half of the pixels that share the maximum are inside the mask (the chance that
    the pixel of largest attribution, ties broken at random, is inside).
    """
    maps = np.asarray(attributions, np.float64).sum(-1).reshape(len(masks), -1)
    top = np.isclose(maps, maps.max(1, keepdims=True), rtol=1e-6, atol=1e-12)
    inside = (top & masks.reshape(len(masks), -1)).sum(1)
    return inside >= 0.5 * top.sum(1)


# =====================================================================================
# References: CAM family
# =====================================================================================
def logits_of(dense, h):
    """A Dense layer's pre-activation output (the softmax is bypassed)."""
    return tf.matmul(h, dense.kernel) + dense.bias


def tape_values(front, back, x, target):
    """Activations A = front(x) and d score_t / d A, with back(A) the logits."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        activations = front(x)
        tape.watch(activations)
        out = back(activations)
        if callable(target):
            score = target(out)
        else:
            flat = tf.reshape(out, (out.shape[0], -1))
            t = (
                np.argmax(flat.numpy(), 1)
                if target is None
                else np.broadcast_to(target, (out.shape[0],))
            )
            score = tf.gather(flat, t, axis=1, batch_dims=1)
    gradient = tape.gradient(score, activations)
    return activations.numpy().astype(np.float64), gradient.numpy().astype(np.float64)


def resize_reference(maps, size):
    """Separable linear interpolation with half-pixel centers (numpy, clamped at the edges)."""
    out = np.asarray(maps, np.float64)
    for axis, new in enumerate(size, start=1):
        old = out.shape[axis]
        positions = (np.arange(new) + 0.5) * old / new - 0.5
        out = np.apply_along_axis(
            lambda v, p=positions, n=old: np.interp(p, np.arange(n), v), axis, out
        )
    return out


def relu(value):
    return np.maximum(value, 0.0)


def grad_cam_reference(activations, gradient):
    weights = gradient.mean(axis=tuple(range(1, gradient.ndim - 1)))
    return relu(np.einsum("b...c,bc->b...", activations, weights))


def grad_cam_pp_reference(activations, gradient):
    """Chattopadhay et al. 2018, exp-score closed form (the exp(y) factor cancels in alpha)."""
    axes = tuple(range(1, gradient.ndim - 1))
    total = activations.sum(axis=axes, keepdims=True)
    numerator = gradient**2
    denominator = 2 * gradient**2 + total * gradient**3
    denominator = np.where(denominator != 0, denominator, 1.0)
    alpha = numerator / denominator
    weights = (alpha * relu(gradient)).sum(axis=axes)
    return relu(np.einsum("b...c,bc->b...", activations, weights))


def layer_cam_reference(activations, gradient):
    return relu((relu(gradient) * activations).sum(axis=-1))


def score_cam_reference(activations, x, scores_of, baseline_scores=None):
    """Wang et al. 2020: channel masks upsampled + min-max normalized, softmax over channels.

    ``baseline_scores`` (one per sample): the paper's increase of confidence,
    ``score(x * H_k) - score(x_b)``, is what the softmax then normalizes.
    """
    batch, channels = activations.shape[0], activations.shape[-1]
    size = x.shape[1:-1]
    result = []
    for b in range(batch):
        scores = []
        for k in range(channels):
            mask = resize_reference(activations[b : b + 1, ..., k], size)[0]
            span = mask.max() - mask.min()
            mask = (mask - mask.min()) / span if span > 0 else np.zeros_like(mask)
            masked = (x[b] * mask[..., None]).astype(np.float32)
            scores.append(scores_of(masked[None], b))
        scores = np.array(scores, np.float64)
        if baseline_scores is not None:
            scores = scores - baseline_scores[b]
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        result.append(relu(np.einsum("...c,c->...", activations[b], weights)))
    return np.stack(result)


# =====================================================================================
# References: visualization
# =====================================================================================
def slow_percentile(values, q):
    """Linear-interpolation percentile written out by hand (numpy's default method)."""
    ordered = sorted(float(v) for v in np.ravel(values))
    rank = q / 100.0 * (len(ordered) - 1)
    low = int(np.floor(rank))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


# =====================================================================================
# Representations: CKA and CCA straight from the papers' formulas
# =====================================================================================
def u_centered(gram):
    """Székely & Rizzo's U-centering, entry by entry from its definition (diagonal 0).

    For kernels the diagonal is zeroed first (Song et al. 2012's K-tilde), so that
    <U(K), U(L)> / (n (n - 3)) is the unbiased HSIC.
    """
    n = len(gram)
    gram = gram - np.diag(np.diag(gram))
    rows, total = gram.sum(axis=1), gram.sum()
    result = np.zeros_like(gram)
    for i in range(n):
        for j in range(n):
            if i != j:
                result[i, j] = (
                    gram[i, j] - rows[i] / (n - 2) - rows[j] / (n - 2) + total / ((n - 1) * (n - 2))
                )
    return result


def cka_reference(x, y, debiased=False):
    """Linear CKA from N x N kernels: HSIC = <HKH, HLH> (biased) or <K_u, L_u> (debiased)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    gram_x, gram_y = x @ x.T, y @ y.T
    if debiased:
        k, m = u_centered(gram_x), u_centered(gram_y)
    else:
        h = np.eye(len(x)) - 1.0 / len(x)
        k, m = h @ gram_x @ h, h @ gram_y @ h
    return np.sum(k * m) / np.sqrt(np.sum(k * k) * np.sum(m * m))


def _inverse_sqrt(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return vectors @ np.diag(values**-0.5) @ vectors.T


def cca_reference(x, y):
    """Classical CCA, SVD of Sxx^-1/2 Sxy Syy^-1/2: (correlations, variates_x, variates_y)."""
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0)
    root_x, root_y = _inverse_sqrt(x.T @ x), _inverse_sqrt(y.T @ y)
    u, s, vt = np.linalg.svd(root_x @ (x.T @ y) @ root_y)
    k = min(x.shape[1], y.shape[1])
    variates_x = x @ root_x @ u[:, :k]
    variates_y = y @ root_y @ vt.T[:, :k]
    return s[:k], variates_x, variates_y


def pwcca_reference(x, y, side):
    """Morcos et al. 2018: alpha_i = sum_j |<h_i / |h_i|, z_j>| over the neurons z of `side`."""
    correlations, variates_x, variates_y = cca_reference(x, y)
    neurons = np.asarray(x if side == "a" else y, np.float64)
    neurons = neurons - neurons.mean(axis=0)
    variates = variates_x if side == "a" else variates_y
    variates = variates / np.linalg.norm(variates, axis=0)
    weights = np.abs(variates.T @ neurons).sum(axis=1)
    return np.sum(weights * correlations) / np.sum(weights)


# =====================================================================================
# Subprocesses (a hard kill, devices that must be configured before TensorFlow starts)
# =====================================================================================
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python_environment():
    paths = [str(REPO_ROOT), str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def run_python(code, timeout=300):
    """Run ``code`` in a fresh Python with this checkout and ``tests/`` first on the path."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=_python_environment(),
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_python(code):
    """Start ``code`` as :func:`run_python` does, without waiting: a ``subprocess.Popen``."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=_python_environment(),
        cwd=str(REPO_ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# =====================================================================================
# A real browser: Debian's chromium, headless, for the report page (and its benchmark)
# =====================================================================================
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright):
    """Debian's chromium through Playwright (no downloaded browser), offline flags."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# =====================================================================================
# Private accessors: the only code that touches keras_explain's private modules and
# attributes. The refactor re-points these functions; tests call nothing private.
# =====================================================================================
def plan_of(model):
    """The analysis-time plan (flat step list) of a graph model."""
    return kx.graph.Plan(model)


def first_step(model):
    """The first engine step of a model (a one-layer model's linear op)."""
    return plan_of(model).steps[0]


def marked_step(step, **flags):
    """A copy of an engine step with flags changed (``first_linear``, ``nonnegative``)."""
    return step.replace(**flags)


def program_output(model, x):
    """The model re-executed with every recurrent and attention layer run by its program.

    Each step with an ``op.inner`` program runs it with its primitive ops unchanged,
    the others run their op; returns the first output as numpy.
    """
    plan = plan_of(model)

    def run(inputs):
        values = dict(zip(plan.input_keys, inputs))
        for step in plan.steps:
            tensors = [values[key] for key in step.inputs]
            if step.op.inner is not None:
                values[step.outputs[0]] = step.op.inner.run(tensors)
            else:
                result = step.op.forward(*tensors)
                if len(step.outputs) == 1:
                    values[step.outputs[0]] = result
                else:
                    values.update(zip(step.outputs, keras.tree.flatten(result)))
        return values[plan.output_keys[0]]

    return tf.function(run)([tf.constant(x)]).numpy()


def program_kinds(model):
    """``{layer name: op kind}`` of the steps that have a program."""
    return {s.op.name: s.op.kind for s in plan_of(model).steps if s.op.inner is not None}


def analyzer_steps(analyzer):
    """The (canonized) engine steps an analyzer runs."""
    return analyzer.plan.steps


def step_output(analyzer, x, step):
    """The value ``step`` computes when the analyzer's (canonized) plan runs on ``x``."""
    values = analyzer.plan.run([tf.constant(x)], targets=step.outputs)
    return values[step.outputs[0]].numpy()


def tracing_counts(analyzer):
    """How often each of an analyzer's compiled functions has been traced, by target kind."""
    return {key: f.experimental_get_tracing_count() for key, f in analyzer._functions.items()}


def noisy_copies(analyzer, x, seed, first_row=0):
    """The noisy copies a SmoothGrad-style analyzer draws for ``x`` at ``seed``: (K, B, ...).

    ``x`` may be a list (multi-input model); then a list of copies is returned.
    """
    seed_tensor = tf.constant([seed, first_row], tf.int64)
    inputs = x if isinstance(x, list) else [x]
    copies = analyzer.noisy_copies([tf.constant(item) for item in inputs], seed_tensor)
    copies = [copy.numpy() for copy in copies]
    return copies if isinstance(x, list) else copies[0]


def register_temporarily(monkeypatch, name, cls):
    """Register ``cls`` under ``name`` in the analyzer registry for one test."""
    from keras_explain.analyzers import registry

    monkeypatch.setitem(registry._REGISTRY, name, cls)


def fail_file_writes_after(monkeypatch, count, error=None):
    """Make explain_dataset's file writes raise ``error`` (a full disk) after ``count`` succeed."""
    import errno

    from keras_explain import _shards

    error = error or OSError(errno.ENOSPC, "No space left on device")
    original = _shards.save_array
    calls = {"count": 0}

    def save_array(path, array):
        calls["count"] += 1
        if calls["count"] > count:
            raise error
        original(path, array)

    monkeypatch.setattr(_shards, "save_array", save_array)


def fail_fsync(monkeypatch, error=None):
    """Make the atomic writer's fsync raise ``error`` (a full disk) once the file is written."""
    import errno

    from keras_explain import _shards

    error = error or OSError(errno.ENOSPC, "No space left on device")

    def fsync(descriptor):
        raise error

    monkeypatch.setattr(_shards.os, "fsync", fsync)
