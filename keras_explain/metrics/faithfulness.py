"""Faithfulness: does the model's score move the way the attributions say it should?

Deletion and insertion (Petsiuk et al. 2018), region perturbation / pixel flipping
(Samek et al. 2017), faithfulness correlation (Bhatt et al. 2020), infidelity (Yeh
et al. 2019) and completeness. Every perturbed copy goes through the model in the
batched passes of the perturbation engine (:mod:`keras_explain.metrics.engine`);
perturbations always span all channels of a pixel.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain.metrics.engine import (
    Curve,
    Job,
    as_batch,
    attributions_like,
    baseline_of,
    checked,
    feature_input,
    keep_copies,
    pixel_maps,
    positive_steps,
    ranks,
    run_job,
    spatial_shape,
)
from keras_explain.metrics.registry import MetricContext, register_metric

ORDERS = ("morf", "lerf")


def _removed_copies(x, params, start, size):
    """Copies where the features of rank < cut are set to the baseline (deletion)."""
    position = params["rank"][None]
    cut = tf.reshape(params["cuts"][start : start + size], [-1] + [1] * (position.shape.rank - 1))
    return keep_copies(x, tf.cast(params["baseline"], x.dtype), position >= cut)


def _inserted_copies(x, params, start, size):
    """Copies where only the features of rank < cut come from x (insertion)."""
    position = params["rank"][None]
    cut = tf.reshape(params["cuts"][start : start + size], [-1] + [1] * (position.shape.rank - 1))
    return keep_copies(x, tf.cast(params["baseline"], x.dtype), position < cut)


def _subset_copies(x, params, start, size):
    """Copies with the random subsets ``removed[start:start + size]`` set to the baseline."""
    keep = tf.logical_not(params["removed"][start : start + size])[:, None]
    return keep_copies(x, tf.cast(params["baseline"], x.dtype), keep)


def _given_copies(x, params, start, size):
    """The precomputed copies ``copies[start:start + size]`` (infidelity's x - I)."""
    return tf.cast(params["copies"][start : start + size], x.dtype)


def _baseline_copy(x, params, start, size):
    """The baseline itself, one copy."""
    return tf.cast(params["baseline"], x.dtype)[None]


def _ordered_curve(model, x, target, rank, cuts, baseline, insert, probabilities):
    """Scores of copies where features of rank < cut are perturbed (or inserted)."""
    job = Job(
        len(cuts),
        _inserted_copies if insert else _removed_copies,
        {"cuts": np.asarray(cuts, np.int32), "rank": rank, "baseline": baseline},
    )
    return run_job(model, x, target, job, probabilities=probabilities)[2]


def _feature_curve(function, model, x, attributions, target, baseline, steps, probabilities):
    inputs, x, attributions = feature_input(x, attributions, function)
    x = as_batch(x, function)
    maps = pixel_maps(attributions_like(attributions, x, function), x)
    features = math.prod(spatial_shape(x))
    steps = positive_steps(steps, features, function)
    cuts = np.arange(steps + 1) * features // steps
    base = baseline_of(baseline, x, function)
    scores = _ordered_curve(
        model,
        x if inputs is None else inputs,
        target,
        ranks(maps),
        cuts,
        base,
        function == "insertion",
        bool(probabilities),
    )
    return Curve(scores, (cuts / features).astype(np.float32))


def deletion(
    model,
    x,
    attributions,
    target=None,
    *,
    baseline: Any = 0.0,
    steps: int = 100,
    probabilities: bool = False,
) -> Curve:
    """Deletion curve (Petsiuk et al. 2018, RISE): remove the most relevant features first.

    Features (all channels of a pixel together) are ranked by their attribution
    summed over channels, highest first (ties in row-major order), and set to
    the baseline in ``steps`` chunks: after step ``k`` the first
    ``floor(k * n / steps)`` of the ``n`` features are removed. A faithful
    explanation makes the score fall fast: a low ``auc`` is good.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets` (``None``: the clean argmax).
        baseline: A number, ``"blur"``, ``"mean"`` or an array shaped like one
            sample or the batch.
        steps: Number of chunks (at most the number of features).
        probabilities: Score the softmax of the explained output instead of the
            raw target score (the logit, softmax stripped as in the analyzers).

    Returns:
        A :class:`Curve`: ``scores (B, steps + 1)`` from ``f(x)`` to
        ``f(baseline)``, and ``auc (B,)``.

    Raises:
        ValueError: For attributions of the wrong shape, ``steps`` larger than
            the number of features, or an unknown baseline.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.ones((4, 1), "float32")])
        >>> x = np.array([[1.0, 2.0, 3.0, 4.0]], "float32")
        >>> kx.metrics.deletion(model, x, x, target=0, steps=4).scores
        array([[10.,  6.,  3.,  1.,  0.]], dtype=float32)
    """
    return _feature_curve(
        "deletion", model, x, attributions, target, baseline, steps, probabilities
    )


def insertion(
    model,
    x,
    attributions,
    target=None,
    *,
    baseline: Any = "blur",
    steps: int = 100,
    probabilities: bool = False,
) -> Curve:
    """Insertion curve (Petsiuk et al. 2018): insert the most relevant features first.

    Starts from the baseline (a blurred copy of x by default) and puts back the
    features of x in the order of :func:`deletion`. A high ``auc`` is good.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets` (``None``: the clean argmax).
        baseline: ``"blur"`` (default: Gaussian blur, σ = 5 pixels), ``"mean"``,
            a number or an array shaped like one sample or the batch.
        steps: Number of chunks (at most the number of features).
        probabilities: Score the softmax of the explained output.

    Returns:
        A :class:`Curve`: ``scores (B, steps + 1)`` from ``f(baseline)`` to ``f(x)``.

    Raises:
        ValueError: As :func:`deletion`.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.ones((4, 1), "float32")])
        >>> x = np.array([[1.0, 2.0, 3.0, 4.0]], "float32")
        >>> kx.metrics.insertion(model, x, x, target=0, baseline=0.0, steps=2).scores
        array([[ 0.,  7., 10.]], dtype=float32)
    """
    return _feature_curve(
        "insertion", model, x, attributions, target, baseline, steps, probabilities
    )


def _region_shape(region: Any, spatial: tuple[int, ...]) -> tuple[int, ...]:
    items = tuple(region) if isinstance(region, list | tuple) else (region,) * len(spatial)
    if len(items) != len(spatial) or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in items
    ):
        raise ValueError(
            "pixel_flipping: region must be a positive int or a tuple of positive ints, one "
            f"per spatial axis of the input {spatial}. Received: region={region!r}."
        )
    return tuple(int(v) for v in items)


