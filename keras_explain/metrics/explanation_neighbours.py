"""Faithfulness among explanation neighbours: consistency and sufficiency (Dasgupta et al. 2022).

Dasgupta, Frost & Moshkovitz 2022 ("Framework for evaluating faithfulness of
local explanations", ICML) call an explanation faithful when the samples it
applies to share the model's prediction. With ``f(x)`` the predicted class and
``e(x)`` the explanation of ``x``, local consistency at ``x`` is
``P[f(x') = f(x) | e(x') = e(x)]`` and local sufficiency
``P[f(x') = f(x) | e(x) applies to x']``. Both are estimated over the batch:
**the value of a sample depends on the rest of the batch** (the other samples
are the ``x'``), so compare methods on the same, large batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from keras_explain import _validate
from keras_explain.metrics.engine import (
    as_batch,
    attributions_like,
    checked,
    feature_input,
    pixel_maps,
)
from keras_explain.metrics.region_removal import predictions
from keras_explain.metrics.registry import MetricContext, register_metric

#: The named discretisations of :func:`consistency`.
DISCRETISATIONS = ("top_k_sign", "top_k", "sign")


def _maps(x: Any, attributions: Any, function: str) -> tuple[Any, np.ndarray]:
    """``(inputs, maps)``: what the model is called on (a dict whole) and ``(B, d)`` maps."""
    inputs, x, attributions = feature_input(x, attributions, function)
    x = as_batch(x, function)
    if len(x) < 2:
        raise ValueError(
            f"{function} compares the samples of a batch with each other: it needs at least "
            f"2 samples. Received: x of shape {x.shape}."
        )
    maps = pixel_maps(attributions_like(attributions, x, function), x)
    return x if inputs is None else inputs, maps.reshape(len(x), -1).astype(np.float64)


def _agreement(same: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per sample, the share of the *other* samples in ``same`` with its predicted class."""
    same = same & ~np.eye(len(same), dtype=bool)
    count = same.sum(axis=1)
    agree = (same & (classes[:, None] == classes[None, :])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, agree / count, np.nan).astype(np.float32)


def _keys(maps: np.ndarray, discretisation: Any, k: int, function: str) -> list:
    if callable(discretisation):
        return [discretisation(row) for row in maps]
    if discretisation == "sign":
        return [np.sign(row).tobytes() for row in maps]
    k = min(checked(function, _validate.positive_int, k, "k"), maps.shape[1])
    top = np.argsort(-np.abs(maps), axis=1, kind="stable")[:, :k]
    keys = []
    for row, chosen in zip(maps, top):
        chosen = np.sort(chosen)
        signs = np.sign(row[chosen]) if discretisation == "top_k_sign" else np.zeros(k)
        keys.append((chosen.tobytes(), signs.tobytes()))
    return keys


def consistency(
    model,
    x,
    attributions,
    target=None,
    *,
    discretisation: str | Callable[[np.ndarray], Any] = "top_k_sign",
    k: int = 5,
) -> np.ndarray:
    """Local consistency (Dasgupta et al. 2022), Quantus' ``Consistency``.

    Explanations are discretised into keys ``e(x)``; for each sample ``x``, the
    value is the share of the other samples ``x'`` of the batch with the same key
    that have the same predicted class (argmax of the explained output):

    ``C(x) = #{x' != x : e(x') = e(x), f(x') = f(x)} / #{x' != x : e(x') = e(x)}``,

    NaN when no other sample shares the key (Quantus gives 0). **The value of a
    sample depends on the rest of the batch.** Higher is better; its batch mean
    is the paper's global consistency.

    The keys (attributions summed over channels, one value per feature):
    ``"top_k_sign"`` (default) the set of the ``k`` features of largest ``|a|``
    (ties by position) with their signs, ``"top_k"`` the same set without
    signs, ``"sign"`` the sign of every feature, or a callable ``(F,) float64
    -> hashable key``. Quantus' default ``top_n_sign`` takes the signs of the
    *first* five features of ``|a|`` (``discretise_func.py:75``, after its
    ``abs=True``), which puts nearly every explanation under one key.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``, B >= 2.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: Unused: the predictions compared are the predicted classes (the
            paper's ``f(x)``); accepted for the metrics' common call.
        discretisation: ``"top_k_sign"``, ``"top_k"``, ``"sign"`` or a callable.
        k: The number of top features of the ``"top_k"`` keys.

    Returns:
        ``(B,)`` float32 shares in [0, 1] (NaN where no other sample shares the key).

    Raises:
        ValueError: For fewer than 2 samples, an unknown discretisation, a
            non-positive ``k`` or attributions of the wrong shape.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
        >>> model.set_weights([np.array([[1.0, -1.0], [0.0, 0.0]], "float32")])
        >>> x = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]], "float32")  # classes 0, 0, 1
        >>> attributions = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # one key
        >>> kx.metrics.consistency(model, x, attributions, k=1)
        array([0.5, 0.5, 0. ], dtype=float32)
    """
    function = "consistency"
    x, maps = _maps(x, attributions, function)
    if not callable(discretisation):
        checked(function, _validate.one_of, discretisation, "discretisation", DISCRETISATIONS)
    keys = _keys(maps, discretisation, k, function)
    index: dict = {}
    codes = np.array([index.setdefault(key, len(index)) for key in keys])
    return _agreement(codes[:, None] == codes[None, :], predictions(model, x))


