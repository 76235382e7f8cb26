"""The copy loop every multiplying method shares (``_batching``), against literal arithmetic."""

import numpy as np
import tensorflow as tf

from keras_explain import _batching


def test_the_copy_loop_keeps_or_accumulates_the_same_values():
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])

    def make(start, size):
        scale = tf.cast(tf.range(start, start + size), tf.float32)[:, None, None]
        return [_batching.copies(x, size) * (1.0 + scale)], None

    def evaluate(flat, size):
        return [tf.reduce_sum(flat[0], axis=1)]

    expected = np.array([[(1 + k) * 3.0, (1 + k) * 7.0] for k in range(5)], "float32")
    for per_pass in (1, 2, 5, 7):
        kept = _batching.run_copies(5, per_pass, make, evaluate)
        np.testing.assert_array_equal(kept, expected)
        total = _batching.run_copies(
            5,
            per_pass,
            make,
            evaluate,
            lambda acc, v, aux, s, n: acc + tf.reduce_sum(v[0], 0),
            tf.zeros(()),
        )
        np.testing.assert_array_equal(total, expected.sum(axis=0))
    np.testing.assert_array_equal(_batching.repeat(tf.constant([7, 8]), 3), [7, 8, 7, 8, 7, 8])
