"""Faithfulness by removing image regions: IROF (superpixels) and ROAD (imputed pixels).

IROF (Rieger & Hansen 2020) removes superpixels, most relevant first, and measures
the area over the normalised score curve. ROAD (Rong et al. 2022) removes the most
(or least) relevant pixels and fills them by noisy linear imputation from their
neighbours, so that the removed region's shape does not leak the class. Both are
defined on images ``(B, H, W, C)`` only; every copy is scored by the batched
evaluator of :mod:`keras_explain.metrics.engine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain.analyzers.perturbation.segmentation import Superpixels
from keras_explain.metrics.engine import (
    Curve,
    Job,
    as_batch,
    attributions_like,
    baseline_of,
    checked,
    keep_copies,
    pixel_maps,
    ranks,
    run_job,
)
from keras_explain.metrics.registry import MetricContext, register_metric

ORDERS = ("morf", "lerf")
MEASURES = ("accuracy", "score")
#: ROAD's removal percentages in the paper (Rong et al. 2022, 10 % to 90 %).
PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: The neighbours of a pixel and their weights in ROAD's imputation: 1/6 for the four
#: direct neighbours, 1/12 for the four diagonal ones (Rong et al. 2022, eq. 5).
NEIGHBOURS = (
    ((0, 1), 1 / 6),
    ((0, -1), 1 / 6),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
    ((1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((-1, 1), 1 / 12),
    ((-1, -1), 1 / 12),
)


def predicted_class(outputs: tf.Tensor) -> tf.Tensor:
    """A callable target: the argmax of each sample's flattened output, as a float ``(B,)``.

    Scoring copies with it gives their predicted classes (the "accuracy" of ROAD,
    the predictions compared by ``consistency`` and ``sufficiency``).
    """
    flat = tf.reshape(outputs, (tf.shape(outputs)[0], -1))
    return tf.cast(tf.argmax(flat, axis=1), tf.float32)


def _no_copies(x, params, start, size):
    """No copies (a job of count 0: only the clean scores)."""
    return x[None]


def _removed_copies(x, params, start, size):
    """Copies where the features of rank < cut are set to the baseline."""
    position = params["rank"][None]
    cut = tf.reshape(params["cuts"][start : start + size], [-1] + [1] * (position.shape.rank - 1))
    return keep_copies(x, tf.cast(params["baseline"], x.dtype), position >= cut)


def _given_copies(x, params, start, size):
    """The precomputed copies ``copies[start:start + size]``."""
    return tf.cast(params["copies"][start : start + size], x.dtype)


def predictions(model, x, **kwargs) -> np.ndarray:
    """The predicted class (argmax of the explained output) of each sample, ``(B,)`` int64.

    One forward pass through the batched evaluator; ``kwargs`` as
    :func:`~keras_explain.metrics.engine.run_job`.
    """
    _, classes, _ = run_job(model, x, predicted_class, Job(0, _no_copies), **kwargs)
    return classes.astype(np.int64)


def _images(x: Any, attributions: Any, function: str) -> tuple[np.ndarray, np.ndarray]:
    x = as_batch(x, function)
    if x.ndim != 4:
        raise ValueError(
            f"{function} is defined on images (B, H, W, C) only: it removes 2-D regions. "
            f"Received: x of shape {x.shape}. For tabular or sequence inputs use deletion, "
            "pixel_flipping or faithfulness_correlation."
        )
    return x, pixel_maps(attributions_like(attributions, x, function), x)


def irof(
    model,
    x,
    attributions,
    target=None,
    *,
    segmentation: Any = "slic",
    segmentation_options: dict | None = None,
    baseline: Any = "mean",
    probabilities: bool = True,
) -> np.ndarray:
    """Iterative Removal Of Features (Rieger & Hansen 2020), Quantus' ``IROF``.

    Each image is segmented into ``L`` superpixels, which are ranked by their mean
    attribution (summed over channels; highest first, ties by label) and removed
    one by one (all their channels set to the baseline). With ``x^(l)`` the image
    after ``l`` removals and ``y_l = f_t(x^(l)) / f_t(x)`` the normalised score,
    the value is the area over the curve on the fraction axis ``t_l = l / L``:

    ``IROF = integral_0^1 (1 - y) dt = 1 - trapezoid(y_0 .. y_L over t_0 .. t_L)``

    (``y_0 = 1``). A faithful explanation removes the class evidence first, the
    score falls fast and the area is large: higher is better. The paper averages
    it over the images; here it is per image. Quantus' number is
    ``L * IROF + (1 + y_1) / 2`` (no ``y_0`` point, spacing 1 per segment: its
    ``irof.py:388``); its ``"mean"`` baseline is one value, the mean of the
    whole (already perturbed) batch, recomputed at every step
    (``perturb_func.py:201``), and it only runs on one-channel images (its mask is
    ``(B, 1, H, W)``, ``irof.py:369``).

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The images ``(B, H, W, C)``.
        attributions: Shaped like ``x``, or maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets` (``None``: the clean argmax).
        segmentation: ``"slic"`` (default, as Quantus), ``"quickshift"``,
            ``"felzenszwalb"`` (scikit-image, the options of
            :func:`~keras_explain.analyzers.perturbation.segmentation.default_options`),
            a callable ``image (H, W, C) -> (H, W)`` int labels, or a label map
            ``(H, W)`` or ``(B, H, W)``.
        segmentation_options: Keyword arguments of the scikit-image function
            (e.g. ``{"n_segments": 100, "sigma": 0}``: scikit-image's own
            defaults, which Quantus uses).
        baseline: What a removed superpixel becomes: ``"mean"`` (default: each
            image's per-channel mean), ``"blur"``, a number or an array.
        probabilities: Score the softmax of the explained output (default, as
            Quantus: the ratio of two logits, which may be negative, is no share).
            Pass False for a callable model that already returns probabilities.

    Returns:
        ``(B,)`` float32 areas over the curve (higher is better); NaN where the
        clean score is 0.

    Raises:
        ValueError: For inputs that are not images, attributions of the wrong
            shape, an unknown baseline or a bad label map.
        ImportError: If a named segmentation needs scikit-image and it is missing.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.ones((4, 1), "float32")])
        >>> x = np.array([1.0, 2.0, 3.0, 4.0], "float32").reshape(1, 2, 2, 1)
        >>> labels = np.array([[0, 0], [1, 1]])  # two superpixels: the rows
        >>> kx.metrics.irof(model, x, x, target=0, segmentation=labels, baseline=0.0,
        ...                 probabilities=False)  # y = 1, 0.3, 0: 1 - (0.65 + 0.15) / 2
        array([0.6], dtype=float32)
    """
    from scipy.integrate import trapezoid

    function = "irof"
    x, maps = _images(x, attributions, function)
    labels = Superpixels(segmentation, segmentation_options, extra="metrics", owner=function)(x)
    counts = labels.reshape(len(x), -1).max(axis=1) + 1
    rank = np.empty_like(labels)
    for b, (label, count) in enumerate(zip(labels, counts)):
        means = np.bincount(label.ravel(), maps[b].ravel().astype(np.float64), count)
        means /= np.bincount(label.ravel(), minlength=count)
        rank[b] = ranks(means[None])[0][label]  # each pixel: its superpixel's rank
    cuts = np.arange(1, counts.max() + 1, dtype=np.int32)
    job = Job(
        len(cuts),
        _removed_copies,
        {"cuts": cuts, "rank": rank, "baseline": baseline_of(baseline, x, function)},
    )
    _, clean, scores = run_job(model, x, target, job, probabilities=bool(probabilities))
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = scores.astype(np.float64) / clean[:, None].astype(np.float64)
    values = np.empty(len(x))
    for b, count in enumerate(counts):
        curve = np.concatenate([[1.0], shares[b, :count]])
        values[b] = 1.0 - trapezoid(curve, np.arange(count + 1) / count)
    return np.where(clean == 0, np.nan, values).astype(np.float32)


def noisy_linear_imputation(
    image: np.ndarray, removed: np.ndarray, noise_scale: float = 0.0, rng: Any = None
) -> np.ndarray:
    """ROAD's noisy linear imputation (Rong et al. 2022) of the removed pixels of one image.

    Every removed pixel ``i`` takes the weighted mean of its in-image neighbours
    ``N(i)`` (weights :data:`NEIGHBOURS`: 1/6 direct, 1/12 diagonal), removed
    neighbours included, so the values solve the sparse linear system

    ``sum_{j in N(i)} w_ij * (v_i - v_j) = 0`` for every removed ``i``,

    the known ``v_j`` on the right-hand side (one system, one right-hand side
    per channel; scipy.sparse). Gaussian noise of standard deviation
    ``noise_scale`` is then added to the imputed values. Pixels not removed are
    returned unchanged. The system is regular as long as at least one pixel is
    kept.

    Args:
        image: ``(H, W, C)``.
        removed: ``(H, W)`` booleans, not all True.
        noise_scale: Standard deviation of the noise (in the units of ``image``).
        rng: A ``numpy.random.Generator`` for the noise (needed when
            ``noise_scale > 0``).

    Returns:
        ``(H, W, C)`` float64 image.

    Example:
        >>> import numpy as np
        >>> from keras_explain.metrics.region_removal import noisy_linear_imputation
        >>> image = np.arange(9.0).reshape(3, 3, 1)
        >>> removed = np.zeros((3, 3), bool)
        >>> removed[1, 1] = True  # the centre: the mean of its eight neighbours
        >>> round(float(noisy_linear_imputation(image, removed)[1, 1, 0]), 6)
        4.0
    """
    values = image.reshape(-1, image.shape[-1]).astype(np.float64)
    unknown, solution = _imputed(values, np.asarray(removed, bool), image.shape)
    if noise_scale and len(unknown):
        solution = solution + rng.normal(0.0, noise_scale, solution.shape)
    values[unknown] = solution
    return values.reshape(image.shape)


def _imputed(
    values: np.ndarray, removed: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``(unknown, solution)``: the removed pixels' flat indices and imputed ``(n, C)`` values.

    The system of :func:`noisy_linear_imputation` is symmetric positive definite
    (a graph Laplacian with the known pixels as boundary), factorized by SuperLU
    in its symmetric mode (about 30% faster than ``spsolve``'s default ordering
    at 64 x 64; SuperLU releases the GIL, so :func:`road` solves on every core).
    """
    from scipy import sparse
    from scipy.sparse.linalg import splu

    height, width, channels = shape
    flat = removed.ravel()
    unknown = np.flatnonzero(flat)
    if len(unknown) == 0:
        return unknown, np.zeros((0, channels))
    variable = np.full(flat.size, -1)
    variable[unknown] = np.arange(len(unknown))
    rows, columns = np.divmod(unknown, width)
    diagonal = np.zeros(len(unknown))
    right = np.zeros((len(unknown), channels))
    entries = ([], [], [])  # row, column, value of the off-diagonal terms
    for (dy, dx), weight in NEIGHBOURS:
        y, x = rows + dy, columns + dx
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        source = np.flatnonzero(inside)
        neighbour = y[inside] * width + x[inside]
        diagonal[source] += weight
        known = ~flat[neighbour]
        np.add.at(right, source[known], weight * values[neighbour[known]])
        entries[0].append(source[~known])
        entries[1].append(variable[neighbour[~known]])
        entries[2].append(np.full((~known).sum(), -weight))
    n = len(unknown)
    system = sparse.coo_matrix(
        (
            np.concatenate([diagonal, *entries[2]]),
            (
                np.concatenate([np.arange(n), *entries[0]]),
                np.concatenate([np.arange(n), *entries[1]]),
            ),
        ),
        shape=(n, n),
    ).tocsc()
    factors = splu(system, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    return unknown, factors.solve(right).reshape(n, channels)


def _percentages(percentages: Any, function: str) -> np.ndarray:
    values = np.asarray(percentages, dtype=np.float64).ravel()
    if values.size == 0 or not np.all((values >= 0) & (values < 100)):
        raise ValueError(
            f"{function}: percentages are the shares of pixels removed, each in [0, 100) "
            f"(at least one pixel must stay to impute from). Received: percentages={percentages!r}."
        )
    return values


def road(
    model,
    x,
    attributions,
    target=None,
    *,
    percentages: Sequence[float] = PERCENTAGES,
    order: str = "morf",
    noise_scale: float = 0.01,
    measure: str = "accuracy",
    probabilities: bool = False,
    seed: int = 0,
) -> Curve:
    """RemOve And Debias (Rong et al. 2022, ICML), Quantus' ``ROAD``.

    For each percentage ``p``, the ``floor(H W p / 100)`` pixels (all channels)
    with the highest attribution summed over channels (``"morf"``; the lowest
    with ``"lerf"``; ties in row-major order) are removed and filled by
    :func:`noisy_linear_imputation` (neighbour weights 1/6 and 1/12, plus
    Gaussian noise of ``noise_scale``, seeded), and the copy is scored. The
    imputation leaves no sharp mask edge, so the class cannot be read from the
    removed region's shape (the paper's "class information leakage").

    ``measure="accuracy"`` (default, as the paper and Quantus) records whether
    the copy is still predicted as the target class (1.0 or 0.0; the paper's
    curves are the mean over a dataset, the accuracy); ``"score"`` records
    ``f_t`` of the copy (``probabilities`` for the softmax), a graded per-sample
    curve. With ``"morf"``, a faithful explanation makes the curve fall fast:
    lower is better (with ``"lerf"``, higher).

    Quantus ranks the attributions flattened over the channels (``road.py:322``)
    but imputes flat pixel indices (``perturb_func.py:750``), so it runs on
    one-channel images with ``(B, 1, H, W)`` attributions only (an IndexError
    otherwise); it draws the noise from numpy's global generator and removes 1,
    3, ..., 99 % by default. The imputation runs on the host (scipy.sparse's
    SuperLU, one factorization per image and percentage, on every core): it
    dominates the metric's time (2.2 ms per 64 x 64 system with two threads,
    against 0.1 ms of forward pass per copy for a small CNN).

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The images ``(B, H, W, C)``.
        attributions: Shaped like ``x``, or maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets` (``None``: the clean argmax);
            ``measure="accuracy"`` needs class indices (not ``"all"`` or a callable).
        percentages: Shares of pixels removed, each in [0, 100) (default 10 .. 90).
        order: ``"morf"`` (most relevant first) or ``"lerf"``.
        noise_scale: Standard deviation of the imputation noise, in input units
            (default 0.01, the paper's and Quantus').
        measure: ``"accuracy"`` or ``"score"``.
        probabilities: With ``"score"``, score the softmax of the explained output.
        seed: Seed of the noise.

    Returns:
        A :class:`~keras_explain.metrics.Curve`: ``scores (B, P)``, one column per
        percentage, and ``fractions`` the percentages / 100. The registered
        column ``road`` is the mean of each row.

    Raises:
        ValueError: For inputs that are not images, a percentage outside
            [0, 100), an unknown order or measure, attributions of the wrong
            shape, or ``measure="accuracy"`` with a target that is not a class.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 1)).astype("float32")
        >>> curve = kx.metrics.road(model, x, x, percentages=[0, 50], noise_scale=0.0)
        >>> curve.scores[:, 0], curve.fractions  # nothing removed: still the prediction
        (array([1., 1.], dtype=float32), array([0. , 0.5], dtype=float32))
    """
    function = "road"
    x, maps = _images(x, attributions, function)
    order = checked(function, _validate.one_of, order, "order", ORDERS)
    measure = checked(function, _validate.one_of, measure, "measure", MEASURES)
    if measure == "accuracy" and (isinstance(target, str) or callable(target)):
        raise ValueError(
            f"{function}: measure='accuracy' compares predicted classes with the target "
            f"class. Received: target={target!r}. Pass None, class indices, or "
            "measure='score'."
        )
    noise_scale = checked(
        function, _validate.non_negative, noise_scale, "noise_scale", " (the noise σ)"
    )
    values = _percentages(percentages, function)
    position = ranks(maps, descending=order == "morf")
    copies = _road_copies(x, position, values, noise_scale, seed)
    job = Job(len(values), _given_copies, {"copies": copies})
    fractions = (values / 100).astype(np.float32)
    if measure == "score":
        scores = run_job(model, x, target, job, probabilities=bool(probabilities))[2]
        return Curve(scores, fractions)
    indices = run_job(model, x, target, Job(0, _no_copies))[0]  # checked, None resolved
    classes = run_job(model, x, predicted_class, job)[2]
    return Curve((classes == indices[:, None]).astype(np.float32), fractions)


def _road_copies(x, position, percentages, noise_scale, seed) -> np.ndarray:
    """``(P, B, H, W, C)`` imputed copies, solved on every core, noise drawn in order.

    The noise of image ``b`` and percentage ``p`` is drawn in the order ``b`` then
    ``p`` from one ``default_rng(seed)``, whatever order the solves finish in.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    pixels = position[0].size
    pairs = [(b, p) for b in range(len(x)) for p in range(len(percentages))]
    flat = x.reshape(len(x), -1, x.shape[-1]).astype(np.float64)

    def solve(pair):
        b, p = pair
        removed = position[b] < int(pixels * percentages[p] / 100)
        return _imputed(flat[b], removed, x.shape[1:])

    with ThreadPoolExecutor(max_workers=min(len(pairs), os.cpu_count() or 1)) as pool:
        solutions = list(pool.map(solve, pairs))
    rng = np.random.default_rng(seed)
    copies = np.empty((len(percentages), *x.shape), np.float32)
    for (b, p), (unknown, solution) in zip(pairs, solutions):
        values = flat[b].copy()
        if noise_scale and len(unknown):
            solution = solution + rng.normal(0.0, noise_scale, solution.shape)
        values[unknown] = solution
        copies[p, b] = values.reshape(x.shape[1:])
    return copies


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("irof", better="higher", default=False)
def _irof(context: MetricContext) -> np.ndarray:
    """IROF: slic superpixels, each image's per-channel mean as baseline, softmax scores."""
    c = context
    return irof(c.model, c.x, c.attributions, c.target)


@register_metric("road", better="lower", default=False)
def _road(context: MetricContext) -> np.ndarray:
    """Mean MoRF accuracy of ROAD over 10 .. 90 % of the pixels removed, noise 0.01."""
    c = context
    return road(c.model, c.x, c.attributions, c.target, seed=c.seed).scores.mean(axis=1)
