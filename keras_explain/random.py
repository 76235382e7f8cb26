"""``kx.random``: stateless randomness keyed by sample, so results never depend on batching.

Every analyzer's compiled function (:meth:`Analyzer.explain_batch
<keras_explain.analyzers.base.Analyzer.explain_batch>`) receives
``seed = [user_seed, first_row]``, ``first_row`` being the index of the batch's
first sample in the whole input. A method draws its randomness from these
functions and nowhere else:

- randomness shared by all samples (RISE masks, Shapley orders):
  :func:`shared_seed`;
- per-sample randomness: :func:`row_seeds`, :func:`row_normal`;
- the draws of copy ``k`` of every sample (noisy copies, random path points):
  :func:`copy_noise`, :func:`copy_uniform`, one seed per copy,

so the same values come out whatever ``batch_size``, whatever passes the work is
split into and whatever ``tf.distribute`` replica runs it. Without a ``seed``
argument an analyzer draws a fresh ``user_seed`` per call with :func:`fresh_seed`,
from a generator of its own: numpy's, Python's and TensorFlow's global random
states are never read or changed.

Example:
    >>> import tensorflow as tf
    >>> from keras_explain import random
    >>> seed = tf.constant([7, 0], tf.int64)  # user seed 7, batch starting at row 0
    >>> random.row_seeds(seed, 2).numpy().tolist()
    [[55433, 0], [55433, 1]]
"""

from __future__ import annotations

import contextlib
import random as _python_random
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

#: The generator of :func:`fresh_seed`: seeded from the operating system, and
#: private to the library (no global random state is touched).
_fresh = np.random.default_rng()


def fresh_seed() -> int:
    """A new ``user_seed`` in ``[0, 2**31 - 1)``, for a call without a ``seed`` argument.

    Returns:
        A non-negative int.

    Example:
        >>> from keras_explain import random
        >>> 0 <= random.fresh_seed() < 2**31 - 1
        True
    """
    return int(_fresh.integers(2**31 - 1))


@contextlib.contextmanager
def global_state_kept() -> Iterator[None]:
    """Within the block, code we do not control may draw from the global generators.

    numpy's and Python's global random states are saved and restored on exit:
    ``shap`` draws from numpy's, and Keras draws a default seed from Python's
    when it builds an unseeded initializer (``keras.models.clone_model``). The
    user's seeded experiment then goes on as if nothing had run.

    Example:
        >>> import random as python_random
        >>> from keras_explain import random
        >>> before = python_random.getstate()
        >>> with random.global_state_kept():
        ...     _ = python_random.random()
        >>> python_random.getstate() == before
        True
    """
    numpy_state = np.random.get_state()
    python_state = _python_random.getstate()
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        _python_random.setstate(python_state)


def shared_seed(seed: tf.Tensor) -> tf.Tensor:
    """The stateless seed of randomness shared by every sample (masks, orders)."""
    return tf.stack([seed[0], tf.zeros_like(seed[0])])


def row_seeds(seed: tf.Tensor, count, stream: int = 0) -> tf.Tensor:
    """One stateless seed per sample, ``(count, 2)``, independent of batching.

    Args:
        seed: The ``[user_seed, first_row]`` tensor passed to ``explain_batch``.
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
