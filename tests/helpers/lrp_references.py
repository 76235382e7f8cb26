"""References of LRP: each rule's formula, and LRP layer by layer on explicit matrices.

numpy, float64; they never call keras_explain, so an expected value is never
computed by the code under test. The recurrent references follow Arras et al. 2017.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any

import keras
import numpy as np
import tensorflow as tf


# =====================================================================================
# Rules (numpy, on explicit matrices, float64)
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


def weights64(layer):
    """A layer's weights as float64 arrays."""
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def batch_norm_scale_shift(layer):
    """Inference-mode BatchNormalization as ``x * k + s``: ``k = γ/√(σ²+ε)``, ``s = β − μk``."""
    gamma, beta, mean, variance = weights64(layer)
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
    k1, c1 = weights64(model.get_layer("conv1"))
    scale, shift = batch_norm_scale_shift(model.get_layer("bn_fold"))
    # BatchNorm right after conv1 is folded: W' = W k, b' = b k + s
    w1, b1, n1 = conv_matrix(k1 * scale, c1 * scale + shift, (8, 8, 2), "same")
    k2, c2 = weights64(model.get_layer("conv2"))
    w2, b2, n2 = conv_matrix(k2, c2, (4, 4, 4), "same")
    scale2, shift2 = batch_norm_scale_shift(model.get_layer("bn_linear"))
    # BatchNorm after an activation: the diagonal linear map x k + s under the rule
    wbn, bbn, nbn = np.diag(np.tile(scale2, 16)), np.tile(shift2, 16), np.eye(64, dtype=bool)
    k3, c3 = weights64(model.get_layer("conv3"))
    w3, b3, n3 = conv_matrix(k3, c3, (4, 4, 4), "same")
    wd1, bd1 = weights64(model.get_layer("dense1"))
    wd2, bd2 = weights64(model.get_layer("logits"))
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
        kernel, bias = weights64(layer)
        z = values[-1] @ kernel + bias
        values.append(np.maximum(z, 0) if layer is not dense_layers[-1] else z)
    out = values[-1]
    relevance = np.zeros_like(out)
    rows = np.arange(out.shape[0])
    relevance[rows, target] = out[rows, target]
    for layer, a in zip(reversed(dense_layers), reversed(values[:-1])):
        kernel, bias = weights64(layer)
        relevance = rule_reference(rule, a, kernel, bias, relevance, np.ones_like(kernel, bool))
    return relevance


# =====================================================================================
# Recurrent layers: LSTM and GRU (Arras et al. 2017)
# =====================================================================================
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
# AttnLRP as LXT computes it: gradient × input with modified gradients
# =====================================================================================
@tf.custom_gradient
def _divide_gradient(value, factor):
    """The identity whose gradient is divided by ``factor`` (LXT's ``divide_gradient``)."""
    return tf.identity(value), lambda upstream: (upstream / factor, None)


def _identity_rule(function, value):
    """``function(value)`` whose gradient is ``function(value) / value`` (the identity rule)."""

    @tf.custom_gradient
    def run(value):
        output = function(value)
        return output, lambda upstream: upstream * output / (value + 1e-10)

    return run(value)


def _lxt_norm(layer, h):
    """LayerNorm / RMSNorm with the scale's gradient stopped (LXT's normalization patch)."""
    if isinstance(layer, keras.layers.RMSNormalization):
        rms = tf.sqrt(tf.reduce_mean(tf.square(h), -1, keepdims=True) + layer.epsilon)
        return h / tf.stop_gradient(rms) * layer.scale
    mean = tf.reduce_mean(h, -1, keepdims=True)
    std = tf.sqrt(tf.reduce_mean(tf.square(h - mean), -1, keepdims=True) + layer.epsilon)
    centered = (h - mean) / tf.stop_gradient(std)
    return centered * (1.0 if layer.gamma is None else layer.gamma) + (
        0.0 if layer.beta is None else layer.beta
    )


def _lxt_attention(mha, h, causal):
    def project(dense, value):
        out = tf.einsum("btd,dnh->btnh", value, dense.kernel)
        return out if dense.bias is None else out + dense.bias

    q = _divide_gradient(project(mha.query_dense, h), 4.0)  # through q·k, then A·v
    k = _divide_gradient(project(mha.key_dense, h), 4.0)
    v = _divide_gradient(project(mha.value_dense, h), 2.0)  # through A·v
    scores = tf.einsum("bsnh,btnh->bnts", k, q) / float(mha.key_dim) ** 0.5
    if causal:
        length = scores.shape[-1]
        allowed = np.tril(np.ones((length, length), bool))
        scores = tf.where(allowed, scores, -1e9)
    mixed = tf.einsum("bnts,bsnh->btnh", tf.nn.softmax(scores, -1), v)
    out = tf.einsum("btnh,nhd->btd", mixed, mha.output_dense.kernel)
    return out if mha.output_dense.bias is None else out + mha.output_dense.bias


