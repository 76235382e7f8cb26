"""Axiomatic checks: does the explanation have properties every right answer has?

Non-sensitivity (Nguyen & Martínez 2020): a feature gets zero attribution exactly
when the model does not depend on it. Input invariance (Kindermans et al. 2017,
2019): a constant shift of the input that the model absorbs in its first bias
does not change the explanation. The perturbed copies of non-sensitivity go
through the batched evaluator (:mod:`keras_explain.metrics.engine`); input
invariance explains a clone of the model (the user's model is never modified).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _validate, random
from keras_explain.metrics.engine import (
    Job,
    as_batch,
    attributions_like,
    baseline_of,
    checked,
    feature_input,
    fixed_target,
    keep_copies,
    pixel_maps,
    run_job,
    spatial_shape,
)
from keras_explain.metrics.registry import MetricContext, register_metric


class ShiftNotAbsorbed(ValueError):
    """:func:`input_invariance` cannot move the input shift into this model's first bias.

    Raised for a model whose first layer with weights has no bias, sits behind a
    non-affine layer, pads with zeros, or shares its input with other layers; the
    ``input_invariance`` column of :func:`~keras_explain.metrics.evaluate` is then
    NaN (with a warning) instead of failing the whole row.
    """


# keras_explain.metrics.sanity is imported in input_invariance: it registers the
# `randomization` column when imported, and the columns keep the order of
# keras_explain.metrics' (alphabetical) imports.


def _one_removed(x, params, start, size):
    """Copies where only the feature ``start + i`` is set to the baseline (all its channels)."""
    feature = params["feature"][None]  # (1, *spatial) the index of every feature
    removed = tf.reshape(tf.range(start, start + size), [-1] + [1] * (feature.shape.rank - 1))
    keep = tf.not_equal(feature, removed)[:, None]  # (size, 1, *spatial)
    return keep_copies(x, tf.cast(params["baseline"], x.dtype), keep)


def non_sensitivity(
    model,
    x,
    attributions,
    target=None,
    *,
    eps: float = 1e-5,
    tolerance: float = 1e-5,
    baseline: Any = 0.0,
    probabilities: bool = False,
) -> np.ndarray:
    """Non-sensitivity (Nguyen & Martínez 2020; Quantus' ``NonSensitivity``).

    The size of the symmetric difference ``|Z_a  Δ  Z_f|`` of the features with
    zero attribution, ``Z_a = {i : |a_i| < eps * max_j |a_j|}``, and the
    features the model does not depend on,
    ``Z_f = {i : |f(x) - f(x with i set to the baseline)| < tolerance}``: the
    features with ~zero attribution whose removal changes the score, plus those
    with attribution whose removal does not. A feature is a pixel (all its
    channels together; ``|a_i|`` summed over channels), a column of tabular
    data, a token of a sequence; one copy per feature goes through the model.
    Zero for an explanation whose zeros are exactly the features the model
    ignores: lower is better.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        x: The batch ``(B, ...)``.
        attributions: Shaped like ``x``, or CAM maps ``(B, H, W)``.
        target: As in :mod:`keras_explain.targets`.
        eps: Attribution threshold, relative to the sample's largest ``|a_i|``
            (default 1e-5, Quantus' ``eps`` on max-normalised attributions).
        tolerance: Score change below which the model does not depend on a
            feature (default 1e-5).
        baseline: The value a removed feature takes: a number, ``"blur"``,
            ``"mean"`` or an array shaped like one sample or the batch.
        probabilities: Score the softmax of the explained output instead of the
            logit (Quantus' default is the softmax).

    Returns:
        ``(B,)`` float32 counts of features (lower is better).

    Raises:
        ValueError: For attributions of the wrong shape, a negative ``eps`` or
            ``tolerance``, or an unknown baseline.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
        >>> model.set_weights([np.array([[2.0], [0.0], [1.0]], "float32")])
        >>> x = np.ones((1, 3), "float32")
        >>> kx.metrics.non_sensitivity(model, x, np.array([[2.0, 0.0, 0.0]]), target=0)
        array([1.], dtype=float32)
    """
    function = "non_sensitivity"
    inputs, x, attributions = feature_input(x, attributions, function)
    x = as_batch(x, function)
    full = attributions_like(attributions, x, function)
    eps = checked(function, _validate.non_negative, eps, "eps")
    tolerance = checked(function, _validate.non_negative, tolerance, "tolerance")
    spatial = spatial_shape(x)
    features = math.prod(spatial)
    magnitude = pixel_maps(np.abs(full.astype(np.float64)), x).reshape(len(x), -1)
    peak = magnitude.max(axis=1, keepdims=True)
    zero_attribution = magnitude / np.where(peak > 0, peak, 1.0) < eps

    params = {
        "feature": np.arange(features, dtype=np.int32).reshape(spatial),
        "baseline": baseline_of(baseline, x, function),
    }
    _, clean, scores = run_job(
        model,
        x if inputs is None else inputs,
        target,
        Job(features, _one_removed, params),
        probabilities=bool(probabilities),
    )
    changes = np.abs(scores.astype(np.float64) - clean[:, None].astype(np.float64))
    independent = changes < tolerance
    return (zero_attribution ^ independent).sum(axis=1).astype(np.float32)


def _first_biased_layer(model: keras.Model, function: str) -> keras.Layer:
    """The first top-level layer with weights; it must have a bias to absorb the shift."""
    layer = next((layer for layer in model.layers if layer.weights), None)
    if layer is None or isinstance(layer, keras.Model):
        found = "no layer with weights" if layer is None else f"the nested model {layer.name!r}"
        raise ShiftNotAbsorbed(
            f"{function} moves the shift into the bias of the model's first layer with weights "
            f"(Dense, Conv). Received: {found} first. Pass a model that starts with one."
        )
    if getattr(layer, "bias", None) is None:
        raise ShiftNotAbsorbed(
            f"{function} moves the shift into the bias of the model's first layer with weights. "
            f"Received: layer {layer.name!r} without a bias (use_bias=False). Pass a model "
            "whose first layer has a bias."
        )
    return layer


def _absorbed(clone: keras.Model, layer: keras.Layer, x, shifted, function: str) -> np.ndarray:
    """The bias of ``layer`` that makes the clone's output at ``shifted`` its output at ``x``.

    ``b - W c``, where ``W c`` is the change of the layer's pre-activation under
    the shift (measured on the batch, so that every layer before it must be
    affine and the change the same at every position).
    """
    inputs = keras.Model(clone.inputs[0], layer.input)  # one input: as_batch checked x
    config = layer.get_config()
    if "activation" in config:
        config["activation"] = "linear"
    with random.global_state_kept():  # building draws default seeds from Python's random
        linear = type(layer).from_config(config)  # the layer without its activation
        linear.build(tuple(layer.input.shape))
    linear.set_weights(layer.get_weights())
    before = np.asarray(linear(inputs(x)), dtype=np.float64)
    change = np.asarray(linear(inputs(shifted)), dtype=np.float64) - before
    axis = 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1
    change = np.moveaxis(change, axis, -1).reshape(-1, change.shape[axis])
    constant = change.mean(axis=0)
    scale = 1e-4 * np.abs(before).max() + 1e-6
    if np.abs(change - constant).max() > scale:
        raise ShiftNotAbsorbed(
            f"{function}: the shift does not move layer {layer.name!r}'s output by a constant "
            "per channel (zero padding, or a non-affine layer before it), so its bias cannot "
            f"absorb it. Received: shift changing the output by {change.min():.4g} to "
            f"{change.max():.4g}. Use padding='valid' or another shift."
        )
    return np.asarray(layer.bias) - constant


def input_invariance(
    analyzer_name: str,
    model,
    x,
    target=None,
    *,
    shift: Any = -1.0,
    atol: float = 1e-4,
    seed: int = 0,
    **analyzer_params: Any,
) -> np.ndarray:
    """Input invariance (Kindermans et al. 2017/2019; Quantus' ``InputInvariance``).

    The input is shifted by a constant ``c`` and the bias of the model's first
    layer with weights (Dense or Conv) by ``-W c``, on a clone of the model,
    so that ``f'(x + c) = f(x)`` for every output (checked). An input-invariant
    method gives the same attributions: ``phi(f', x + c) = phi(f, x)``. The
    gradient is input-invariant; input x gradient is not (it changes by
    ``c * grad``), nor are Integrated Gradients and DeepLIFT with a zero
    baseline (Kindermans et al.). Each sample scores 1.0 if every attribution
    matches (``|a - a'| <= atol + 1e-5 |a'|``, numpy.isclose, as Quantus), else 0.0.

    Args:
        analyzer_name: A registry name (``kx.analyzers.names()``); the method is
            created on the clone with ``analyzer_params``, as in
            :func:`~keras_explain.metrics.randomization`.
        model: A Keras model (Sequential or Functional) whose first layer with
            weights has a bias; it is not modified.
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets` (``None``: the argmax, fixed).
        shift: ``c``: a number (default -1, Quantus') or an array shaped like
            (or broadcast to) one sample.
        atol: Absolute tolerance of the comparison (default 1e-4, Quantus').
        seed: Seed of a sampling method: both explanations draw the same noise.
        **analyzer_params: Passed to :func:`keras_explain.create_analyzer`.

    Returns:
        ``(B,)`` float32 values, 1.0 (invariant) or 0.0: higher is better.

    Raises:
        ValueError: If the first layer with weights has no bias, if the shift
            cannot be absorbed by it (zero padding, a non-affine layer before
            it, an input used by other layers too), or for a shift that does
            not broadcast to a sample.
        TypeError: For a model that is not a Keras model.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "relu"),
        ...                           keras.layers.Dense(2)])
        >>> rng = np.random.default_rng(1)
        >>> model.set_weights([rng.normal(size=w.shape).astype("float32")
        ...                    for w in model.get_weights()])
        >>> x = rng.normal(size=(2, 4)).astype("float32")
        >>> kx.metrics.input_invariance("gradient", model, x, target=0)
        array([1., 1.], dtype=float32)
        >>> kx.metrics.input_invariance("input_t_gradient", model, x, target=0)
        array([0., 0.], dtype=float32)
    """
    from keras_explain.metrics.sanity import clone_and_analyzer, takes_seed

    function = "input_invariance"
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{function} shifts the first bias of a clone of a Keras model. Received: model "
            f"of type {type(model).__name__}."
        )
    x = as_batch(x, function)
    atol = checked(function, _validate.non_negative, atol, "atol")
    offset = np.asarray(shift, dtype=np.float32)
    try:
        shifted = x + np.broadcast_to(offset, x.shape[1:])[None]
    except ValueError:
        raise ValueError(
            f"{function}: shift must be a number or an array broadcast to one sample "
            f"{x.shape[1:]}. Received: shift of shape {offset.shape}."
        ) from None
    if takes_seed(analyzer_name):  # a sampling method draws the same noise twice
        analyzer_params = {"seed": seed, **analyzer_params}
    clone, analyzer = clone_and_analyzer(model, analyzer_name, analyzer_params)
    trained = model.get_weights()
    clone.set_weights(trained)
    layer = _first_biased_layer(clone, function)
    try:
        target = fixed_target(analyzer, x, target)
        original = np.asarray(analyzer.analyze(x, target), dtype=np.float64)
        outputs = analyzer.predict(x)
        layer.bias.assign(_absorbed(clone, layer, x, shifted, function))
        moved = analyzer.predict(shifted)
        scale = 1e-4 * np.abs(outputs).max() + 1e-6
        if np.abs(moved - outputs).max() > scale:
            raise ShiftNotAbsorbed(
                f"{function}: after moving the shift into layer {layer.name!r}'s bias the "
                f"clone's outputs differ from the model's by up to "
                f"{np.abs(moved - outputs).max():.4g} (the input reaches other layers too). "
                "Received: a model whose input feeds more than that layer."
            )
        again = np.asarray(analyzer.analyze(shifted, target), dtype=np.float64)
    finally:
        clone.set_weights(trained)
    same = np.isclose(original, again, atol=atol).reshape(len(x), -1).all(axis=1)
    return same.astype(np.float32)


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
@register_metric("non_sensitivity", better="lower", default=False)
def _non_sensitivity(context: MetricContext) -> np.ndarray:
    """Features in the symmetric difference (eps = tolerance = 1e-5, zero baseline, logits)."""
    c = context
    return non_sensitivity(c.model, c.x, c.attributions, c.target)


@register_metric("input_invariance", better="higher", default=False)
def _input_invariance(context: MetricContext) -> np.ndarray:
    """1.0 where the method's explanation is unchanged by a shift of -1 absorbed in the bias."""
    c = context
    method_params = {key: value for key, value in c.params.items() if key != "seed"}
    try:
        return input_invariance(
            c.name, c.model, c.x, c.target, seed=c.seed, **{"verbose": 0, **method_params}
        )
    except ShiftNotAbsorbed as error:  # a property of the model, not of the method
        warnings.warn(f"{error} The input_invariance column is NaN.", stacklevel=2)
        return np.full(len(c.x), np.nan)