def sufficiency(
    model,
    x,
    attributions,
    target=None,
    *,
    threshold: float = 0.6,
    distance: str | Callable = "seuclidean",
    absolute: bool = True,
    normalize: bool = True,
) -> np.ndarray:
    """Local sufficiency (Dasgupta et al. 2022), Quantus' ``Sufficiency``.

    An explanation ``e(x)`` *applies* to ``x'`` when the two explanations are
    close: their distance (``scipy.spatial.distance.cdist`` with ``distance``),
    divided by the largest distance between two explanations of the batch, is at
    most ``threshold``. For each sample the value is the share of the other
    samples it applies to that have the same predicted class:

    ``S(x) = #{x' != x : d(x, x') <= t, f(x') = f(x)} / #{x' != x : d(x, x') <= t}``,

    NaN when the explanation applies to no other sample (Quantus gives 0). **The
    value of a sample depends on the rest of the batch**, through the
    neighbours and the largest distance. Higher is better.

    The attributions (summed over channels) are first made absolute (as
    Quantus' ``abs=True``) and, with ``normalize``, divided by each sample's
    largest ``|a|``, so that explanations are compared by their shape, not their
    scale. Quantus divides by the largest ``|a|`` of the whole batch
    (``normalise_by_max`` over every axis, ``base.py:453``), which its division by
    the largest distance cancels: ``normalize=False`` gives its numbers. The
    standardized Euclidean distance (default, as Quantus) divides each feature
    by its variance over the batch; features constant over the batch are left
    out (scipy gives NaN distances there). Quantus passes ``V=None`` to every
    ``cdist`` metric, so only ``"seuclidean"`` runs there (``sufficiency.py:538``).

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``, B >= 2.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: Unused: the predictions compared are the predicted classes;
            accepted for the metrics' common call.
        threshold: Largest relative distance at which an explanation applies,
            in [0, 1].
        distance: A ``scipy.spatial.distance.cdist`` metric name or callable.
        absolute: Compare ``|a|`` (default, as Quantus).
        normalize: Divide each sample's attributions by their largest ``|a|``.

    Returns:
        ``(B,)`` float32 shares in [0, 1] (NaN without neighbours).

    Raises:
        ValueError: For fewer than 2 samples, a threshold outside [0, 1] or
            attributions of the wrong shape.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
        >>> model.set_weights([np.array([[1.0, -1.0], [0.0, 0.0]], "float32")])
        >>> x = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]], "float32")  # classes 0, 0, 1
        >>> attributions = np.array([[1.0, 0.1], [1.0, 0.2], [1.0, 1.0]])
        >>> kx.metrics.sufficiency(model, x, attributions, distance="euclidean", threshold=0.5)
        array([ 1.,  1., nan], dtype=float32)
    """
    from scipy.spatial.distance import cdist

    function = "sufficiency"
    x, maps = _maps(x, attributions, function)
    threshold = checked(function, _validate.non_negative, threshold, "threshold")
    if threshold > 1:
        raise ValueError(
            f"{function}: threshold is a share of the largest distance of the batch, in [0, 1]. "
            f"Received: threshold={threshold!r}."
        )
    if absolute:
        maps = np.abs(maps)
    if normalize:
        largest = np.abs(maps).max(axis=1, keepdims=True)
        maps = maps / np.where(largest == 0, 1.0, largest)
    if distance == "seuclidean":
        variances = maps.var(axis=0, ddof=1)
        kept = variances > 0
        if kept.any():
            maps = maps[:, kept]
            distances = cdist(maps, maps, "seuclidean", V=variances[kept])
        else:  # every explanation is the same
            distances = np.zeros((len(maps), len(maps)))
    else:
        distances = cdist(maps, maps, distance)
    largest = distances.max()
    relative = distances / largest if largest > 0 else distances
    return _agreement(relative <= threshold, predictions(model, x))


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("consistency", better="higher", default=False)
def _consistency(context: MetricContext) -> np.ndarray:
    """Consistency over the batch, keys: the top-5 features and their signs."""
    c = context
    return consistency(c.model, c.x, c.attributions, c.target)


@register_metric("sufficiency", better="higher", default=False)
def _sufficiency(context: MetricContext) -> np.ndarray:
    """Sufficiency over the batch: standardized Euclidean distance, threshold 0.6."""
    c = context
    return sufficiency(c.model, c.x, c.attributions, c.target)
