"""Slow references written straight from each method's formula (numpy, or a plain tape).

They never call keras_explain, so an expected value is never computed by the code
under test. The LRP references are in ``lrp_references``.
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import tensorflow as tf

from .lrp_references import weights64


# =====================================================================================
# Gradients
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


def trapezoid_rule(steps):
    """Points and weights of the trapezoid rule on [0, 1], written out."""
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, steps), weights


# =====================================================================================
# DeepLIFT
# =====================================================================================
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
            kernel, bias = weights64(part)
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
# Perturbation methods
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
# CAM family
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
# Visualization
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
# Bounds of sampled estimators, sub-model activations
# =====================================================================================
# Four standard errors: under the central limit theorem a correct estimator leaves this
# band with probability 6e-5 per check (about 1e-3 over the 21 checks of one test).
K_SIGMA = 4.0


def channel_means(model, layer, images):
    """Per-image mean of every channel of ``layer``, from a plain Keras sub-model."""
    sub = keras.Model(model.inputs[0], model.get_layer(layer).output)
    return sub(images).numpy().mean(axis=(1, 2))
