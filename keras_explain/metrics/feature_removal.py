"""Faithfulness by removing features one group at a time: Quantus' four feature-removal metrics.

Faithfulness estimate (Alvarez-Melis & Jaakkola 2018), monotonicity (Arya et al.
2019, AIX360), monotonicity correlation (Nguyen & Martínez 2020) and sensitivity-n
(Ancona et al. 2018). A feature is a pixel with all its channels (a time step or
token of a sequence ``(B, T, D)``, a column of a table ``(B, F)``), ranked by its
attribution summed over channels; ``features_in_step`` consecutive features of that
order form a group. Every perturbed copy of a call goes through the model in one
:func:`~keras_explain.metrics.engine.run_job`; correlations are computed on the host
in float64 with scipy.stats.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain.metrics.engine import (
    Job,
    as_batch,
    attributions_like,
    baseline_of,
    checked,
    continuous_batch,
    feature_input,
    fused_where,
    keep_copies,
    pixel_maps,
    ranks,
    run_job,
    spatial_shape,
)
from keras_explain.metrics.registry import MetricContext, register_metric

#: Share of the features the largest default subset of :func:`sensitivity_n` holds
#: (Ancona et al. 2018 vary n "from one to about 80% of the total number of features").
SENSITIVITY_N_LARGEST = 0.8
#: What :func:`monotonicity_correlation` does to inputs, for the error on token ids.
RANDOM_VALUES = "replaces features by uniform random values"


@dataclasses.dataclass(frozen=True)
class CorrelationCurve:
    """Sensitivity-n of each sample: one correlation per subset size.

    Attributes:
        sizes: ``(S,)`` the subset sizes ``n``, in the order given (the default
            ones increasing).
        correlations: ``(B, S)`` the Pearson correlation of each sample at each size
            (NaN where either side is constant).
    """

    sizes: np.ndarray
    correlations: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """``(B,)`` the mean correlation over the sizes (NaN sizes left out)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sample with no finite value
            return np.nanmean(self.correlations.astype(np.float64), axis=1).astype(np.float32)


