"""Every layer of one model against every layer of another: minibatch CKA, SVCCA, PWCCA.

:func:`similarity_matrix` uses minibatch CKA (Nguyen et al. 2021, "Do Wide and
Deep Networks Learn the Same Things?", ICLR) so that memory is bounded by the
minibatch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain.analyzers.layer_output import LayerOutputs
from keras_explain.graph import Plan
from keras_explain.representations.measures import pwcca, svcca, unbiased_hsic

MEASURES = ("cka", "svcca", "pwcca")
#: Minibatch size of :func:`similarity_matrix` when ``batch_size`` is None.
DEFAULT_MINIBATCH = 256


def _default_layers(model: keras.Model) -> list:
    """Every layer with an output of its own: nested models' layers, not the models."""
    plan = Plan(model)
    return [
        layer
        for layer in plan.layers
        if isinstance(layer, keras.layers.Layer)
        and not isinstance(layer, keras.Model)
        and plan.has_output(layer)
    ]


def _rows(x: Any, start: int, stop: int) -> Any:
    if isinstance(x, list | tuple):
        return [item[start:stop] for item in x]
    return x[start:stop]


def _sample_count(x: Any, function: str) -> int:
    first = x[0] if isinstance(x, list | tuple) else x
    if not hasattr(first, "shape") or len(first.shape) == 0:
        raise TypeError(
            f"{function}: x must be an array (or a list of arrays for a multi-input model). "
            f"Received: {type(first).__name__}."
        )
    return int(first.shape[0])


def similarity_matrix(
    model_a: keras.Model,
    model_b: keras.Model,
    x: Any,
    *,
    layers_a: Sequence[Any] | None = None,
    layers_b: Sequence[Any] | None = None,
    measure: str = "cka",
    batch_size: int | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Similarity of every layer of ``model_a`` to every layer of ``model_b`` on ``x``.

    ``measure="cka"`` is minibatch linear CKA (Nguyen et al. 2021): ``x`` is
    split into minibatches of ``batch_size`` to ``2 batch_size - 1`` samples
    (``np.array_split`` into ``N // batch_size`` parts, so none is too small for
    the unbiased estimator), and
    ``CKA = mean_k HSIC₁(K_k, L_k) / sqrt(mean_k HSIC₁(K_k, K_k) · mean_k HSIC₁(L_k, L_k))``
    with :func:`unbiased_hsic`. Only one minibatch's activations and
    ``batch_size²`` kernel matrices are held at a time, never an ``N × N``
    matrix; with one minibatch holding all of ``x`` it equals
    ``cka(a, b, debiased=True)``. A pair whose layer has no variance (a dead
    layer) gets NaN, with a warning. ``"svcca"`` and ``"pwcca"`` gather all
    activations (``N × features`` per layer) and call :func:`svcca` /
    :func:`pwcca`.

    Args:
        model_a: A Functional or Sequential model.
        model_b: Another one (or the same) taking the same ``x``.
        x: Inputs, an array or a list of arrays (multi-input models).
        layers_a: Layers of ``model_a`` (names or objects); default every layer
            with an output, nested models' layers included, in execution order.
        layers_b: Likewise for ``model_b``.
        measure: ``"cka"``, ``"svcca"`` or ``"pwcca"``.
        batch_size: Minibatch size (>= 4; default 256, or all of x if smaller).

    Returns:
        ``(matrix, names_a, names_b)``: float64 ``(len(layers_a), len(layers_b))``
        and the layer names.

    Raises:
        ValueError: For an unknown layer or measure, fewer than 4 samples, or a
            ``batch_size`` below 4.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import representations
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="h"),
        ...                           keras.layers.Dense(3, name="out")])
        >>> matrix, names_a, names_b = representations.similarity_matrix(
        ...     model, model, np.random.default_rng(0).normal(size=(64, 4)))
        >>> names_a, np.diag(matrix).round(6).tolist()
        (['h', 'out'], [1.0, 1.0])
    """
    _validate.one_of(measure, "measure", MEASURES)
    batch_size = _validate.optional_positive_int(batch_size, "batch_size", "256 samples")
    if batch_size is not None and batch_size < 4:
        raise ValueError(
            "similarity_matrix: the unbiased HSIC needs minibatches of at least 4 samples. "
            f"Received: batch_size={batch_size}."
        )
    kind = LayerOutputs if measure != "cka" else _CentredGrams
    outputs_a = kind(model_a, layers_a or _default_layers(model_a))
    outputs_b = kind(model_b, layers_b or _default_layers(model_b))
    names_a = [layer.name for layer in outputs_a.layers]
    names_b = [layer.name for layer in outputs_b.layers]
    total = _sample_count(x, "similarity_matrix")
    if total < 4:
        raise ValueError(f"similarity_matrix needs at least 4 samples. Received: {total}.")
    if measure != "cka":
        score = svcca if measure == "svcca" else pwcca
        acts_a, acts_b = outputs_a.compute(x, batch_size), outputs_b.compute(x, batch_size)
        matrix = np.array([[score(a, b) for b in acts_b] for a in acts_a])
        return matrix, names_a, names_b
    parts = max(1, total // (batch_size or DEFAULT_MINIBATCH))
    bounds = np.cumsum([0] + [len(part) for part in np.array_split(np.arange(total), parts)])
    cross = np.zeros((len(names_a), len(names_b)))
    self_a, self_b = np.zeros(len(names_a)), np.zeros(len(names_b))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        batch = _rows(x, start, stop)
        grams_a = [gram.astype(np.float64) for gram in outputs_a.compute(batch)]
        grams_b = [gram.astype(np.float64) for gram in outputs_b.compute(batch)]
        self_a += [unbiased_hsic(gram, gram) for gram in grams_a]
        self_b += [unbiased_hsic(gram, gram) for gram in grams_b]
        cross += [[unbiased_hsic(ga, gb) for gb in grams_b] for ga in grams_a]
    # self-HSICs are squared norms (>= 0): a value <= 0 is a constant layer (rounding)
    dead_a, dead_b = self_a <= 0, self_b <= 0
    for name in [n for n, d in zip(names_a, dead_a) if d] + [
        n for n, d in zip(names_b, dead_b) if d
    ]:
        warnings.warn(
            f"similarity_matrix: layer {name!r} has the same activations for every "
            "sample, so its CKA is undefined; its row/column is NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = cross / np.sqrt(np.outer(np.maximum(self_a, 0), np.maximum(self_b, 0)))
    matrix[dead_a, :] = np.nan
    matrix[:, dead_b] = np.nan
    return matrix, names_a, names_b


class _CentredGrams(LayerOutputs):
    """Per minibatch, each layer's linear kernel matrix of its centred features, float32.

    Computed where the model runs (a ``batch²`` matrix leaves the device, not
    ``batch × features``). Centring the features on the minibatch's mean leaves
    the unbiased HSIC unchanged exactly (it removes terms ``a_i + a_j + c`` from
    the kernel matrix, which U-centring cancels) and keeps the float32 products
    accurate for layers whose activations share a large mean (after a ReLU).
    The HSIC sums are then taken in float64.
    """

    def explain_batch(self, inputs, target, indices, seed, params):
        grams = []
        for values in super().explain_batch(inputs, target, indices, seed, params):
            features = tf.reshape(values, (tf.shape(values)[0], -1))
            features -= tf.reduce_mean(features, 0, keepdims=True)
            grams.append(tf.matmul(features, features, transpose_b=True))
        return grams