def attn_lrp_transformer_reference(model, x, target, causal=False):
    """AttnLRP of a ``helpers.transformer_classifier`` on float inputs, as LXT computes it.

    LXT ("efficient" AttnLRP, Achtibat et al. 2024; Arras et al. 2025,
    arXiv:2502.15886) writes every rule as gradient × input: the gradients of
    query and key are divided by 4 and of the values by 2 (the uniform rule on the
    two bilinear products), the normalizations' scales are constants, and the
    element-wise non-linearities pass ``f(x) / x`` back (the identity rule); linear
    maps, sums and the softmax keep their own gradient. The relevance of the input
    is ``x * d logit / d x``. A plain ``tf.GradientTape``; no keras_explain.
    """
    mhas = [layer for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.LayerNormalization | keras.layers.RMSNormalization)
    ]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = x
        for block, mha in enumerate(mhas):
            h = _lxt_norm(norms[2 * block], h + _lxt_attention(mha, h, causal))
            first, second = sorted(
                dense[2 * block : 2 * block + 2], key=lambda d: d.activation is None
            )
            hidden = _identity_rule(first.activation, h @ first.kernel + first.bias)
            h = _lxt_norm(norms[2 * block + 1], h + hidden @ second.kernel + second.bias)
        logits = tf.reduce_mean(h, 1) @ dense[-1].kernel + dense[-1].bias
        explained = tf.gather(logits, np.asarray(target), axis=1, batch_dims=1)
    return (x * tape.gradient(explained, x)).numpy(), explained.numpy()


def attn_lrp_llama_reference(causal_lm, x, position, token):
    """AttnLRP of a KerasHub Llama causal LM, as LXT computes it on Hugging Face's Llama.

    LXT's Llama patch, written on KerasHub's layers: the RMS norms' ``rsqrt`` is a
    constant, SiLU passes ``f(x) / x`` back, SwiGLU's product halves its gradient and
    the attention divides the gradients of query and key by 4 and of the values by 2.
    The relevance of a token is ``Σ_d e_d * d logit / d e_d`` at its token
    embedding ``e``. The patches are instance attributes, removed afterwards.
    """
    backbone = causal_lm.backbone
    embedding = backbone.get_layer("token_embedding")
    norms = [
        layer for layer in backbone._flatten_layers() if type(layer).__name__ == "LlamaLayerNorm"
    ]
    decoders = [
        layer
        for layer in backbone._flatten_layers()
        if type(layer).__name__ == "LlamaTransformerDecoder"
    ]
    patched = []

    def patch(owner, name, value):
        patched.append((owner, name, owner.__dict__.get(name, patched)))
        object.__setattr__(owner, name, value)

    def norm_call(norm):
        def call(h):
            h = tf.cast(h, "float32")
            scale = tf.math.rsqrt(tf.reduce_mean(tf.square(h), -1, keepdims=True) + norm.epsilon)
            return h * tf.stop_gradient(scale) * norm.scale

        return call

    for norm in norms:
        patch(norm, "call", norm_call(norm))
    for decoder in decoders:
        activation = decoder.activation
        patch(decoder, "activation", lambda h, f=activation: _identity_rule(f, h))
        dense = decoder._feedforward_output_dense
        patch(dense, "call", lambda h, call=dense.call: call(_divide_gradient(h, 2.0)))
        attention = decoder._self_attention_layer
        compute = attention._compute_attention

        def divided(q, k, v, mask=None, compute=compute):
            q, k = _divide_gradient(q, 4.0), _divide_gradient(k, 4.0)
            return compute(q, k, _divide_gradient(v, 2.0), mask)

        patch(attention, "_compute_attention", divided)
    lookup = embedding.call
    shift = tf.Variable(tf.zeros(x["token_ids"].shape + (backbone.hidden_dim,)))

    def embed(inputs, reverse=False, **kwargs):
        if reverse:
            return lookup(inputs, reverse=True, **kwargs)
        return lookup(inputs, **kwargs) + shift

    patch(embedding, "call", embed)
    try:
        with tf.GradientTape() as tape:
            explained = causal_lm(x)[:, position, token]
        grad = tape.gradient(explained, shift)
        vectors = lookup(tf.constant(x["token_ids"]))
    finally:
        for owner, name, before in reversed(patched):
            if before is patched:  # a method of the class: the instance had none
                object.__delattr__(owner, name)
            else:
                object.__setattr__(owner, name, before)
    return tf.reduce_sum(vectors * grad, -1).numpy(), explained.numpy()