def _group_shape(group: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """``ids`` ``(n,)`` reshaped to broadcast against ``group[None]`` ``(1, B, *spatial)``."""
    return tf.reshape(ids, [-1] + [1] * group.shape.rank)


def _group_removed_copies(x, params, start, size):
    """Copy ``k`` sets the features of group ``k`` to the baseline (faithfulness estimate)."""
    group = params["group"]
    keep = group[None] != _group_shape(group, tf.range(start, start + size))
    return keep_copies(x, tf.cast(params["baseline"], x.dtype), keep)


def _groups_inserted_copies(x, params, start, size):
    """Copy ``k`` holds x on groups ``0 .. k`` and the baseline elsewhere (monotonicity)."""
    group = params["group"]
    keep = group[None] <= _group_shape(group, tf.range(start, start + size))
    return keep_copies(x, tf.cast(params["baseline"], x.dtype), keep)


def _group_random_copies(x, params, start, size):
    """Copy ``k * samples + s`` sets group ``k`` to the random value ``values[k * samples + s]``."""
    group = params["group"]
    copy = tf.range(start, start + size)
    replaced = group[None] == _group_shape(group, copy // params["samples"])
    values = tf.cast(params["values"][start : start + size], x.dtype)  # (size, B)
    values = tf.reshape(values, [-1, tf.shape(x)[0]] + [1] * (x.shape.rank - 1))
    if x.shape.rank > 2:
        replaced = replaced[..., None]
    return fused_where(replaced, values, x[None])


def _subsets_removed_copies(x, params, start, size):
    """Copy ``c`` sets the random subset ``removed[c]`` to the baseline (sensitivity-n)."""
    keep = tf.logical_not(params["removed"][start : start + size])[:, None]
    return keep_copies(x, tf.cast(params["baseline"], x.dtype), keep)


def _prepared(function: str, x: Any, attributions: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """``(inputs, x, maps)``: what the model is called on, the perturbed batch, the maps.

    ``x`` is the batch as float32 (a dict's feature input, see
    :func:`~keras_explain.metrics.engine.feature_input`: the token ids beside a
    padding mask), ``inputs`` the whole dict or ``x`` itself, and ``maps`` one
    attribution per feature ``(B, *spatial)``.
    """
    inputs, x, attributions = feature_input(x, attributions, function)
    x = as_batch(x, function)
    maps = pixel_maps(attributions_like(attributions, x, function), x).astype(np.float64)
    return x if inputs is None else inputs, x, maps


def _grouped(
    function: str, maps: np.ndarray, features_in_step: Any, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(group, sums)``: each feature's group ``(B, *spatial)`` and each group's sum ``(B, G)``.

    Features are ordered by ``maps`` (stable: ties in row-major order) and cut into
    ``G = ceil(n / features_in_step)`` groups of consecutive features, the last one
    possibly smaller.
    """
    features = maps[0].size
    step = checked(function, _validate.positive_int, features_in_step, "features_in_step")
    if step > features:
        raise ValueError(
            f"{function}: features_in_step must be at most the number of features ({features}) "
            f"of these inputs. Received: features_in_step={step}. Pass features_in_step <= "
            f"{features}."
        )
    group = ranks(maps, descending=descending) // step
    sums = np.zeros((len(maps), -(-features // step)), np.float64)
    rows = np.repeat(np.arange(len(maps)), features)
    np.add.at(sums, (rows, group.reshape(-1)), maps.reshape(-1))
    return group.astype(np.int32), sums


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis (scipy.stats), NaN where a side is constant."""
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return stats.pearsonr(a, b, axis=-1).statistic


def faithfulness_estimate(
    model,
    x,
    attributions,
    target=None,
    *,
    features_in_step: int = 1,
    baseline: Any = 0.0,
    probabilities: bool = True,
) -> np.ndarray:
    """Faithfulness estimate (Alvarez-Melis & Jaakkola 2018), as Quantus' ``FaithfulnessEstimate``.

    Each group ``G_k`` of features is set to the baseline on its own, and the
    attributions are correlated with the drops they cause:

    ``rho(x) = pearson_k( sum_{i in G_k} a_i , f(x) - f(x with G_k <- baseline) )``

    (Pearson, scipy.stats). Groups are ``features_in_step`` consecutive features in
    the order of decreasing attribution (Quantus' order; with one feature per group
    the order does not matter). The paper correlates drops of the predicted class's
    probability (as AIX360's ``faithfulness_metric``), hence ``probabilities=True``;
    Quantus scores logits by default (its ``softmax=False``).

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch: images ``(B, H, W, C)``, sequences ``(B, T, D)`` or a table ``(B, F)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets` (``None``: the clean argmax).
        features_in_step: Features per group (at most the number of features).
        baseline: A number, ``"blur"``, ``"mean"`` or an array shaped like one
            sample or the batch.
        probabilities: Score the softmax of the explained output (default, the
            paper's probability drops) instead of the raw target score.

    Returns:
        ``(B,)`` float32 correlations in [-1, 1] (higher is better; NaN where
        either side is constant, e.g. a single group).

    Raises:
        ValueError: For attributions of the wrong shape, ``features_in_step``
            larger than the number of features, or an unknown baseline.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.array([[1.0], [-2.0], [3.0], [0.5]], "float32")])
        >>> x = np.ones((1, 4), "float32")
        >>> attributions = x * model.get_weights()[0][:, 0]  # exact on a linear model
        >>> kx.metrics.faithfulness_estimate(model, x, attributions, 0, probabilities=False)
        array([1.], dtype=float32)
    """
    function = "faithfulness_estimate"
    inputs, x, maps = _prepared(function, x, attributions)
    group, sums = _grouped(function, maps, features_in_step, descending=True)
    job = Job(
        sums.shape[1],
        _group_removed_copies,
        {"group": group, "baseline": baseline_of(baseline, x, function)},
    )
    _, clean, scores = run_job(model, inputs, target, job, probabilities=bool(probabilities))
    drops = clean[:, None].astype(np.float64) - scores
    return _pearson(sums, drops).astype(np.float32)


def monotonicity(
    model,
    x,
    attributions,
    target=None,
    *,
    features_in_step: int = 1,
    baseline: Any = 0.0,
    probabilities: bool = True,
) -> np.ndarray:
    """Monotonicity (Arya et al. 2019, AIX360's ``monotonicity_metric``; Quantus ``Monotonicity``).

    Starting from the baseline, the groups of features are put back (set to their
    values in x) in the order of increasing attribution, ``features_in_step``
    features at a time; after each insertion the score ``s_k`` is taken. The
    explanation is monotonic when the score never falls:

    ``monotonic(x) = 1 if s_1 <= s_2 <= ... <= s_G else 0``

    (``s_G = f(x)``; as in AIX360, the baseline's own score is not part of the
    sequence). Attributions are used with their sign, as AIX360 does (Quantus
    takes ``|a|`` by default: pass ``abs(attributions)`` for that). Quantus 0.6
    never puts the features back: it "inserts" baseline values into the baseline
    (its ``monotonicity.py``), so every sample comes out monotonic there.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch: images ``(B, H, W, C)``, sequences ``(B, T, D)`` or a table ``(B, F)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets` (``None``: the clean argmax).
        features_in_step: Features per group (at most the number of features).
        baseline: A number, ``"blur"``, ``"mean"`` or an array shaped like one
            sample or the batch.
        probabilities: Score the softmax of the explained output (default, as
            AIX360 and Quantus) instead of the raw target score.

    Returns:
        ``(B,)`` float32, 1.0 for a monotonic sample and 0.0 otherwise; its mean
        is the fraction of monotonic samples (higher is better).

    Raises:
        ValueError: As :func:`faithfulness_estimate`.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.array([[1.0], [2.0], [3.0]], "float32")])
        >>> x = np.ones((2, 3), "float32")
        >>> attributions = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]], "float32")
        >>> kx.metrics.monotonicity(model, x, attributions, 0, probabilities=False)
        array([1., 1.], dtype=float32)
    """
    function = "monotonicity"
    inputs, x, maps = _prepared(function, x, attributions)
    group, sums = _grouped(function, maps, features_in_step, descending=False)
    job = Job(
        sums.shape[1],
        _groups_inserted_copies,
        {"group": group, "baseline": baseline_of(baseline, x, function)},
    )
    scores = run_job(model, inputs, target, job, probabilities=bool(probabilities))[2]
    return np.all(np.diff(scores.astype(np.float64), axis=1) >= 0, axis=1).astype(np.float32)


def monotonicity_correlation(
    model,
    x,
    attributions,
    target=None,
    *,
    features_in_step: int = 1,
    samples: int = 100,
    value_range: tuple[float, float] = (0.0, 1.0),
    probabilities: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Monotonicity correlation (Nguyen & Martínez 2020), as Quantus' ``MonotonicityCorrelation``.

    Each group ``G_k`` of features is replaced ``samples`` times by a random value
    ``u ~ U(value_range)`` (one value for the whole group and its channels, per
    copy and sample, as Quantus' ``"uniform"`` baseline), and the mean squared
    change of the score is correlated with the group's absolute attribution:

    ``rho(x) = spearman_k( sum_{i in G_k} |a_i| , mean_s (f(x_{G_k <- u_s}) - f(x))^2 )``

    (Spearman, scipy.stats; Quantus' extra factor ``1 / f(x)^2`` is the same for
    every group of a sample and leaves the ranks unchanged). Groups are
    ``features_in_step`` consecutive features in the order of increasing ``|a|``
    (Quantus' order). A feature's ``|a|`` is that of its attribution summed over
    channels.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch: images ``(B, H, W, C)``, sequences ``(B, T, D)`` or a table ``(B, F)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets` (``None``: the clean argmax).
        features_in_step: Features per group (at most the number of features).
        samples: Random replacements of each group (Quantus' ``nr_samples``).
        value_range: ``(low, high)`` of the uniform replacement values (Quantus'
            ``uniform_low``, ``uniform_high``).
        probabilities: Score the softmax of the explained output (default, as
            Quantus) instead of the raw target score.
        seed: Seed of the replacement values.

    Returns:
        ``(B,)`` float32 rank correlations in [-1, 1] (higher is better; NaN where
        either side is constant).

    Raises:
        ValueError: For attributions of the wrong shape, ``features_in_step``
            larger than the number of features, a non-positive ``samples`` or a
            ``value_range`` that is not ``(low, high)`` with ``low <= high``.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.array([[1.0], [-2.0], [4.0], [0.5]], "float32")])
        >>> x = np.zeros((1, 4), "float32")  # replacing x_i by u changes f by w_i u
        >>> kx.metrics.monotonicity_correlation(
        ...     model, x, model.get_weights()[0].T, 0, samples=5, probabilities=False)
        array([1.], dtype=float32)
    """
    from scipy import stats

    function = "monotonicity_correlation"
    continuous_batch(feature_input(x, None, function)[1], function, RANDOM_VALUES)
    inputs, x, maps = _prepared(function, x, attributions)
    group, sums = _grouped(function, np.abs(maps), features_in_step, descending=False)
    samples = checked(function, _validate.positive_int, samples, "samples")
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        low, high = math.nan, math.nan
    if not low <= high:
        raise ValueError(
            f"{function}: value_range is the (low, high) of the uniform replacement values, "
            f"low <= high. Received: value_range={value_range!r}."
        )
    groups = sums.shape[1]
    values = np.random.default_rng(seed).uniform(low, high, (groups * samples, len(x)))
    job = Job(
        groups * samples,
        _group_random_copies,
        {"group": group, "values": values.astype(np.float32), "samples": np.int32(samples)},
    )
    _, clean, scores = run_job(model, inputs, target, job, probabilities=bool(probabilities))
    changes = (scores.astype(np.float64) - clean[:, None]).reshape(len(x), groups, samples)
    variations = np.mean(changes**2, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return np.array(
            [stats.spearmanr(a, v).statistic for a, v in zip(sums, variations)], np.float32
        )


def _sizes(function: str, ns: Sequence[int] | None, features: int) -> np.ndarray:
    """The subset sizes of :func:`sensitivity_n`: given, or 10 log-spaced up to 80%."""
    if ns is None:
        largest = max(1, int(SENSITIVITY_N_LARGEST * features))
        return np.unique(np.geomspace(1, largest, 10).round().astype(np.int64))
    sizes = np.asarray(ns)
    if (
        sizes.ndim != 1
        or not sizes.size
        or sizes.dtype.kind not in "iu"
        or sizes.min() < 1
        or sizes.max() > features
    ):
        raise ValueError(
            f"{function}: ns must be a non-empty sequence of subset sizes, ints in [1, "
            f"{features}] (the number of features). Received: ns={ns!r}."
        )
    return sizes.astype(np.int64)


def sensitivity_n(
    model,
    x,
    attributions,
    target=None,
    *,
    ns: Sequence[int] | None = None,
    samples: int = 100,
    baseline: Any = 0.0,
    probabilities: bool = False,
    seed: int = 0,
) -> CorrelationCurve:
    """Sensitivity-n (Ancona et al. 2018): do attributions of n features sum to their effect?

    An explanation has sensitivity-n when for every subset ``S`` of ``n`` features
    ``sum_{i in S} a_i = f(x) - f(x with S <- baseline)``. For each size ``n`` in
    ``ns``, ``samples`` subsets are drawn uniformly (the same subsets for every
    sample of the batch, from ``seed``), and per sample

    ``rho_n(x) = pearson_S( sum_{i in S} a_i , f(x) - f(x with S <- baseline) )``

    (Pearson, scipy.stats), the paper's sampled estimate. The score is the raw
    target score (a logit), the output the attributions explain. Quantus 0.6's
    ``SensitivityN`` computes something else: its subsets are the top-n features
    by attribution, not random ones, it sums the attributions of the last group
    only, and it correlates across the samples of a batch, one value per ``n``.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch: images ``(B, H, W, C)``, sequences ``(B, T, D)`` or a table ``(B, F)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets` (``None``: the clean argmax).
        ns: The subset sizes; by default 10 sizes log-spaced from 1 to 80% of the
            features (rounded, duplicates removed).
        samples: Random subsets per size (>= 2).
        baseline: A number, ``"blur"``, ``"mean"`` or an array shaped like one
            sample or the batch.
        probabilities: Score the softmax of the explained output instead.
        seed: Seed of the subsets.

    Returns:
        A :class:`CorrelationCurve`: ``sizes (S,)``, ``correlations (B, S)`` and
        ``mean (B,)`` (higher is better).

    Raises:
        ValueError: For attributions of the wrong shape, sizes outside
            ``[1, features]``, fewer than 2 samples or an unknown baseline.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
        >>> x = np.random.default_rng(0).normal(size=(2, 8)).astype("float32")
        >>> exact = x * model.get_weights()[0][:, 0]  # f(x) - f(x_S <- 0) = sum_S w x
        >>> curve = kx.metrics.sensitivity_n(model, x, exact, 0, ns=[1, 4], samples=10)
        >>> curve.sizes, curve.correlations
        (array([1, 4]), array([[1., 1.],
               [1., 1.]], dtype=float32))
    """
    function = "sensitivity_n"
    inputs, x, maps = _prepared(function, x, attributions)
    features = maps[0].size
    sizes = _sizes(function, ns, features)
    samples = checked(function, _validate.positive_int, samples, "samples")
    if samples < 2:
        raise ValueError(
            f"{function}: a correlation needs samples >= 2 subsets per size. Received: "
            f"samples={samples}."
        )
    draws = np.random.default_rng(seed).random((len(sizes), samples, features))
    order = np.argsort(np.argsort(draws, axis=2), axis=2)
    removed = (order < sizes[:, None, None]).reshape(len(sizes) * samples, features)
    job = Job(
        len(removed),
        _subsets_removed_copies,
        {
            "removed": removed.reshape(len(removed), *maps.shape[1:]),
            "baseline": baseline_of(baseline, x, function),
        },
    )
    _, clean, scores = run_job(model, inputs, target, job, probabilities=bool(probabilities))
    drops = (clean[:, None].astype(np.float64) - scores).reshape(len(x), len(sizes), samples)
    sums = (maps.reshape(len(x), -1) @ removed.T).reshape(len(x), len(sizes), samples)
    return CorrelationCurve(sizes, _pearson(sums, drops).astype(np.float32))


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
def _step_of(context: MetricContext) -> int:
    """Features per group so that there are about ``context.steps`` groups."""
    x = feature_input(context.x, None, "evaluate")[1]
    features = math.prod(spatial_shape(as_batch(x, "evaluate")))
    return max(1, -(-features // max(1, context.steps)))


@register_metric("faithfulness_estimate", better="higher", default=False)
def _faithfulness_estimate(context: MetricContext) -> np.ndarray:
    """Faithfulness estimate: about ``context.steps`` groups, zero baseline, probabilities."""
    c = context
    step = _step_of(c)
    return faithfulness_estimate(c.model, c.x, c.attributions, c.target, features_in_step=step)


@register_metric("monotonicity", better="higher", default=False)
def _monotonicity(context: MetricContext) -> np.ndarray:
    """Monotonicity (1 or 0): about ``context.steps`` groups, zero baseline, probabilities."""
    c = context
    return monotonicity(c.model, c.x, c.attributions, c.target, features_in_step=_step_of(c))


@register_metric("monotonicity_correlation", better="higher", default=False)
def _monotonicity_correlation(context: MetricContext) -> np.ndarray:
    """Monotonicity correlation: about ``context.steps`` groups, 10 samples, U(0, 1), seeded."""
    c = context
    return monotonicity_correlation(
        c.model,
        c.x,
        c.attributions,
        c.target,
        features_in_step=_step_of(c),
        samples=10,
        seed=c.seed,
    )


@register_metric("sensitivity_n", better="higher", default=False)
def _sensitivity_n(context: MetricContext) -> np.ndarray:
    """Mean sensitivity-n over the default sizes: 100 subsets each, zero baseline, seeded."""
    c = context
    return sensitivity_n(c.model, c.x, c.attributions, c.target, seed=c.seed).mean
