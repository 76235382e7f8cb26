"""Shapley value sampling: group values from random orders of adding groups to a baseline.

All perturbed copies of a batch go through the model in passes (see
:class:`~keras_explain.analyzers.perturbation.engine.Perturbation`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain._spatial import blend, spatial_axes, spread_over_channels
from keras_explain.analyzers.perturbation import segmentation as segmentation_module
from keras_explain.analyzers.perturbation.engine import (
    Perturbation,
    attribution_dtype,
    group_labels,
)
from keras_explain.analyzers.registry import register
from keras_explain.random import shared_seed


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
            :func:`~keras_explain.analyzers.perturbation.segmentation.segment`):
            a named algorithm's default options are scaled to the image (about
            50 superpixels), with a regular grid, and one warning, where they
            give fewer than 8. A switched-off superpixel takes ``baseline``.
        segmentation_options: Keyword arguments of the scikit-image function,
            used as given (no grid fallback).
        baseline: The reference input: scalar, one sample or the batch (default 0).
        antithetic: Pair every sampled order with its reverse (default True).
        seed: Seed of the orders; the same seed gives the same result.
        **kwargs: ``internal_batch_size``, ``verbose``, ``output_index``,
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
        if feature_mask is not None and segmentation is not None:
            raise ValueError(
                "Pass either feature_mask (groups shared by the batch) or segmentation "
                "(superpixels per image), not both."
            )
        self.superpixels = None
        if segmentation is not None:
            self.superpixels = segmentation_module.Superpixels(
                segmentation, segmentation_options, extra="lime", owner=type(self).__name__
            )
        self.samples = _validate.positive_int(samples, "samples")
        self.feature_mask = group_labels(feature_mask, type(self).__name__)
        self.segmentation = segmentation
        self.segmentation_options = segmentation_options
        self.antithetic = bool(antithetic)
        super().__init__(model, seed=seed, **kwargs)
        self.baseline = self.checked_baseline(baseline)

    baseline_attributes = ("baseline",)

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
            return self.superpixels(images)

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

    def explain_batch(self, inputs, target, indices, seed, params):
        """Mean marginal contributions of each feature group over orders."""
        x = self.single_input(inputs)
        target, indices, _ = self.fixed_target([x], target, indices)
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
        scores = self.evaluate(x, make, total, target, indices)
        batch = tf.shape(scores)[1]
        path = tf.reshape(scores[2:], tf.stack([permutations, count - 1, batch]))
        ends = tf.ones(tf.stack([permutations, 1, batch]))
        path = tf.concat([ends * scores[0], path, ends * scores[1]], axis=1)
        marginals = path[:, 1:] - path[:, :-1]  # (K, count, B), by position in the order
        values = tf.reduce_mean(tf.gather(marginals, ranks, axis=1, batch_dims=1), axis=0)
        painted = tf.gather(tf.transpose(values), labels, axis=1, batch_dims=1)
        painted = tf.cast(painted, attribution_dtype(x))
        painted = spread_over_channels(painted, rank) if spread else painted
        return [tf.broadcast_to(painted, tf.shape(x))]