def pixel_flipping(
    model,
    x,
    attributions,
    target=None,
    *,
    region: int | tuple[int, ...] = (9, 9),
    steps: int = 100,
    order: str = "morf",
    baseline: Any = 0.0,
) -> Curve:
    """Region perturbation (Samek et al. 2017), iNNvestigate's pixel flipping.

    The features are tiled into non-overlapping regions of ``region`` pixels
    (the last row and column of tiles may be smaller), ranked by their summed
    attribution (``"morf"``: most relevant first; ``"lerf"``: least relevant
    first), and flipped to the baseline one region per step, on all channels
    (iNNvestigate's own implementation flips only the first channel, its issue
    #299). The curve holds ``f_t`` before any flip and after each of the
    ``steps`` flips.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets`.
        region: Region size: an int (every spatial axis) or one int per axis.
        steps: Number of regions flipped (at most the number of regions).
        order: ``"morf"`` or ``"lerf"``.
        baseline: A number, ``"blur"``, ``"mean"`` or an array.

    Returns:
        A :class:`Curve` with ``scores (B, steps + 1)``, ``auc`` and ``aopc``
        (``mean_k f(x) - f(x^(k))``; with ``"morf"``, a high AOPC is good).

    Raises:
        ValueError: For a non-positive region, ``steps`` larger than the number
            of regions, an unknown order or baseline, or attributions of the
            wrong shape.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.ones((4, 1), "float32")])
        >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
        >>> curve = kx.metrics.pixel_flipping(model, x, x, target=0, region=1, steps=3)
        >>> curve.scores, curve.aopc
        (array([[6., 3., 1., 0.]], dtype=float32), array([3.5], dtype=float32))
    """
    function = "pixel_flipping"
    inputs, x, attributions = feature_input(x, attributions, function)
    x = as_batch(x, function)
    order = checked(function, _validate.one_of, order, "order", ORDERS)
    maps = pixel_maps(attributions_like(attributions, x, function), x)
    spatial = spatial_shape(x)
    sizes = _region_shape(region, spatial)
    counts = tuple(-(-length // size) for length, size in zip(spatial, sizes))
    regions = math.prod(counts)
    steps = positive_steps(steps, regions, function, f"regions of {sizes} pixels")
    grids = np.meshgrid(*[np.arange(n) // s for n, s in zip(spatial, sizes)], indexing="ij")
    region_of = np.ravel_multi_index(tuple(grids), counts).ravel()  # per feature
    totals = np.zeros((len(x), regions), np.float64)
    np.add.at(totals, (slice(None), region_of), maps.reshape(len(x), -1))
    region_rank = ranks(totals, descending=order == "morf")
    rank = region_rank[:, region_of].reshape(maps.shape)
    base = baseline_of(baseline, x, function)
    scores = _ordered_curve(
        model,
        x if inputs is None else inputs,
        target,
        rank,
        np.arange(steps + 1),
        base,
        False,
        False,
    )
    return Curve(scores, (np.arange(steps + 1) / steps).astype(np.float32))


def faithfulness_correlation(
    model,
    x,
    attributions,
    target=None,
    *,
    subset: float = 0.2,
    samples: int = 200,
    baseline: Any = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Faithfulness correlation (Bhatt et al. 2020; Xplique's MuFidelity).

    For ``samples`` random subsets ``S`` of ``round(subset * n)`` of the ``n``
    features (all channels of a pixel together; the same subsets for every
    sample, drawn from ``seed``), the Pearson correlation (scipy.stats) between
    ``sum_S a`` and ``f(x) - f(x with S set to the baseline)``.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets`.
        subset: Fraction of the features in each subset, in (0, 1].
        samples: Number of subsets (>= 2).
        baseline: A number, ``"blur"``, ``"mean"`` or an array.
        seed: Seed of the subsets.

    Returns:
        ``(B,)`` float32 correlations in [-1, 1] (NaN where either side is constant).

    Raises:
        ValueError: For a subset outside (0, 1], fewer than 2 samples, an unknown
            baseline or attributions of the wrong shape.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
        >>> x = np.random.default_rng(0).normal(size=(2, 8)).astype("float32")
        >>> weights = model.get_weights()[0][:, 0]
        >>> kx.metrics.faithfulness_correlation(model, x, x * weights, target=0, samples=20)
        array([1., 1.], dtype=float32)
    """
    from scipy import stats

    function = "faithfulness_correlation"
    inputs, x, attributions = feature_input(x, attributions, function)
    x = as_batch(x, function)
    maps = pixel_maps(attributions_like(attributions, x, function), x)
    if not 0 < checked(function, _validate.positive, subset, "subset") <= 1:
        raise ValueError(
            f"{function}: subset is the fraction of features removed, in (0, 1]. Received: "
            f"subset={subset!r}."
        )
    samples = checked(function, _validate.positive_int, samples, "samples")
    if samples < 2:
        raise ValueError(
            f"{function}: a correlation needs samples >= 2 subsets. Received: samples={samples}."
        )
    features = maps[0].size
    size = max(1, round(subset * features))
    draws = np.random.default_rng(seed).random((samples, features))
    removed = np.argsort(np.argsort(draws, axis=1), axis=1) < size  # (samples, n)

    removed_maps = removed.reshape(samples, *maps.shape[1:])
    job = Job(
        samples,
        _subset_copies,
        {"removed": removed_maps, "baseline": baseline_of(baseline, x, function)},
    )
    _, clean, scores = run_job(model, x if inputs is None else inputs, target, job)
    drops = clean[:, None].astype(np.float64) - scores
    sums = maps.reshape(len(x), -1).astype(np.float64) @ removed.T.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return stats.pearsonr(sums, drops, axis=1).statistic.astype(np.float32)


def infidelity(
    model,
    x,
    attributions,
    target=None,
    *,
    perturbation: Any = 0.1,
    samples: int = 10,
    normalize: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Infidelity (Yeh et al. 2019), as Captum's ``infidelity``.

    ``E_I[(sum(a * I) - (f(x) - f(x - I)))^2]`` estimated over ``samples``
    perturbations ``I`` of each sample. With ``normalize``, the attributions are
    first rescaled by the optimal ``beta = E[(a.I) df] / E[(a.I)^2]``, so the
    result does not depend on the attributions' scale.

    Captum's convention, so that the same perturbations give Captum's numbers: a
    callable ``perturbation`` receives the inputs repeated sample-major,
    ``np.repeat(x, samples, axis=0)``, and returns ``I`` of the same shape; the
    model sees ``x - I``. For attributions that already multiply by
    ``x - baseline`` (Integrated Gradients, input times gradient), Captum divides
    the perturbation by ``x - baseline`` (its ``multiply_by_inputs``); do the same
    by passing ``attributions / (x - baseline)``.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets`.
        perturbation: A float σ (``I`` is Gaussian noise N(0, σ²), seeded), or a
            callable as above.
        samples: Perturbations per sample.
        normalize: Rescale the attributions by ``beta`` first (default True).
        seed: Seed of the Gaussian noise.

    Returns:
        ``(B,)`` float32 infidelities (lower is better).

    Raises:
        ValueError: For attributions of the wrong shape, or a perturbation
            callable whose result is not shaped like its input.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        >>> x = np.ones((2, 3), "float32")
        >>> gradient = np.repeat(model.get_weights()[0].T, 2, axis=0)
        >>> kx.metrics.infidelity(model, x, gradient, target=0, normalize=False) < 1e-10
        array([ True,  True])
    """
    function = "infidelity"
    x = as_batch(x, function)
    full = attributions_like(attributions, x, function)
    samples = checked(function, _validate.positive_int, samples, "samples")
    repeated = np.repeat(x, samples, axis=0)
    if callable(perturbation):
        noise = np.asarray(perturbation(repeated), dtype=np.float32)
        if noise.shape != repeated.shape:
            raise ValueError(
                f"{function}: the perturbation callable must return I shaped like its input "
                f"{repeated.shape} (x repeated {samples} times, sample-major). Received: shape "
                f"{noise.shape}."
            )
    else:
        sigma = checked(
            function, _validate.non_negative, perturbation, "perturbation", " (the noise σ)"
        )
        noise = np.random.default_rng(seed).normal(0.0, sigma, repeated.shape).astype(np.float32)
    copies = (repeated - noise).reshape(len(x), samples, *x.shape[1:]).swapaxes(0, 1)

    _, clean, scores = run_job(model, x, target, Job(samples, _given_copies, {"copies": copies}))
    drops = clean[:, None].astype(np.float64) - scores  # (B, samples)
    dots = np.einsum(
        "bsi,bi->bs",
        noise.reshape(len(x), samples, -1).astype(np.float64),
        full.reshape(len(x), -1).astype(np.float64),
    )
    if normalize:
        numerator = (dots * drops).sum(axis=1)
        denominator = (dots**2).sum(axis=1)
        beta = numerator / np.where(denominator == 0, 1.0, denominator)  # Captum's safe_div
        dots = beta[:, None] * dots
    return np.mean((dots - drops) ** 2, axis=1).astype(np.float32)


def completeness(model, x, attributions, target=None, baseline: Any = 0.0) -> np.ndarray:
    """Completeness gap: ``sum(a) - (f(x) - f(baseline))`` per sample.

    Zero for methods that satisfy completeness (Integrated Gradients with enough
    steps, LRP-0 on bias-free ReLU networks with a zero baseline); CAM maps are
    broadcast over the channels before summing.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets`.
        baseline: A number, ``"blur"``, ``"mean"`` or an array.

    Returns:
        ``(B,)`` float32 gaps.

    Raises:
        ValueError: For attributions of the wrong shape or an unknown baseline.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.array([[1.0], [2.0]], "float32")])
        >>> kx.metrics.completeness(model, np.ones((1, 2)), np.array([[1.0, 1.0]]), target=0)
        array([-1.], dtype=float32)
    """
    function = "completeness"
    inputs, x, attributions = feature_input(x, attributions, function)
    x = as_batch(x, function)
    full = attributions_like(attributions, x, function)

    job = Job(1, _baseline_copy, {"baseline": baseline_of(baseline, x, function)})
    _, clean, scores = run_job(model, x if inputs is None else inputs, target, job)
    totals = full.reshape(len(x), -1).astype(np.float64).sum(axis=1)
    return (totals - (clean.astype(np.float64) - scores[:, 0])).astype(np.float32)


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("deletion_auc", better="lower", report_default=True)
def _deletion_auc(context: MetricContext) -> np.ndarray:
    """Area under the deletion curve (zero baseline, ``context.steps`` steps)."""
    c = context
    return deletion(c.model, c.x, c.attributions, c.target, steps=c.steps).auc


@register_metric("insertion_auc", better="higher", report_default=True)
def _insertion_auc(context: MetricContext) -> np.ndarray:
    """Area under the insertion curve (blur baseline, ``context.steps`` steps)."""
    c = context
    return insertion(c.model, c.x, c.attributions, c.target, steps=c.steps).auc


@register_metric("infidelity", better="lower")
def _infidelity(context: MetricContext) -> np.ndarray:
    """Normalized infidelity, Gaussian noise of σ = 0.1."""
    c = context
    return infidelity(c.model, c.x, c.attributions, c.target, seed=c.seed)


@register_metric("faithfulness_correlation", better="higher", default=False)
def _faithfulness_correlation(context: MetricContext) -> np.ndarray:
    """Pearson over 200 random subsets of 20% of the features, zero baseline."""
    c = context
    return faithfulness_correlation(c.model, c.x, c.attributions, c.target, seed=c.seed)
