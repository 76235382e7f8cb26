"""Occlusion and Shapley value sampling: attributions from replacing parts of the input.

Both replace groups of input elements (sliding windows, feature groups or
superpixels) by a ``baseline`` and watch the explained score ``f_t`` change.
All perturbed copies of a batch go through the model in large batches (see
:class:`~keras_explain.analyzers.perturbed.Perturbation`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain.analyzers import superpixels
from keras_explain.analyzers.base import shared_seed
from keras_explain.analyzers.perturbed import (
    Perturbation,
    blend,
    spatial_axes,
    spread_over_channels,
)
from keras_explain.analyzers.registry import register


def _per_axis(value: Any, name: str) -> tuple[int, ...] | None:
    """Validate ``window``/``stride``: None, a positive int or a tuple of them."""
    if value is None:
        return None
    items = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not items or not all(isinstance(v, int | np.integer) and v >= 1 for v in items):
        raise ValueError(
            f"{name} must be a positive int or a tuple of positive ints, one per "
            f"spatial axis. Received: {name}={value!r}."
        )
    return tuple(int(v) for v in items)


@register("occlusion")
class Occlusion(Perturbation):
    """Occlusion (Zeiler & Fergus 2014, arXiv:1311.2901): slide a baseline window.

    Every element gets the mean, over the windows that cover it, of
    ``f_t(x) - f_t(x with that window set to the baseline)``. Windows slide
    over the spatial axes (all axes but the batch and channel axes; the feature
    axis of a 2-D input) and span all channels. Window starts are
    ``0, stride, 2 * stride, ...``, plus one window flush with the end of the
    axis when the stride does not reach it, so every element is covered.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        window: Window size: an int (every spatial axis) or a tuple with one
            entry per spatial axis. Default: ``ceil(length / 8)`` per axis.
        stride: Step between windows, int or tuple (default: the window, i.e.
            non-overlapping windows).
        baseline: Replacement value: scalar, one sample or the batch (default 0).
        **kwargs: ``internal_batch_size``, ``progress``, ``output_index``,
            ``output_layer``, ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns attributions shaped like x.

    Raises:
        ValueError: For a non-positive window or stride, a tuple of the wrong
            length, or a window larger than the input.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> kx.Occlusion(model, window=4, stride=2).analyze(np.ones((2, 8, 8, 1))).shape
        (2, 8, 8, 1)
    """

    def __init__(
        self,
        model,
        *,
        window: int | tuple[int, ...] | None = None,
        stride: int | tuple[int, ...] | None = None,
        baseline: Any = 0.0,
        **kwargs,
    ):
        self.window = _per_axis(window, "window")
        self.stride = _per_axis(stride, "stride")
        self.baseline = baseline
        super().__init__(model, **kwargs)
        specs = self._input_specs()
        if specs and all(d is not None for d in specs[0].shape[1:]):
            self.covers((None, *specs[0].shape[1:]))

    def covers(self, shape) -> list[np.ndarray]:
        """Per spatial axis, the 0/1 matrix ``(windows, length)`` of window coverage.

        Raises:
            ValueError: For a bad window or stride for inputs of ``shape``.
        """
        axes = spatial_axes(len(shape))
        lengths = [int(shape[a]) for a in axes]
        windows = self.window or tuple(math.ceil(n / 8) for n in lengths)
        strides = self.stride or windows
        for name, values in (("window", windows), ("stride", strides)):
            if len(values) == 1:
                values = values * len(lengths)
            if len(values) != len(lengths):
                raise ValueError(
                    f"{name} needs one entry per spatial axis {tuple(lengths)} of inputs "
                    f"of shape {tuple(shape)}. Received: {name}={values!r}."
                )
            if name == "window":
                windows = values
            else:
                strides = values
        result = []
        for length, window, stride in zip(lengths, windows, strides):
            if window > length:
                raise ValueError(
                    f"window {tuple(windows)} is larger than the spatial shape "
                    f"{tuple(lengths)} of inputs of shape {tuple(shape)}. Received: "
                    f"window={self.window!r}; use a window <= the input size."
                )
            starts = list(range(0, length - window + 1, stride))
            if starts[-1] != length - window:
                starts.append(length - window)
            cover = np.zeros((len(starts), length), np.float32)
            for row, start in enumerate(starts):
                cover[row, start : start + window] = 1.0
            result.append(cover)
        return result

    def _explain(self, inputs, target, indices, seed):
        x = self.single_input(inputs)
        target, indices, clean = self.fixed_target(x, target, indices)
        covers = [tf.constant(c, x.dtype) for c in self.covers(x.shape)]
        counts = [int(c.shape[0]) for c in covers]
        rank = x.shape.rank

        def make(start, size):
            ids = tf.range(start, start + size)
            positions = tf.unravel_index(ids, counts) if len(counts) > 1 else ids[None]
            mask = None
            for axis, cover in enumerate(covers):
                rows = tf.gather(cover, positions[axis])
                shape = [-1] + [1] * len(covers)
                shape[1 + axis] = int(cover.shape[1])
                rows = tf.reshape(rows, shape)
                mask = rows if mask is None else mask * rows
            return blend(x, self.baseline, 1 - spread_over_channels(mask, rank)[:, None]), None

        scores, _ = self.evaluate(x, make, math.prod(counts), target, indices)
        diffs = tf.reshape(tf.transpose(clean[None] - scores), [-1, *counts])
        totals = tf.cast(diffs, x.dtype)
        coverage = tf.ones(counts, x.dtype)
        for cover in covers:  # sum over the windows covering each element, axis by axis
            totals = tf.tensordot(totals, cover, axes=[[1], [0]])
            coverage = tf.tensordot(coverage, cover, axes=[[0], [0]])
        result = spread_over_channels(totals / coverage[None], rank)
        return [tf.broadcast_to(result, tf.shape(x))]


@register("shapley_sampling")
class ShapleySampling(Perturbation):
    """Shapley value sampling (Castro et al. 2009; Strumbelj & Kononenko 2010).

    Feature groups are added one by one, in random orders, to the ``baseline``;
    each group's Shapley value is its mean marginal change of ``f_t``. Every
    order telescopes, so the group values always sum to
    ``f_t(x) - f_t(baseline)`` (efficiency). With ``samples >= groups!`` all
    orders are enumerated and the values are exact. Every element of a group
    gets the group's value (so the sum over groups, not over elements, is
    ``f_t(x) - f_t(baseline)``).

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        samples: Number of feature orders (permutations) per input (default 25).
        feature_mask: Int labels of the feature groups, shared by the batch:
            shaped like one sample, or like one sample without its channel axis
            (groups then span all channels). Default: every spatial element
            (all its channels) is a group.
        segmentation: Superpixels computed per image instead of
            ``feature_mask``: ``"quickshift"``, ``"slic"``, ``"felzenszwalb"``
            or a callable ``image -> (H, W)`` labels (see
            :func:`~keras_explain.analyzers.superpixels.segment`).
        segmentation_options: Keyword arguments of the scikit-image function.
        baseline: The reference input: scalar, one sample or the batch (default 0).
        antithetic: Pair every sampled order with its reverse (default True).
        seed: Seed of the orders; the same seed gives the same result.
        **kwargs: ``internal_batch_size``, ``progress``, ``output_index``,
            ``output_layer``, ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns attributions shaped like x.

    Raises:
        ValueError: For ``samples < 1``, both ``feature_mask`` and
            ``segmentation``, or a feature mask of the wrong shape.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> kx.ShapleySampling(model, samples=24, seed=0).analyze(np.ones((2, 4))).shape
        (2, 4)
    """

    def __init__(
        self,
        model,
        *,
        samples: int = 25,
        feature_mask: Any = None,
        segmentation: Any = None,
        segmentation_options: dict | None = None,
        baseline: Any = 0.0,
        antithetic: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        if not isinstance(samples, int | np.integer) or samples < 1:
            raise ValueError(f"samples must be a positive int. Received: samples={samples!r}.")
        if feature_mask is not None and segmentation is not None:
            raise ValueError(
                "Pass either feature_mask (groups shared by the batch) or segmentation "
                "(superpixels per image), not both."
            )
        if segmentation is not None:
            superpixels.check_segmentation(segmentation)
        self.samples = int(samples)
        self.feature_mask = None
        if feature_mask is not None:
            labels = np.asarray(feature_mask)
            if not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(
                    f"feature_mask must hold int group labels. Received: dtype {labels.dtype}."
                )
            self.feature_mask = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        self.segmentation = segmentation
        self.segmentation_options = segmentation_options
        self.baseline = baseline
        self.antithetic = bool(antithetic)
        super().__init__(model, seed=seed, **kwargs)

    def groups(self, x: tf.Tensor):
        """The feature groups of the batch ``x``.

        Returns:
            ``(labels, count, spread)``: int32 group labels per sample, the group
            count, and whether the labels lack the channel axis (groups then
            span all channels).
        """
        rank = x.shape.rank
        spatial = tuple(x.shape[a] for a in spatial_axes(rank))
        if self.segmentation is not None:
            if rank != 4:
                raise ValueError(
                    "segmentation needs images of shape (batch, H, W, C). Received: "
                    f"inputs of shape {tuple(x.shape)}; pass feature_mask instead."
                )
            labels = self._host_segment(x)
            return labels, tf.reduce_max(labels) + 1, True
        if self.feature_mask is None:
            count = math.prod(spatial)
            labels = tf.reshape(tf.range(count, dtype=tf.int32), spatial)
        else:
            if self.feature_mask.shape not in (spatial, tuple(x.shape[1:])):
                raise ValueError(
                    f"feature_mask must be shaped like one sample {tuple(x.shape[1:])} or "
                    f"like its spatial part {spatial}. Received: shape "
                    f"{self.feature_mask.shape}."
                )
            count = int(self.feature_mask.max()) + 1
            labels = tf.constant(self.feature_mask, tf.int32)
        spread = tuple(labels.shape) == spatial
        return tf.broadcast_to(labels, [x.shape[0], *labels.shape]), count, spread

    def _host_segment(self, x):
        def run(images):
            return superpixels.segment(images, self.segmentation, self.segmentation_options)

        if not tf.inside_function():
            return tf.constant(run(np.asarray(x)))
        labels = tf.numpy_function(run, [x], tf.int32, stateful=False)
        return tf.ensure_shape(labels, x.shape[:-1])

    def orders(self, count, seed):
        """The feature orders, ``(K, count)``: all of them when ``samples >= count!``."""
        if isinstance(count, int) and count <= 8 and self.samples >= math.factorial(count):
            return tf.constant(list(itertools.permutations(range(count))), tf.int32)
        drawn = (self.samples + 1) // 2 if self.antithetic else self.samples
        noise = tf.random.stateless_uniform(tf.stack([drawn, count]), seed=shared_seed(seed))
        orders = tf.argsort(noise, axis=1, stable=True)
        if self.antithetic:
            orders = tf.concat([orders, tf.reverse(orders, axis=[1])], axis=0)[: self.samples]
        return tf.cast(orders, tf.int32)

    def _explain(self, inputs, target, indices, seed):
        x = self.single_input(inputs)
        target, indices, _ = self.fixed_target(x, target, indices)
        labels, count, spread = self.groups(x)
        orders = self.orders(count, seed)
        ranks = tf.argsort(orders, axis=1, stable=True)  # ranks[k, g]: position of group g
        permutations = tf.shape(orders)[0]
        steps = tf.maximum(count - 1, 1)
        rank = x.shape.rank

        def make(start, size):
            # evaluation 0: the baseline, 1: x, 2 + k * (count - 1) + (j - 1): the first
            # j groups of order k, for j = 1 .. count - 1.
            ids = tf.range(start, start + size)
            order, step = (ids - 2) // steps, (ids - 2) % steps + 1
            kept = tf.gather(ranks, tf.maximum(order, 0)) < step[:, None]
            kept = tf.where((ids == 1)[:, None], True, kept)
            kept = tf.where((ids == 0)[:, None], False, kept)
            mask = tf.gather(tf.cast(kept, x.dtype), labels, axis=1)
            mask = spread_over_channels(mask, rank) if spread else mask
            return blend(x, self.baseline, mask), None

        total = 2 + permutations * (count - 1)
        if isinstance(count, int) and orders.shape[0] is not None:
            total = 2 + int(orders.shape[0]) * (count - 1)
        scores, _ = self.evaluate(x, make, total, target, indices)
        batch = tf.shape(scores)[1]
        path = tf.reshape(scores[2:], tf.stack([permutations, count - 1, batch]))
        ends = tf.ones(tf.stack([permutations, 1, batch]))
        path = tf.concat([ends * scores[0], path, ends * scores[1]], axis=1)
        marginals = path[:, 1:] - path[:, :-1]  # (K, count, B), by position in the order
        values = tf.reduce_mean(tf.gather(marginals, ranks, axis=1, batch_dims=1), axis=0)
        painted = tf.gather(tf.transpose(values), labels, axis=1, batch_dims=1)
        painted = spread_over_channels(tf.cast(painted, x.dtype), rank) if spread else painted
        return [tf.broadcast_to(painted, tf.shape(x))]


# RISE and meaningful perturbation live in masks.py; importing them here registers them.
from keras_explain.analyzers.masks import RISE, MeaningfulPerturbation  # noqa: E402

__all__ = ["MeaningfulPerturbation", "Occlusion", "RISE", "ShapleySampling"]
