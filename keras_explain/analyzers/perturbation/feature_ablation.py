"""Feature ablation and feature permutation: replace one group of features, watch the score.

Captum's ``FeatureAblation`` and ``FeaturePermutation``. Both replace the
features of one group at a time (a ``feature_mask`` of int labels; by default
every scalar is its own group) and give every feature of the group
``f_t(x) - f_t(x with the group replaced)``: ablation puts the ``baseline``
there, permutation the group's values of other samples of the batch. All
replaced copies of a batch go through the model in passes (see
:class:`~keras_explain.analyzers.perturbation.engine.Perturbation`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain._spatial import broadcast_baseline, spatial_axes
from keras_explain.analyzers.perturbation.engine import (
    Perturbation,
    attribution_dtype,
    group_labels,
)
from keras_explain.analyzers.registry import register


class GroupReplacement(Perturbation):
    """Base of feature ablation and permutation: replace one feature group at a time.

    A subclass says what replaces a group (:meth:`replacement`). Every feature
    of group ``g`` gets ``f_t(x) - f_t(x with group g replaced)``.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        feature_mask: Int labels of the feature groups (features with the same
            label are replaced together): broadcastable to one sample (e.g.
            ``(H, W, 1)``: groups span the channels), shaped like one sample's
            spatial part (``(H, W)``, the same), with a leading axis of 1
            (Captum's ``(1, ...)``), or one mask per sample ``(B, ...)`` (the
            whole batch in one call). Default: every scalar is its own group.
        **kwargs: ``seed``, ``internal_batch_size``, ``verbose``,
            ``output_index``, ``output_layer``, ``strip_softmax``,
            ``neuron_selection_mode``, ``constant_inputs``.

    Raises:
        ValueError: For a feature mask that is not int labels or cannot be
            broadcast to one sample.
    """

    def __init__(self, model, *, feature_mask: Any = None, **kwargs):
        self.feature_mask = group_labels(feature_mask, type(self).__name__)
        super().__init__(model, **kwargs)
        specs = self._input_specs()
        if self.feature_mask is not None and specs:
            shape = tuple(specs[self.feature_input].shape)
            if all(d is not None for d in shape[1:]):
                self.labels_for(shape)

    def labels_for(self, shape) -> np.ndarray:
        """The int32 group labels of a batch of ``shape``, renumbered ``0 .. groups - 1``.

        Returns:
            ``(1, *sample)`` labels shared by the batch, or ``(B, *sample)``
            labels of a per-sample mask.

        Raises:
            ValueError: For a mask that cannot be broadcast to one sample.
        """
        sample = tuple(int(d) for d in shape[1:])
        if self.feature_mask is None:
            return np.arange(math.prod(sample), dtype=np.int32).reshape((1, *sample))
        mask = self.feature_mask
        spatial = tuple(sample[a - 1] for a in spatial_axes(len(shape)))
        if len(shape) > 2 and mask.shape == spatial:
            mask = mask[..., None]  # the groups span the channels
        if mask.ndim == len(sample):
            mask = mask[None]
        batch = shape[0]
        fits = mask.ndim == len(sample) + 1 and (
            mask.shape[0] == 1 or batch is None or mask.shape[0] == batch
        )
        try:
            broadcast = fits and np.broadcast_shapes(mask.shape[1:], sample) == sample
        except ValueError:
            broadcast = False
        if not broadcast:
            raise ValueError(
                f"{type(self).__name__}: feature_mask must be broadcastable to one sample "
                f"{sample} (e.g. {(*sample[:-1], 1)} for groups that span the last axis), "
                f"shaped like its spatial part {spatial}, or shaped like the batch "
                f"{(batch, *sample)}. Received: feature_mask of shape "
                f"{self.feature_mask.shape}."
            )
        labels = np.broadcast_to(mask, (mask.shape[0], *sample))
        return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)

    def _check_batch(self, shapes, split):
        super()._check_batch(shapes, split)
        if self.feature_mask is None:
            return
        shape = shapes[self.feature_input]
        labels = self.labels_for(shape)
        if labels.shape[0] > 1 and split:
            raise ValueError(
                f"{type(self).__name__}: a feature_mask with one mask per sample (shape "
                f"{self.feature_mask.shape}) needs the whole batch in one call: analyze "
                "without batch_size and not from a tf.data.Dataset, or pass a mask shaped "
                "like one sample."
            )

    def replacement(self, x: tf.Tensor, count: int, seed: tf.Tensor):
        """What replaces the groups of the batch ``x``.

        Args:
            x: The batch ``(B, ...)``.
            count: The number of feature groups.
            seed: ``[user_seed, first_row]`` (see
                :meth:`~keras_explain.analyzers.base.Analyzer.explain_batch`).

        Returns:
            ``replace(ids) -> values`` broadcastable to ``(len(ids), B, ...)``: the
            values that group ``ids[k]`` takes in copy ``k``.
        """
        raise NotImplementedError

    def explain_batch(self, inputs, target, indices, seed, params):
        """Per feature, the score drop of replacing its group."""
        x = self.single_input(inputs)
        labels = self.labels_for(x.shape)
        count = int(labels.max()) + 1
        replace = self.replacement(x, count, seed)
        target, indices, clean = self.clean_scores(x, target, indices)
        groups = tf.constant(labels)[None]  # (1, 1 or B, *sample)
        rank = x.shape.rank

        def make(start, size):
            ids = tf.range(start, start + size, dtype=tf.int32)
            chosen = tf.equal(groups, tf.reshape(ids, [-1] + [1] * rank))
            return tf.where(chosen, replace(ids), x[None]), None

        scores = self.evaluate(x, make, count, target, indices)  # (count, B)
        drops = tf.cast(tf.transpose(clean[None] - scores), attribution_dtype(x))
        painted = tf.broadcast_to(tf.constant(labels), x.shape)
        return [tf.gather(drops, painted, axis=1, batch_dims=1)]


@register("feature_ablation")
class FeatureAblation(GroupReplacement):
    """Feature ablation (Captum's ``FeatureAblation``): set one feature group to the baseline.

    Every feature of group ``g`` (the features with label ``g`` in
    ``feature_mask``) gets ``f_t(x) - f_t(x with group g set to the baseline)``.
    By default every scalar is its own group. With groups that are the windows
    of :class:`~keras_explain.analyzers.perturbation.occlusion.Occlusion` with
    ``stride == window`` both give the same values; a feature mask allows any
    grouping (superpixels, irregular regions, columns of a table).

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        feature_mask: Int labels of the feature groups: broadcastable to one
            sample (``(H, W, 1)``: groups span the channels), shaped like one
            sample's spatial part (``(H, W)``, the same), with a leading axis
            of 1 (Captum's ``(1, ...)``), or one mask per sample ``(B, ...)``
            (the whole batch in one call). Default: every scalar is a group.
        baseline: The value of an ablated feature: a scalar, one sample or the
            batch (default 0, as Captum).
        **kwargs: ``internal_batch_size``, ``verbose``, ``output_index``,
            ``output_layer``, ``strip_softmax``, ``neuron_selection_mode``,
            ``constant_inputs``.

    Returns:
        ``analyze(x)`` returns attributions shaped like x.

    Raises:
        ValueError: For a feature mask that is not int labels or cannot be
            broadcast to one sample, a per-sample mask with ``batch_size``, or a
            baseline of the wrong shape.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, use_bias=False)])
        >>> model.set_weights([np.array([[1.0, 0], [2, 0], [3, 0], [4, 0]])])
        >>> ablation = kx.FeatureAblation(model, feature_mask=np.array([0, 0, 1, 1]))
        >>> ablation.analyze(np.ones((1, 4)), target=0)  # w_i x_i summed over the group
        array([[3., 3., 7., 7.]], dtype=float32)
    """

    def __init__(self, model, *, feature_mask: Any = None, baseline: Any = 0.0, **kwargs):
        super().__init__(model, feature_mask=feature_mask, **kwargs)
        self.baseline = self.checked_baseline(baseline)

    baseline_attributes = ("baseline",)

    def replacement(self, x, count, seed):
        """The baseline, for every group."""
        if isinstance(self.baseline, float):
            value = tf.cast(self.baseline, x.dtype)
        else:
            value = broadcast_baseline(self.baseline, x)[None]
        return lambda ids: value


@register("feature_permutation")
class FeaturePermutation(GroupReplacement):
    """Permutation feature importance (Captum's ``FeaturePermutation``), within the batch.

    For each feature group ``g``, one random permutation ``π_g`` of the batch
    (never the identity, as Captum redraws it) gives sample ``i`` the group's
    values of sample ``π_g(i)``; every feature of the group gets
    ``f_t(x) - f_t(x with group g permuted)``. By default every scalar is its
    own group. The result depends on which samples are explained together: a
    ``batch_size`` permutes within each batch.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        feature_mask: Int labels of the feature groups, as for
            :class:`FeatureAblation` (default: every scalar is a group).
        seed: Seed of the permutations; the same seed gives the same result.
            They are drawn with stateless TensorFlow ops from the seed and the
            batch's first row (:meth:`permutations`); no global random state is
            read or changed.
        **kwargs: ``internal_batch_size``, ``verbose``, ``output_index``,
            ``output_layer``, ``strip_softmax``, ``neuron_selection_mode``,
            ``constant_inputs``.

    Returns:
        ``analyze(x)`` returns attributions shaped like x.

    Raises:
        ValueError: For a batch of one sample (nothing to permute with), and
            for a bad feature mask as :class:`FeatureAblation`.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> x = np.arange(12, dtype="float32").reshape(4, 3)
        >>> kx.FeaturePermutation(model, seed=0).analyze(x).shape
        (4, 3)
    """

    def __init__(self, model, *, feature_mask: Any = None, seed: int | None = None, **kwargs):
        super().__init__(model, feature_mask=feature_mask, seed=seed, **kwargs)

    def permutations(self, count: int, batch: int, seed) -> tf.Tensor:
        """One random permutation of the batch per feature group, never the identity.

        Row ``g`` is uniform over the permutations of ``range(batch)`` other than
        the identity: a row drawn as the identity is drawn again (Captum's
        ``_permute_feature`` does the same), with stateless draws keyed by
        ``seed`` and the attempt.

        Args:
            count: The number of feature groups.
            batch: The number of samples, at least 2.
            seed: ``[user_seed, first_row]``, as :meth:`explain_batch` receives it.

        Returns:
            ``(count, batch)`` int32: sample ``i`` takes group ``g``'s values
            from sample ``permutations[g, i]``.

        Example:
            >>> import keras, keras_explain as kx
            >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            >>> kx.FeaturePermutation(model).permutations(3, 2, [0, 0]).numpy().tolist()
            [[1, 0], [1, 0], [1, 0]]
        """
        seed = tf.cast(seed, tf.int64)
        identity = tf.range(batch, dtype=tf.int32)

        def draw(attempt):
            key = tf.random.experimental.stateless_fold_in(seed, attempt)
            noise = tf.random.stateless_uniform([count, batch], seed=key)
            return tf.argsort(noise, axis=1, stable=True)

        def unchanged(orders):
            return tf.reduce_all(tf.equal(orders, identity), axis=1)

        def again(attempt, orders):
            return attempt + 1, tf.where(unchanged(orders)[:, None], draw(attempt + 1), orders)

        _, orders = tf.while_loop(
            lambda attempt, orders: tf.reduce_any(unchanged(orders)),
            again,
            (tf.constant(0, tf.int64), draw(tf.constant(0, tf.int64))),
        )
        return orders

    def replacement(self, x, count, seed):
        """Each group's values of other samples, one permutation per group."""
        if x.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__} permutes each feature group across the samples of "
                "a batch; a batch of 1 sample has nothing to permute with. Received: a "
                f"batch of shape {tuple(x.shape)}. Explain at least 2 samples together, "
                "with a batch_size of at least 2 that leaves no last batch of 1 sample."
            )
        orders = self.permutations(count, int(x.shape[0]), seed)
        return lambda ids: tf.gather(x, tf.gather(orders, ids))
