"""Stateless randomness keyed by sample, so results never depend on how work is split.

Every analyzer's compiled function receives ``seed = [user_seed, first_row]``,
``first_row`` being the index of the batch's first sample in the whole input.
Randomness shared by all samples (RISE masks, Shapley orders) comes from
:func:`shared_seed`; per-sample randomness from :func:`row_seeds`; the noise of
noisy copies from :func:`copy_noise`, one seed per copy, so the same copies come
out whatever ``batch_size`` and whatever passes the work is split into.
"""

from __future__ import annotations

import tensorflow as tf


def shared_seed(seed: tf.Tensor) -> tf.Tensor:
    """The stateless seed of randomness shared by every sample (masks, orders)."""
    return tf.stack([seed[0], tf.zeros_like(seed[0])])


def row_seeds(seed: tf.Tensor, count, stream: int = 0) -> tf.Tensor:
    """One stateless seed per sample, ``(count, 2)``, independent of batching.

    Args:
        seed: The ``[user_seed, first_row]`` tensor passed to ``_explain``.
        count: Number of samples in the batch.
        stream: Distinguishes independent draws for the same rows (e.g. the
            inputs of a multi-input model).
    """
    rows = seed[1] + tf.range(count, dtype=seed.dtype)
    first = tf.fill(tf.shape(rows), seed[0] * 7919 + stream)
    return tf.stack([first, rows], axis=1)


def row_normal(seed: tf.Tensor, x: tf.Tensor, stream: int = 0) -> tf.Tensor:
    """Standard normal noise shaped like ``x``, each sample from its own seed."""
    return tf.map_fn(
        lambda row_seed: tf.random.stateless_normal(tf.shape(x)[1:], seed=row_seed, dtype=x.dtype),
        row_seeds(seed, tf.shape(x)[0], stream),
        fn_output_signature=x.dtype,
    )


def copy_noise(seed: tf.Tensor, x: tf.Tensor, start, size, stream: int = 0) -> tf.Tensor:
    """Standard normal noise of copies ``start .. start + size - 1``, shaped like one sample.

    Copy ``k`` draws from the seed ``[user_seed * 7919 + stream, k]``: its noise does
    not depend on which pass or batch it is computed in. The samples of a batch share
    each copy's draw (each scales it by its own σ): every sample still gets
    ``size`` independent draws, which is all an average over copies needs, and the
    cost is one draw per copy instead of one per sample and copy.

    Returns:
        ``(size, 1, ...)`` noise in ``x``'s dtype, broadcastable to ``(size, B, ...)``.
    """
    copies = tf.cast(start, tf.int64) + tf.range(tf.cast(size, tf.int64))
    first = tf.fill(tf.shape(copies), seed[0] * 7919 + stream)
    noise = tf.map_fn(
        lambda pair: tf.random.stateless_normal(tf.shape(x)[1:], seed=pair, dtype=x.dtype),
        tf.stack([first, copies], axis=1),
        fn_output_signature=x.dtype,
        parallel_iterations=32,
    )
    return noise[:, None]


def copy_uniform(seed: tf.Tensor, start, size, width: int, stream: int = 0) -> tf.Tensor:
    """``width`` uniform numbers in [0, 1) for each copy ``start .. start + size - 1``.

    Copy ``k`` draws from the seed ``[user_seed * 7919 + stream, k]``, as
    :func:`copy_noise` does, so its draws do not depend on the passes.
    """
    copies = tf.cast(start, tf.int64) + tf.range(tf.cast(size, tf.int64))
    first = tf.fill(tf.shape(copies), seed[0] * 7919 + stream)
    return tf.map_fn(
        lambda pair: tf.random.stateless_uniform([width], seed=pair, dtype=tf.float64),
        tf.stack([first, copies], axis=1),
        fn_output_signature=tf.float64,
    )
